"""Datasets: annotation records -> model-ready uint8 views.

:class:`VideoTestDataset` is mmaction2's K400 test pipeline (``test-protocol.md`` §1-7):
SampleFrames (test mode, 'loop') -> decode -> Resize(-1, 224) -> ThreeCrop(224) ->
FormatShape('NCTHW'). It returns uint8; normalisation belongs to the model's preprocessor
(:func:`videomae2.data.transforms.normalize`).

The frame reader and the info function are injectable so the pipeline is testable without
video files and another decoder can be plugged in without touching this module.

A bad video never raises: mmaction2 would crash the whole test run on one broken file. Here
the item comes back with ``inputs=None`` and an ``error`` string, and the caller decides
(count it, report it, fail at the end).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .annotations import VideoRecord
from .decode import VideoDecodeError, open_video, read_frames, resolve_video_path
from .sampling import sample_frames
from .transforms import center_crop, format_ncthw, resize_short_side, three_crop

__all__ = ["VideoTestDataset", "collate_views"]

Reader = Callable[[str, np.ndarray], np.ndarray]
InfoFn = Callable[[str], Any]  # returns an object with an int ``num_frames`` attribute


class VideoTestDataset(Dataset):
    """mmaction2's multi-view test pipeline over a list of :class:`VideoRecord`.

    ``__getitem__(i)`` returns ``{'index': i, 'inputs': uint8 tensor (V, 3, T, crop, crop) or
    None, 'label': int, 'error': None or 'path: reason', 'img_shape': (crop, crop)}`` with
    ``V = num_crops * num_clips`` and view ``v = crop_index * num_clips + clip``.

    ``num_crops=3`` is ``ThreeCrop`` (left, right, middle; portrait: top, bottom, middle);
    ``num_crops=1`` is ``CenterCrop``. Videos shorter than a clip wrap around (mmaction2's
    'loop'). ``reader(path, indices) -> (K, H, W, 3) uint8`` and ``info(path) -> .num_frames``
    default to the PyAV decoder.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        data_prefix: str | None,
        *,
        clip_len: int = 16,
        frame_interval: int = 4,
        num_clips: int = 5,
        short_side: int = 224,
        crop_size: int = 224,
        num_crops: int = 3,
        reader: Reader = read_frames,
        info: InfoFn = open_video,
    ) -> None:
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 3 (ThreeCrop) or 1 (CenterCrop), got {num_crops}")
        if num_crops == 3 and short_side != crop_size:
            # ThreeCrop asserts that one side equals the crop size; fail at construction instead
            # of on every item.
            raise ValueError(
                f"ThreeCrop needs short_side == crop_size, got {short_side} and {crop_size}"
            )
        self.records = list(records)
        self.data_prefix = data_prefix
        self.clip_len = clip_len
        self.frame_interval = frame_interval
        self.num_clips = num_clips
        self.short_side = short_side
        self.crop_size = crop_size
        self.num_crops = num_crops
        self.reader = reader
        self.info = info

    def __len__(self) -> int:
        return len(self.records)

    def path(self, index: int) -> str:
        """The file that item ``index`` reads (prefix joined, ``.mp4`` added if bare)."""
        return resolve_video_path(self.data_prefix, self.records[index].filename)

    def frame_indices(self, num_frames: int) -> np.ndarray:
        """Clip-major frame indices for a video of ``num_frames`` frames (SampleFrames)."""
        return sample_frames(
            num_frames, self.clip_len, self.frame_interval, self.num_clips, test_mode=True
        )

    def _views(self, path: str) -> torch.Tensor:
        num_frames = int(self.info(path).num_frames)
        inds = self.frame_indices(num_frames)
        # Short videos repeat frames (up to 5x for n <= 61): decode and resize each distinct
        # frame once, then gather. Per-frame resizing makes this identical to resizing all.
        unique, inverse = np.unique(inds, return_inverse=True)
        frames = np.asarray(self.reader(path, unique))
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] != len(unique):
            raise VideoDecodeError(
                path,
                f"reader returned {frames.dtype} {frames.shape}, expected "
                f"({len(unique)}, H, W, 3) uint8",
            )
        frames = resize_short_side(frames, self.short_side)[inverse.reshape(-1)]
        if self.num_crops == 3:
            crops = three_crop(frames, self.crop_size)
        else:
            crops = center_crop(frames, self.crop_size)
        return torch.from_numpy(format_ncthw(crops, self.num_clips, self.clip_len, self.num_crops))

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        path = self.path(index)
        inputs: torch.Tensor | None = None
        error: str | None = None
        try:
            inputs = self._views(path)
        except VideoDecodeError as exc:
            error = str(exc)
        except Exception as exc:
            # A bad file must not stop a long test run: anything else (an injected reader's
            # own error, cv2 on a malformed frame) is also reported per item; the type name
            # keeps programming errors recognisable.
            error = f"{path}: {type(exc).__name__}: {exc}"
        return {
            "index": index,
            "inputs": inputs,
            "label": int(record.label),
            "error": error,
            "img_shape": (self.crop_size, self.crop_size),
        }


def collate_views(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """DataLoader collate for :class:`VideoTestDataset` items.

    Returns ``{'inputs': uint8 (B_ok, V, 3, T, H, W) or None, 'index': list[int],
    'label': LongTensor (B_ok,), 'img_shape': list, 'failed': list[dict]}``: the good items,
    row-aligned, and one ``{'index', 'label', 'error'}`` dict per failed item, so a batch that
    contains a broken video still yields its good ones.
    """
    good = [item for item in batch if item["inputs"] is not None]
    failed = [
        {"index": item["index"], "label": item["label"], "error": item["error"]}
        for item in batch
        if item["inputs"] is None
    ]
    return {
        "inputs": torch.stack([item["inputs"] for item in good]) if good else None,
        "index": [item["index"] for item in good],
        "label": torch.tensor([item["label"] for item in good], dtype=torch.long),
        "img_shape": [item["img_shape"] for item in good],
        "failed": failed,
    }
