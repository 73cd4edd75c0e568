"""K710 -> K400 / K600 / K700 head by row selection (spec/model.md §7).

The distilled releases ship a 710-way Kinetics-710 head; the K400/600/700 results use it through
the label maps ``label_710to{400,600,700}.json`` whose entry i is the K710 row of target class i.
So the smaller head is just ``W[map]``, ``b[map]``: no retraining, no approximation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from videomae2.checkpoint.errors import CheckpointError

HeadIndex = Sequence[int] | str | os.PathLike


def load_head_index(index: HeadIndex) -> list[int]:
    """A label-map index list from a JSON list file (e.g. ``label_710to400.json``) or a sequence."""
    if isinstance(index, (str, os.PathLike)):
        path = Path(index)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"head map file not found: {path}") from None
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: not a JSON list of ints ({e})") from e
        where = str(path)
    else:
        values, where = index, "head index"
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    if not isinstance(values, (list, tuple)) or not values:
        raise CheckpointError(f"{where}: expected a non-empty list of ints")
    bad = [(i, v) for i, v in enumerate(values) if isinstance(v, bool) or not isinstance(v, int)]
    if bad:
        raise CheckpointError(f"{where}: entries must be ints; entry {bad[0][0]} is {bad[0][1]!r}")
    if min(values) < 0:
        raise CheckpointError(f"{where}: negative index {min(values)}")
    return list(values)


def select_head_rows(
    sd: Mapping[str, torch.Tensor], index: HeadIndex, prefix: str = "head."
) -> dict[str, torch.Tensor]:
    """Return a copy of `sd` whose ``{prefix}weight``/``{prefix}bias`` keep only rows `index`.

    `sd` is in the original (internal) layout by default; pass ``prefix='cls_head.fc_cls.'`` or
    ``'classifier.'`` to apply it to an mmaction2 or HF dict directly.
    """
    idx = load_head_index(index)
    w_key, b_key = f"{prefix}weight", f"{prefix}bias"
    if w_key not in sd:
        raise CheckpointError(f"cannot map the head: {w_key} is not in the state dict")
    rows = sd[w_key].shape[0]
    if max(idx) >= rows:
        raise CheckpointError(
            f"head index refers to row {max(idx)} but {w_key} has only {rows} rows"
        )
    t = torch.tensor(idx, dtype=torch.long)
    out = dict(sd)
    out[w_key] = sd[w_key].index_select(0, t)
    if b_key in sd:
        out[b_key] = sd[b_key].index_select(0, t)
    return out
