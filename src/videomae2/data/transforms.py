"""Spatial transforms on decoded frames: resize, crops, view formatting, normalisation.

Frames are numpy ``uint8`` arrays ``(T, H, W, 3)`` RGB, as mmaction2 keeps them until
``FormatShape``; only :func:`normalize` works on torch tensors (the model-side preprocessor).
Resizing always goes through ``cv2.resize(..., INTER_LINEAR)`` on uint8, frame by frame, because
that is what mmcv does; torch/PIL resizers differ by about one grey level (spec §5).

Sizes follow cv2's convention where it leaks through: ``(w, h)`` tuples for sizes, ``(H, W)``
array shapes. Every function says which it takes.

The ``original_*`` functions reproduce the original VideoMAE V2 code's test/validation math
(``test-protocol.md`` §14), which truncates where mmaction2 rounds. The two training-parameter
functions (:func:`multi_scale_crop_params`, :func:`random_resized_crop_params`) only draw boxes
from an explicit generator; applying a box is a crop followed by a resize.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch

__all__ = [
    "IMAGENET_MEAN_255",
    "IMAGENET_STD_255",
    "center_crop",
    "center_crop_offset",
    "format_ncthw",
    "multi_scale_crop_params",
    "normalize",
    "original_center_crop_offset",
    "original_resize_short_side",
    "original_resize_size",
    "original_test_crop_offsets",
    "original_test_crops",
    "random_resized_crop_params",
    "rescale_size",
    "resize_frames",
    "resize_short_side",
    "three_crop",
    "three_crop_offsets",
]

# ImageNet statistics on the 0-255 scale, as mmaction2's ActionDataPreprocessor stores them.
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {frames.shape}")


# ----------------------------------------------------------------------------- mmaction2


def rescale_size(
    size: tuple[int, int], scale: float | tuple[float, float], keep_ratio: bool = True
) -> tuple[int, int]:
    """Output ``(w, h)`` of mmaction2 ``Resize(scale, keep_ratio)`` for an input ``(w, h)``.

    ``scale`` is a tuple of two edge limits (order irrelevant: the larger bounds the long side,
    the smaller the short side) or a positive float factor. A ``-1`` in the tuple means "no limit
    on the long side": mmaction2 turns ``(-1, 224)`` into ``(inf, 224)``, so the factor is
    ``224 / short`` (a Python float) and each side becomes ``int(x * factor + 0.5)``. A list
    raises ``TypeError`` as in mmaction2. With ``keep_ratio=False`` the tuple is the output
    ``(w, h)`` itself.
    """
    w, h = size
    if isinstance(scale, float | int) and not isinstance(scale, bool):
        if scale <= 0:
            raise ValueError(f"scale factor must be positive, got {scale}")
        factor = float(scale)
    elif isinstance(scale, tuple) and len(scale) == 2:
        if not keep_ratio:
            return int(scale[0]), int(scale[1])
        long_edge, short_edge = max(scale), min(scale)
        if short_edge == -1:
            long_edge, short_edge = math.inf, long_edge
        factor = min(long_edge / max(h, w), short_edge / min(h, w))
    else:
        raise TypeError(f"scale must be a float or a tuple of 2 numbers, got {scale!r}")
    return int(w * factor + 0.5), int(h * factor + 0.5)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize every frame to ``size = (w, h)`` with cv2 bilinear (half-pixel centres).

    cv2 takes ``(w, h)``; the result has shape ``(T, h, w, 3)``, uint8 in -> uint8 out.
    """
    _check_frames(frames)
    w, h = size
    out = np.empty((frames.shape[0], h, w, 3), dtype=frames.dtype)
    for t in range(frames.shape[0]):
        out[t] = cv2.resize(frames[t], (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def resize_short_side(frames: np.ndarray, short: int = 224) -> np.ndarray:
    """mmaction2 ``Resize(scale=(-1, short), keep_ratio=True)``: short side becomes ``short``.

    340x256 -> 298x224 (297.5 rounds up). cv2 is called even when the size does not change,
    exactly as mmcv does.
    """
    _check_frames(frames)
    h, w = frames.shape[1:3]
    return resize_frames(frames, rescale_size((w, h), (-1, short)))


def three_crop_offsets(h: int, w: int, crop: int = 224) -> list[tuple[int, int]]:
    """``(y, x)`` of mmaction2 ``ThreeCrop`` in output order, for an ``h x w`` frame.

    Landscape or square (``h == crop``): left, right, middle at x = 0, 2*step, step with
    ``step = (w - crop) // 2`` (so an odd margin leaves the right crop 1 px short of the edge).
    Portrait: top, bottom, middle along y. One side must equal ``crop``.
    """
    assert h == crop or w == crop, (
        f"ThreeCrop needs one side equal to the crop size {crop}, got an image of {h}x{w} (h x w); "
        "resize the short side to the crop size first"
    )
    if h == crop:
        assert w >= crop, f"image width {w} is smaller than the crop size {crop}"
        step = (w - crop) // 2
        return [(0, 0), (0, 2 * step), (0, step)]
    assert h >= crop, f"image height {h} is smaller than the crop size {crop}"
    step = (h - crop) // 2
    return [(0, 0), (2 * step, 0), (step, 0)]


def three_crop(frames: np.ndarray, crop: int = 224) -> np.ndarray:
    """mmaction2 ``ThreeCrop``: ``(T, H, W, 3)`` -> ``(3*T, crop, crop, 3)``, crop-major.

    All T frames of crop 0, then crop 1, then crop 2 (left, right, middle) - the order that
    :func:`format_ncthw` turns into view = crop * num_clips + clip.
    """
    _check_frames(frames)
    h, w = frames.shape[1:3]
    crops = [frames[:, y : y + crop, x : x + crop] for y, x in three_crop_offsets(h, w, crop)]
    return np.concatenate(crops, axis=0)


def center_crop_offset(h: int, w: int, crop: int = 224) -> tuple[int, int]:
    """``(y, x)`` of mmaction2 ``CenterCrop``: floor division of the margins."""
    if h < crop or w < crop:
        raise ValueError(f"image {h}x{w} (h x w) is smaller than the crop size {crop}")
    return (h - crop) // 2, (w - crop) // 2


def center_crop(frames: np.ndarray, crop: int = 224) -> np.ndarray:
    """mmaction2 ``CenterCrop``: ``(T, H, W, 3)`` -> ``(T, crop, crop, 3)``."""
    _check_frames(frames)
    y, x = center_crop_offset(frames.shape[1], frames.shape[2], crop)
    return frames[:, y : y + crop, x : x + crop]


def format_ncthw(frames: np.ndarray, num_clips: int, clip_len: int, num_crops: int) -> np.ndarray:
    """mmaction2 ``FormatShape('NCTHW')``: ``(crops*clips*T, H, W, 3)`` -> ``(V, 3, T, H, W)``.

    Input frames are crop-major then clip-major (what :func:`three_crop` of clip-major sampled
    frames produces); view ``v = crop * num_clips + clip``. Returns a contiguous copy.
    """
    _check_frames(frames)
    expected = num_crops * num_clips * clip_len
    if frames.shape[0] != expected:
        raise ValueError(
            f"expected {num_crops} crops x {num_clips} clips x {clip_len} frames = {expected} "
            f"frames, got {frames.shape[0]}"
        )
    h, w = frames.shape[1:3]
    x = frames.reshape(num_crops * num_clips, clip_len, h, w, 3)  # (V, T, H, W, C)
    return np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3))  # (V, C, T, H, W)


