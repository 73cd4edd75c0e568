"""Masks: tube statistics, the exact running-cell maps of spec pretraining.md §2.2, dispatch."""

import pytest
import torch

from videomae2.masking import (
    decoder_mask,
    encoder_mask,
    random_mask,
    running_cell_maps,
    running_cell_mask,
    tube_mask,
    v1_decode_mask,
)

P16 = (8, 14, 14)
P14 = (8, 16, 16)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("grid, per_slot, visible", [(P16, 176, 160), (P14, 230, 208)])
def test_tube_mask_counts_and_tubes(grid, per_slot, visible):
    m = tube_mask(16, grid, 0.9, gen())
    t, h, w = grid
    assert m.shape == (16, t * h * w) and m.dtype == torch.bool
    per = m.reshape(16, t, h * w)
    assert (per.sum(-1) == per_slot).all()
    assert ((~m).sum(1) == visible).all()
    # every temporal slot repeats slot 0 (a tube)
    assert (per == per[:, :1]).all()
    # samples differ (a shuffle per sample)
    assert len({tuple(r.tolist()) for r in per[:, 0]}) > 1


def test_tube_mask_is_uniform_over_positions():
    m = tube_mask(4000, (1, 14, 14), 0.9, gen(1)).float()
    freq = m.mean(0)  # each position masked with probability 176/196
    assert torch.allclose(freq, torch.full_like(freq, 176 / 196), atol=0.03)


def test_masks_depend_only_on_the_generator():
    a = tube_mask(3, P16, 0.9, gen(5))
    b = tube_mask(3, P16, 0.9, gen(5))
    assert torch.equal(a, b)
    assert torch.equal(
        running_cell_mask(3, P16, 0.5, gen(5)), running_cell_mask(3, P16, 0.5, gen(5))
    )


def test_random_mask_counts():
    m = random_mask(8, P16, 0.9, gen())
    assert (m.sum(1) == int(0.9 * 1568)).all()
    per = m.reshape(8, 8, 196).sum(-1)
    assert not (per == per[:, :1]).all()  # not tubes


# Spec §2.2 table: top-left 2x2 cell of map s = 0, slots 0..4.
SPEC_CELLS = [
    [[1, 0], [0, 1]],
    [[0, 0], [1, 1]],
    [[0, 1], [1, 0]],
    [[1, 1], [0, 0]],
    [[1, 0], [0, 1]],
]


def test_running_cell_map_matches_spec_table():
    maps = running_cell_maps((5, 4, 6), 0.5).reshape(4, 5, 4, 6)
    for t, cell in enumerate(SPEC_CELLS):
        cell = torch.tensor(cell, dtype=torch.bool)
        assert torch.equal(maps[0, t, :2, :2], cell), t
        # the cell is tiled over the whole spatial grid
        assert torch.equal(maps[0, t], cell.repeat(2, 3))


def test_running_cell_maps_are_four_temporal_shifts():
    maps = running_cell_maps(P16, 0.5).reshape(4, 8, 14, 14)
    assert len({tuple(m.flatten().tolist()) for m in maps}) == 4
    for s in range(4):
        # map s at slot t == map 0 at slot t + s (pointer s + t + 1)
        for t in range(8 - s):
            assert torch.equal(maps[s, t], maps[0, t + s])
    # every spatial position is decoded in exactly 2 of every 4 consecutive slots
    decoded = (~maps).int()
    for t0 in range(5):
        assert (decoded[:, t0 : t0 + 4].sum(1) == 2).all()
    assert ((~maps).reshape(4, -1).sum(1) == 784).all()


@pytest.mark.parametrize("ratio, masked", [(0.25, 1), (0.5, 2), (0.75, 3)])
def test_running_cell_ratios(ratio, masked):
    maps = running_cell_maps((4, 2, 2), ratio).reshape(4, 4, 4)
    assert (maps.sum(-1) == masked).all()


def test_running_cell_errors():
    with pytest.raises(ValueError, match="even"):
        running_cell_maps((8, 7, 14), 0.5)
    with pytest.raises(ValueError, match="cell"):
        running_cell_maps(P16, 0.1)
    with pytest.raises(ValueError, match="cell"):
        running_cell_maps(P16, 1.0)


def test_running_cell_mask_uses_all_four_maps():
    maps = running_cell_maps(P16, 0.5)
    m = running_cell_mask(200, P16, 0.5, gen(2))
    seen = {int((maps == row).all(1).nonzero()) for row in m}
    assert seen == {0, 1, 2, 3}


def test_dual_mask_token_counts_p16_and_p14():
    for grid, vis, dec, loss in [(P16, 160, 784, 704), (P14, 208, 1024, 920)]:
        enc = tube_mask(6, grid, 0.9, gen())
        dm = running_cell_mask(6, grid, 0.5, gen(1))
        assert ((~enc).sum(1) == vis).all()
        assert ((~dm).sum(1) == dec).all()
        assert ((enc & ~dm).sum(1) == loss).all()


def test_v1_decode_mask_and_dispatch():
    enc = encoder_mask("tube", 2, P16, 0.9, gen())
    assert torch.equal(v1_decode_mask(enc), ~enc)
    assert torch.equal(decoder_mask("none", enc, P16, 0.5, gen()), ~enc)
    assert torch.equal(decoder_mask("run_cell", enc, P16, 0.0, gen()), ~enc)
    assert decoder_mask("run_cell", enc, P16, 0.5, gen()).sum(1).tolist() == [784, 784]
    with pytest.raises(ValueError, match="encoder mask type"):
        encoder_mask("frame", 1, P16, 0.9, gen())
    with pytest.raises(ValueError, match="decoder mask type"):
        decoder_mask("random", enc, P16, 0.5, gen())
