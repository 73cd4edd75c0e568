"""Resize / crop / format / normalise against test-protocol.md §5-7 and §14."""

import math

import cv2
import numpy as np
import pytest
import torch

from videomae2.data.transforms import (
    center_crop,
    center_crop_offset,
    format_ncthw,
    multi_scale_crop_params,
    normalize,
    original_center_crop_offset,
    original_resize_short_side,
    original_resize_size,
    original_test_crop_offsets,
    original_test_crops,
    random_resized_crop_params,
    rescale_size,
    resize_short_side,
    three_crop,
    three_crop_offsets,
)

# ----------------------------------------------------------------------------------- §5


@pytest.mark.parametrize(
    ("wh", "out"),
    [
        ((340, 256), (298, 224)),  # 297.5 -> 298
        ((341, 256), (298, 224)),
        ((568, 320), (398, 224)),  # 397.6
        ((640, 360), (398, 224)),
        ((320, 568), (224, 398)),  # portrait
        ((256, 256), (224, 224)),
        ((224, 224), (224, 224)),
        ((64, 48), (299, 224)),  # upscaling: 298.67 -> 299
    ],
)
def test_rescale_size_table(wh, out):
    assert rescale_size(wh, (-1, 224)) == out
    assert rescale_size(wh, (224, -1)) == out  # order of the tuple does not matter
    assert rescale_size(wh, (math.inf, 224)) == out


def test_rescale_size_other_scales():
    assert rescale_size((340, 256), (400, 300)) == (398, 300)  # factor min(400/340, 300/256)
    assert rescale_size((340, 256), 0.5) == (170, 128)
    assert rescale_size((340, 256), (100, 50), keep_ratio=False) == (100, 50)
    with pytest.raises(TypeError):
        rescale_size((340, 256), [-1, 224])  # a list raises, as in mmaction2