def normalize(
    x: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN_255,
    std: Sequence[float] = IMAGENET_STD_255,
    channel_dim: int = -4,
) -> torch.Tensor:
    """``(x - mean) / std`` in float32 on the 0-255 scale (mmaction2's preprocessor).

    No ``/255`` and no BGR flip: for bit-exactness with mmaction2 use this form rather than
    ``(x/255 - m)/s``. ``channel_dim`` defaults to -4, the C of ``(..., C, T, H, W)``.
    """
    xf = x.to(torch.float32)
    shape = [1] * xf.dim()
    shape[channel_dim] = -1
    m = torch.tensor(mean, dtype=torch.float32, device=xf.device).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=xf.device).view(shape)
    return (xf - m) / s


# ---------------------------------------------------------------- original VideoMAE V2 code


def original_resize_size(h: int, w: int, short: int = 224) -> tuple[int, int] | None:
    """Output ``(w, h)`` of the original code's short-side resize, or ``None`` if unchanged.

    The long side is truncated: ``int(short * long / short_side)`` (340x256 -> 297x224, where
    mmaction2 rounds to 298). A frame whose short side already equals ``short`` is left alone.
    """
    if (w <= h and w == short) or (h <= w and h == short):
        return None
    if w < h:
        return short, int(short * h / w)
    return int(short * w / h), short


def original_resize_short_side(frames: np.ndarray, short: int = 224) -> np.ndarray:
    """The original code's resize (cv2 bilinear, truncated long side); see
    :func:`original_resize_size`."""
    _check_frames(frames)
    size = original_resize_size(frames.shape[1], frames.shape[2], short)
    return frames if size is None else resize_frames(frames, size)


