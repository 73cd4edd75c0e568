"""Token masks for masked-autoencoder pretraining (spec pretraining.md §2).

Every mask is a bool tensor `(B, N)` over the token grid `(T', H', W')` in (t, h, w) token order
(`idx = t·H'·W' + h·W' + w`), True = masked:

* encoder masks (`tube_mask`, `random_mask`): True = hidden from the encoder;
* decoder masks (`running_cell_mask`, `v1_decode_mask`): True = NOT processed by the decoder.

All randomness comes from an explicit `torch.Generator`, so a sample's masks depend only on the
generator it is given (the training dataset derives one per sample), never on global state or on
how many DataLoader workers exist. The original draws with numpy's global generator; what is
reproduced here is the distribution and the exact deterministic structure, not its random stream.
"""

from __future__ import annotations

import torch

Grid = tuple[int, int, int]  # (T', H', W') token grid

ENCODER_MASK_TYPES = ("tube", "random")
DECODER_MASK_TYPES = ("run_cell", "none")


def _check_ratio(ratio: float, what: str) -> None:
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"{what} must be in [0, 1), got {ratio}")


def tube_mask(batch: int, grid: Grid, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Tube masking (spec §2.1): one shuffled spatial mask per sample, repeated in every slot.

    `k = int(ratio · H'·W')` positions are masked per temporal slot, so every sample hides the
    same number of tokens (176 of 196 per slot for p16 at 0.9) and batching needs no padding.
    Returns `(B, T'·H'·W')` bool.
    """
    _check_ratio(ratio, "tube mask ratio")
    t, h, w = grid
    hw = h * w
    k = int(ratio * hw)
    # Zeros then ones, shuffled once per sample: a random permutation of the fixed vector.
    base = torch.zeros(hw, dtype=torch.bool)
    base[hw - k :] = True
    rows = [base[torch.randperm(hw, generator=generator)] for _ in range(batch)]
    spatial = torch.stack(rows) if rows else torch.zeros(0, hw, dtype=torch.bool)  # (B, H'W')
    return spatial.unsqueeze(1).expand(batch, t, hw).reshape(batch, t * hw)  # (B, N)


def random_mask(batch: int, grid: Grid, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Random (non-tube) masking over all `N` tokens: exactly `int(ratio · N)` masked per sample.

    The original keeps this generator but its V2 pretraining pipeline accepts only `tube`.
    Returns `(B, N)` bool.
    """
    _check_ratio(ratio, "random mask ratio")
    n = grid[0] * grid[1] * grid[2]
    k = int(ratio * n)
    base = torch.zeros(n, dtype=torch.bool)
    base[n - k :] = True
    rows = [base[torch.randperm(n, generator=generator)] for _ in range(batch)]
    return torch.stack(rows) if rows else torch.zeros(0, n, dtype=torch.bool)


def running_cell_maps(grid: Grid, ratio: float = 0.5) -> torch.Tensor:
    """The 4 distinct running-cell decoder masks (spec §2.2), `(4, N)` bool, True = not decoded.

    `m = int(4 · ratio)` of the 4 pixels of each 2×2 cell are masked; the queue
    `[1]·m + [0]·(4 − m)` is read from a pointer that is incremented BEFORE each slot, so map `s`
    uses pointer `s + t + 1` at slot `t`, cell pixel `k` (row-major) is `q[(k + ptr) mod 4]`, and
    the cell is tiled over the (even) spatial grid. The 4 maps are temporal shifts of each other.
    """
    t, h, w = grid
    m = int(4 * ratio)
    if not 0 < m < 4:
        raise ValueError(
            f"running-cell ratio must give 1-3 masked pixels per 2x2 cell (0.25, 0.5, 0.75); "
            f"ratio {ratio} gives {m}"
        )
    if h % 2 or w % 2:
        raise ValueError(f"running-cell masking needs an even spatial grid, got H'={h}, W'={w}")
    queue = [True] * m + [False] * (4 - m)
    ys = torch.arange(h) % 2  # (H',) row inside the cell
    xs = torch.arange(w) % 2  # (W',) column inside the cell
    cell_index = ys[:, None] * 2 + xs[None, :]  # (H', W') row-major pixel index k in the cell
    maps = torch.zeros(4, t, h, w, dtype=torch.bool)
    for start in range(4):
        for slot in range(t):
            ptr = start + slot + 1  # the pointer advances before the first slot is read
            cell = torch.tensor([queue[(k + ptr) % 4] for k in range(4)])  # (4,)
            maps[start, slot] = cell[cell_index]
    return maps.reshape(4, t * h * w)  # (4, N)


def running_cell_mask(
    batch: int, grid: Grid, ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """Decoder mask: each sample takes one of the 4 running-cell maps uniformly. `(B, N)` bool."""
    maps = running_cell_maps(grid, ratio)  # (4, N)
    choice = torch.randint(4, (batch,), generator=generator)
    return maps[choice].clone()


def v1_decode_mask(mask: torch.Tensor) -> torch.Tensor:
    """VideoMAE v1 decoding: decode exactly the encoder-hidden tokens (`decode_mask = ~mask`)."""
    return ~mask


def encoder_mask(
    kind: str, batch: int, grid: Grid, ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """Dispatch on the config's encoder mask name ('tube' | 'random'). `(B, N)` bool."""
    if kind == "tube":
        return tube_mask(batch, grid, ratio, generator)
    if kind == "random":
        return random_mask(batch, grid, ratio, generator)
    raise ValueError(f"unknown encoder mask type {kind!r}; expected one of {ENCODER_MASK_TYPES}")


def decoder_mask(
    kind: str,
    mask: torch.Tensor,
    grid: Grid,
    ratio: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Dispatch on the decoder mask name for a given encoder `mask` `(B, N)`.

    'run_cell' with ratio > 0 is dual masking; 'none' or ratio 0 is v1 decoding (every hidden
    token), as the original's `decoder_mask_ratio 0.0` default. Returns `(B, N)` bool.
    """
    if kind == "none" or ratio == 0.0:
        return v1_decode_mask(mask)
    if kind == "run_cell":
        return running_cell_mask(mask.shape[0], grid, ratio, generator)
    raise ValueError(f"unknown decoder mask type {kind!r}; expected one of {DECODER_MASK_TYPES}")