def test_resize_short_side_matches_cv2():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 256, 340, 3), dtype=np.uint8)
    out = resize_short_side(frames)
    assert out.shape == (3, 224, 298, 3) and out.dtype == np.uint8
    for t in range(3):
        ref = cv2.resize(frames[t], (298, 224), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(out[t], ref)
    portrait = resize_short_side(frames.transpose(0, 2, 1, 3).copy())
    assert portrait.shape == (3, 298, 224, 3)


# ----------------------------------------------------------------------------------- §6


@pytest.mark.parametrize(
    ("hw", "offsets"),
    [
        ((224, 298), [(0, 0), (0, 74), (0, 37)]),
        ((224, 398), [(0, 0), (0, 174), (0, 87)]),
        ((398, 224), [(0, 0), (174, 0), (87, 0)]),
        ((224, 224), [(0, 0), (0, 0), (0, 0)]),
        ((224, 299), [(0, 0), (0, 74), (0, 37)]),  # odd margin: right crop ends 1 px early
    ],
)
def test_three_crop_offsets_table(hw, offsets):
    assert three_crop_offsets(*hw) == offsets


def test_three_crop_requires_one_side_equal():
    with pytest.raises(AssertionError, match="one side equal to the crop size 224"):
        three_crop_offsets(256, 340)


def test_three_crop_order_is_crop_major():
    t, h, w = 4, 224, 298
    frames = np.zeros((t, h, w, 3), dtype=np.uint8)
    frames[..., 0] = np.arange(t)[:, None, None]  # R: frame number
    frames[..., 1] = (np.arange(w) % 256)[None, None, :]  # G: column
    out = three_crop(frames)
    assert out.shape == (3 * t, 224, 224, 3)
    for crop, x in enumerate([0, 74, 37]):
        for k in range(t):
            assert out[crop * t + k, 0, 0, 0] == k
            assert out[crop * t + k, 0, 0, 1] == x


def test_center_crop():
    assert center_crop_offset(224, 298) == (0, 37)
    assert center_crop_offset(224, 299) == (0, 37)  # floor
    frames = np.arange(224 * 300 * 3, dtype=np.int64).reshape(1, 224, 300, 3).astype(np.uint8)
    np.testing.assert_array_equal(center_crop(frames), frames[:, :, 38:262])


# ----------------------------------------------------------------------------------- §7


def test_format_ncthw_view_order():
    crops, clips, t, h, w = 3, 5, 16, 4, 6
    frames = np.zeros((crops * clips * t, h, w, 3), dtype=np.uint8)
    i = 0
    for crop in range(crops):  # crop-major, then clip, then time: what ThreeCrop emits
        for clip in range(clips):
            for k in range(t):
                frames[i] = (crop, clip, k)
                i += 1
    out = format_ncthw(frames, clips, t, crops)
    assert out.shape == (15, 3, 16, 4, 6)
    for v in range(15):
        crop, clip = divmod(v, clips)  # v = crop * num_clips + clip
        assert (out[v, 0] == crop).all()
        assert (out[v, 1] == clip).all()
        assert (out[v, 2] == np.arange(t)[:, None, None]).all()
    with pytest.raises(ValueError):
        format_ncthw(frames[:-1], clips, t, crops)


def test_normalize_0_255_float32():
    x = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1, 1).repeat(1, 1, 2, 2, 2)
    y = normalize(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    mean = torch.tensor([123.675, 116.28, 103.53], dtype=torch.float32)
    std = torch.tensor([58.395, 57.12, 57.375], dtype=torch.float32)
    for c, val in enumerate([0, 128, 255]):
        expected = (torch.tensor(float(val)) - mean[c]) / std[c]
        assert torch.equal(y[0, c], torch.full((2, 2, 2), expected.item()))
    # the batch layout (B, V, C, T, H, W) broadcasts over the same channel dim
    assert torch.equal(normalize(x.unsqueeze(0))[0], y)


# ---------------------------------------------------------------------------------- §14


def test_original_resize_and_crops():
    assert original_resize_size(256, 340) == (297, 224)  # truncation (mmaction2: 298)
    assert original_resize_size(320, 568) == (397, 224)
    assert original_resize_size(568, 320) == (224, 397)
    assert original_resize_size(224, 300) is None  # short side already 224: untouched
    assert original_test_crop_offsets(224, 297) == [(0, 0), (0, 36), (0, 73)]
    assert original_test_crop_offsets(224, 397) == [(0, 0), (0, 86), (0, 173)]
    assert original_test_crop_offsets(397, 224) == [(0, 0), (86, 0), (173, 0)]
    frames = np.random.default_rng(0).integers(0, 256, (2, 256, 340, 3), dtype=np.uint8)
    resized = original_resize_short_side(frames)
    assert resized.shape == (2, 224, 297, 3)
    ref = cv2.resize(frames[1], (297, 224), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(resized[1], ref)
    crops = original_test_crops(resized)
    assert crops.shape == (3, 2, 224, 224, 3)
    np.testing.assert_array_equal(crops[2], resized[:, :, 73:297])


def test_original_center_crop_rounds_half_to_even():
    assert original_center_crop_offset(224, 298) == (0, 37)
    assert original_center_crop_offset(224, 225) == (0, 0)  # round(0.5) = 0
    assert original_center_crop_offset(224, 227) == (0, 2)  # round(1.5) = 2
    assert original_center_crop_offset(229, 224) == (2, 0)  # round(2.5) = 2


# ------------------------------------------------------------------- training crop params


def test_multi_scale_crop_params():
    rng = np.random.default_rng(0)
    # 340x256: base 256 -> sizes 256, 224, 192, 168 (224 exact); pairs with |i - j| <= 1
    sizes = [256, 224, 192, 168]
    allowed = {(sizes[i], sizes[j]) for i in range(4) for j in range(4) if abs(i - j) <= 1}
    seen_sizes, seen_offsets = set(), set()
    for _ in range(3000):
        y, x, ch, cw = multi_scale_crop_params(256, 340, rng)
        assert (ch, cw) in allowed
        ws, hs = (340 - cw) // 4, (256 - ch) // 4
        assert x % max(ws, 1) == 0 and y % max(hs, 1) == 0
        assert 0 <= x <= 340 - cw and 0 <= y <= 256 - ch
        seen_sizes.add((ch, cw))
        if (ch, cw) == (192, 192):
            seen_offsets.add((y // hs, x // ws))
    assert seen_sizes == allowed
    assert len(seen_offsets) == 13
    # snapping: 0.875 * 258 = 225.75 -> 225, within 3 px of 224 -> 224
    for _ in range(50):
        _, _, ch, cw = multi_scale_crop_params(258, 400, rng)
        assert 225 not in (ch, cw)


def test_random_resized_crop_params():
    rng = np.random.default_rng(0)
    for _ in range(500):
        y, x, ch, cw = random_resized_crop_params(256, 340, rng)
        assert 0 < ch <= 256 and 0 < cw <= 340
        assert 0 <= y <= 256 - ch and 0 <= x <= 340 - cw
        assert 0.08 * 256 * 340 * 0.9 <= ch * cw <= 256 * 340
        assert 0.75 * 0.9 <= cw / ch <= 1.3333 * 1.1
    # impossible scale -> centre fallback clamped to the ratio range
    assert random_resized_crop_params(100, 400, rng, scale=(5.0, 6.0)) == (0, 133, 100, 133)
    assert random_resized_crop_params(100, 100, rng, scale=(5.0, 6.0)) == (0, 0, 100, 100)