def original_test_crop_offsets(
    h: int, w: int, crop: int = 224, num_crops: int = 3
) -> list[tuple[int, int]]:
    """``(y, x)`` of the original test crops, in its order: left/top, middle, right/bottom.

    The crop slides along the long side (H when H >= W) with ``step = (long - crop) /
    (num_crops - 1)`` and starts at ``int(cp * step)``, so the last crop ends at the edge;
    it keeps the full short side. 298x224 -> x = 0, 37, 74; 297x224 -> x = 0, 36, 73.
    """
    if num_crops < 2:
        raise ValueError("the original test protocol needs num_crops >= 2 (it divides by n - 1)")
    along_h = h >= w
    step = (max(h, w) - crop) / (num_crops - 1)
    starts = [int(cp * step) for cp in range(num_crops)]
    return [(s, 0) if along_h else (0, s) for s in starts]


def original_test_crops(frames: np.ndarray, crop: int = 224, num_crops: int = 3) -> np.ndarray:
    """Apply :func:`original_test_crop_offsets`: ``(num_crops, T, crop, short, 3)``.

    The short side is kept whole (it equals ``crop`` after the original resize).
    """
    _check_frames(frames)
    h, w = frames.shape[1:3]
    along_h = h >= w
    out = []
    for y, x in original_test_crop_offsets(h, w, crop, num_crops):
        out.append(frames[:, y : y + crop] if along_h else frames[:, :, x : x + crop])
    return np.stack(out)


def original_center_crop_offset(h: int, w: int, crop: int = 224) -> tuple[int, int]:
    """``(y, x)`` of the original validation centre crop: ``int(round(margin / 2))``.

    Python's round is half-to-even, so a margin of 74 gives 37 but 1 gives 0 and 3 gives 2.
    """
    if h < crop or w < crop:
        raise ValueError(f"image {h}x{w} (h x w) is smaller than the crop size {crop}")
    return round((h - crop) / 2.0), round((w - crop) / 2.0)


# ------------------------------------------------------------------- training crop params


def multi_scale_crop_params(
    h: int,
    w: int,
    rng: np.random.Generator,
    input_size: int = 224,
    scales: Sequence[float] = (1, 0.875, 0.75, 0.66),
    max_distort: int = 1,
    more_fix_crop: bool = True,
) -> tuple[int, int, int, int]:
    """Pretraining multi-scale crop box ``(y, x, crop_h, crop_w)`` (``pretraining.md`` §7).

    Candidate sides ``int(min(h, w) * s)`` snap to ``input_size`` when within 3 px; a random
    ``(w, h)`` pair whose scale indices differ by at most ``max_distort``; then one of 13 fixed
    offsets (5 without ``more_fix_crop``) on a grid with steps ``(W - cw) // 4``, ``(H - ch) // 4``.
    The same box is used for every frame of the clip, then resized to ``input_size`` square.
    """
    base = min(h, w)
    sizes = [int(base * s) for s in scales]
    snapped = [input_size if abs(s - input_size) < 3 else s for s in sizes]
    # Pair order follows the original loops: height index outer, width index inner.
    pairs = [
        (cw, ch)
        for i, ch in enumerate(snapped)
        for j, cw in enumerate(snapped)
        if abs(i - j) <= max_distort
    ]
    crop_w, crop_h = pairs[int(rng.integers(len(pairs)))]
    ws, hs = (w - crop_w) // 4, (h - crop_h) // 4
    grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2)]  # (x, y) multiples of the steps
    if more_fix_crop:
        grid += [(0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
    gx, gy = grid[int(rng.integers(len(grid)))]
    return gy * hs, gx * ws, crop_h, crop_w


def random_resized_crop_params(
    h: int,
    w: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (0.75, 1.3333),
    num_tries: int = 10,
) -> tuple[int, int, int, int]:
    """Fine-tuning random-resized-crop box ``(y, x, crop_h, crop_w)`` (``finetune-distill.md`` §3).

    Area fraction uniform in ``scale``, aspect ratio log-uniform in ``ratio``, sides rounded with
    Python's round; up to ``num_tries`` draws, then a centre crop clamped to the ratio range. The
    same box is used for every frame.
    """
    area = h * w
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(num_tries):
        target = float(rng.uniform(*scale)) * area
        aspect = math.exp(float(rng.uniform(log_lo, log_hi)))
        cw = round(math.sqrt(target * aspect))
        ch = round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            y = int(rng.integers(0, h - ch + 1))  # inclusive upper bound, like random.randint
            x = int(rng.integers(0, w - cw + 1))
            return y, x, ch, cw
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, round(w / min(ratio))
    elif in_ratio > max(ratio):
        ch, cw = h, round(h * max(ratio))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw
