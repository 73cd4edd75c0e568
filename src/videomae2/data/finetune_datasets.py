"""Classification datasets for fine-tuning and distillation: training clips and validation views.

Training (:class:`FinetuneDataset`, finetune-distill.md §3-4): decode one clip per video with the
chosen temporal sampling, then ``num_sample`` augmented copies (repeated augmentation), each:
RandAugment (same ops on every frame) -> random-resized crop + flip (same box on every frame) ->
ImageNet normalisation -> random erasing (cube). Mixup/CutMix happen later, on the batch.

Temporal sampling (``sampling``):
* ``'dense'``: the original code's fine-tuning sampler (a 64-frame window, 16 points on it);
* ``'mmaction'``: mmaction2 ``SampleFrames`` train mode (exact stride, wrap-around);
* ``'tsn'``: the original SSv2 sampler, one random frame per equal segment.

Determinism: an item is keyed by ``(epoch, index)`` and every random number comes from a
generator seeded with ``(seed, variant, index, attempt[, repeat])``, so an item is identical in
any worker, with any number of workers, and after a resume. ``variant`` is the epoch, or
``epoch % aug_pool`` when ``aug_pool > 0``: then each video has a fixed pool of augmented clips
that recur across epochs, which is what makes a teacher-logit cache hit (engine/distill.py).

Validation (:class:`VideoValDataset`): one view per video in the test dataset's item format, so
the test job's `evaluate` loop and `collate_views` score it unchanged. ``'original'`` is the
original code's per-epoch validation (test-protocol.md §14.2), ``'mmaction'`` one centre clip and
centre crop of mmaction2's pipeline, ``'sparse'`` one segment of the original SSv2 test sampler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from videomae2.augment import (
    ErasingParams,
    RandAugmentParams,
    apply_rand_augment,
    erase_cube,
    resized_crop,
    sample_rand_augment,
)
from videomae2.data.annotations import parse_video_list
from videomae2.data.decode import VideoDecodeError, open_video, read_frames, resolve_video_path
from videomae2.data.sampling import (
    original_dense_train_indices,
    original_sparse_test_indices,
    original_val_indices,
    sample_frames,
)
from videomae2.data.transforms import (
    center_crop,
    original_center_crop_offset,
    original_resize_short_side,
    random_resized_crop_params,
    resize_short_side,
)
from videomae2.losses import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "SAMPLINGS",
    "VAL_MODES",
    "FinetuneDataset",
    "LabeledVideo",
    "VideoValDataset",
    "collate_train",
    "load_items",
    "tsn_train_indices",
]

log = logging.getLogger(__name__)

SAMPLINGS = ("dense", "mmaction", "tsn")
VAL_MODES = ("original", "mmaction", "sparse")

InfoFn = Callable[[str], Any]  # path -> object with an int `num_frames`
Reader = Callable[[str, np.ndarray], np.ndarray]  # path, indices -> (K, H, W, 3) uint8


@dataclass(frozen=True)
class LabeledVideo:
    path: str  # resolved (prefix joined)
    label: int  # in the model's label space


def load_items(
    ann_files: Sequence[str],
    prefixes: Sequence[str],
    label_indices: Sequence[Sequence[int] | None] = (),
    num_classes: int | None = None,
) -> list[LabeledVideo]:
    """Concatenate mmaction2 lists (``path label``), each joined with its prefix and with its
    labels remapped into the model's label space by an index list (None = identity).

    Several sources with index lists is union-label-space training (Kinetics-710 style).
    Unlabeled lines and labels outside ``num_classes`` are errors naming the file.
    """
    if len(prefixes) != len(ann_files):
        raise ValueError(f"{len(ann_files)} list files but {len(prefixes)} data prefixes")
    indices = list(label_indices) or [None] * len(ann_files)
    if len(indices) != len(ann_files):
        raise ValueError(f"{len(ann_files)} list files but {len(indices)} label index lists")
    items: list[LabeledVideo] = []
    for ann, prefix, index in zip(ann_files, prefixes, indices):
        for line, rec in enumerate(parse_video_list(ann), start=1):
            label = rec.label
            if label < 0:
                raise ValueError(f"{ann}: entry {line} ({rec.filename}) has no label")
            if index is not None:
                if label >= len(index):
                    raise ValueError(
                        f"{ann}: entry {line} has label {label}, outside its "
                        f"{len(index)}-entry label index list"
                    )
                label = int(index[label])
            if num_classes is not None and label >= num_classes:
                raise ValueError(
                    f"{ann}: entry {line} ({rec.filename}) has label {label}, but the model "
                    f"has {num_classes} classes"
                )
            items.append(LabeledVideo(resolve_video_path(prefix or None, rec.filename), label))
    if not items:
        raise ValueError(f"no videos in {list(ann_files)}")
    return items


def tsn_train_indices(
    total_frames: int, rng: np.random.Generator, clip_len: int = 16
) -> np.ndarray:
    """Original SSv2 training sampler: segment ``k`` of ``avg = n // clip_len`` frames gives
    ``k·avg + randint(avg)``. Videos shorter than ``clip_len`` (avg = 0) take ``clip_len``
    sorted random frames (with repeats). Returns ``(clip_len,)`` int64."""
    n = total_frames
    if n < 1:
        raise ValueError(f"video has no frames (n={n})")
    avg = n // clip_len
    if avg > 0:
        return np.arange(clip_len, dtype=np.int64) * avg + rng.integers(avg, size=clip_len)
    return np.sort(rng.integers(n, size=clip_len)).astype(np.int64)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**63 - 1))


class FinetuneDataset(Dataset):
    """Augmented training clips; see the module docstring.

    ``__getitem__((epoch, index))`` returns ``clips (S, 3, T, size, size)`` float32 normalised,
    ``label``, ``index`` (the requested one), ``item`` (the video actually used: differs after a
    bad video was replaced), ``variant`` and ``errors`` (bad-video messages, for the log).
    """

    def __init__(
        self,
        items: Sequence[LabeledVideo],
        *,
        sampling: str = "dense",
        clip_len: int = 16,
        frame_interval: int = 4,
        input_size: int = 224,
        short_side: int = 0,
        num_sample: int = 1,
        rand_augment: RandAugmentParams | None = None,
        rrc_scale: tuple[float, float] = (0.08, 1.0),
        rrc_ratio: tuple[float, float] = (0.75, 1.3333),
        flip: bool = True,
        erasing: ErasingParams | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        seed: int = 0,
        aug_pool: int = 0,
        max_retries: int = 10,
        info_fn: InfoFn = open_video,
        reader: Reader = read_frames,
    ) -> None:
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if num_sample < 1:
            raise ValueError(f"num_sample must be >= 1, got {num_sample}")
        self.items = list(items)
        self.sampling = sampling
        self.clip_len, self.frame_interval = clip_len, frame_interval
        self.input_size, self.short_side = input_size, short_side
        self.num_sample = num_sample
        self.rand_augment = rand_augment
        self.rrc_scale, self.rrc_ratio = tuple(rrc_scale), tuple(rrc_ratio)
        self.flip = flip
        self.erasing = erasing
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1) * 255
        self.seed, self.aug_pool, self.max_retries = seed, aug_pool, max_retries
        self.info_fn, self.reader = info_fn, reader

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> list[int]:
        return [it.label for it in self.items]

    def variant(self, epoch: int) -> int:
        """Which augmentation variant epoch `epoch` sees (the epoch itself without a pool)."""
        return epoch % self.aug_pool if self.aug_pool > 0 else epoch

    def frame_indices(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        if self.sampling == "dense":
            return original_dense_train_indices(num_frames, rng, self.clip_len, self.frame_interval)
        if self.sampling == "tsn":
            return tsn_train_indices(num_frames, rng, self.clip_len)
        return sample_frames(
            num_frames, self.clip_len, self.frame_interval, 1, test_mode=False, rng=rng
        ).astype(np.int64)

    def load(self, path: str, rng: np.random.Generator) -> np.ndarray:
        """Decode one clip ``(T, H, W, 3)`` uint8 (short side resized when asked)."""
        n = int(self.info_fn(path).num_frames)
        idx = self.frame_indices(n, rng)
        # Short videos repeat frames: decode each distinct frame once, then gather.
        unique, inverse = np.unique(idx, return_inverse=True)
        frames = np.asarray(self.reader(path, unique))
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] != len(unique):
            raise VideoDecodeError(path, f"reader returned {frames.dtype} {frames.shape}")
        if self.short_side > 0:
            frames = resize_short_side(frames, self.short_side)
        return frames[inverse.reshape(-1)]

    def augment(self, frames: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """One augmented copy: ``(T, H, W, 3)`` uint8 -> ``(3, T, size, size)`` normalised."""
        if self.rand_augment is not None:
            plan = sample_rand_augment(self.rand_augment, rng)
            frames = apply_rand_augment(frames, plan, self.rand_augment.fill)
        h, w = frames.shape[1:3]
        box = random_resized_crop_params(h, w, rng, self.rrc_scale, self.rrc_ratio)
        flip = self.flip and bool(rng.random() < 0.5)
        clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float()
        clip = resized_crop(clip, box, self.input_size, flip)  # (3, T, S, S), 0-255 scale
        clip = (clip - self.mean) / self.std
        if self.erasing is not None:
            clip = erase_cube(clip, self.erasing, rng)
        return clip

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = (0, key) if isinstance(key, int | np.integer) else key
        variant, index = self.variant(int(epoch)), int(index)
        errors: list[str] = []
        item = index
        for attempt in range(self.max_retries + 1):
            if attempt:
                # A deterministic replacement: a function of the key and the attempt only.
                pick = np.random.default_rng([self.seed, variant, index, attempt, 7])
                item = int(pick.integers(len(self.items)))
            rng = np.random.default_rng([self.seed, variant, index, attempt])
            try:
                frames = self.load(self.items[item].path, rng)
                break
            except (VideoDecodeError, OSError) as e:
                msg = f"skipping bad video (item {item}): {e}"
                log.warning(msg)
                errors.append(msg)
        else:
            raise RuntimeError(
                f"{self.max_retries + 1} videos in a row failed to load, starting at index "
                f"{index}; last error: {errors[-1]}"
            )
        clips = [
            self.augment(frames, np.random.default_rng([self.seed, variant, index, attempt, 1 + r]))
            for r in range(self.num_sample)
        ]
        return dict(
            clips=torch.stack(clips),
            label=self.items[item].label,
            index=index,
            item=item,
            variant=variant,
            errors=errors,
        )


def collate_train(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """B items of S copies -> ``clips (B·S, 3, T, H, W)`` item-major, one row per clip in
    ``labels``, ``index``, ``item``, ``repeat`` and ``variant`` (the clip's cache key)."""
    S = batch[0]["clips"].shape[0]
    rep = lambda key: torch.tensor([b[key] for b in batch for _ in range(S)])  # noqa: E731
    return dict(
        clips=torch.cat([b["clips"] for b in batch]),
        labels=rep("label").long(),
        index=rep("index").long(),
        item=rep("item").long(),
        variant=rep("variant").long(),
        repeat=torch.arange(S).repeat(len(batch)),
        errors=[e for b in batch for e in b["errors"]],
    )


class VideoValDataset(Dataset):
    """Single-view validation; items match :class:`videomae2.data.datasets.VideoTestDataset`'s
    (``inputs`` uint8 ``(1, 3, T, crop, crop)`` or None with an ``error``: never raises)."""

    def __init__(
        self,
        items: Sequence[LabeledVideo],
        *,
        mode: str = "original",
        clip_len: int = 16,
        frame_interval: int = 4,
        short_side: int = 224,
        crop_size: int = 224,
        info_fn: InfoFn = open_video,
        reader: Reader = read_frames,
    ) -> None:
        if mode not in VAL_MODES:
            raise ValueError(f"validation mode must be one of {VAL_MODES}, got {mode!r}")
        self.items = list(items)
        self.mode = mode
        self.clip_len, self.frame_interval = clip_len, frame_interval
        self.short_side, self.crop_size = short_side, crop_size
        self.info_fn, self.reader = info_fn, reader

    def __len__(self) -> int:
        return len(self.items)

    def path(self, index: int) -> str:
        return self.items[index].path

    def frame_indices(self, num_frames: int) -> np.ndarray:
        if self.mode == "original":
            return original_val_indices(num_frames, self.clip_len, self.frame_interval)
        if self.mode == "sparse":
            return original_sparse_test_indices(num_frames, self.clip_len, 1)[0]
        return sample_frames(num_frames, self.clip_len, self.frame_interval, 1, test_mode=True)

    def view(self, path: str) -> torch.Tensor:
        """``(1, 3, T, crop, crop)`` uint8."""
        idx = self.frame_indices(int(self.info_fn(path).num_frames))
        unique, inverse = np.unique(idx, return_inverse=True)
        frames = np.asarray(self.reader(path, unique))
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] != len(unique):
            raise VideoDecodeError(path, f"reader returned {frames.dtype} {frames.shape}")
        c = self.crop_size
        if self.mode == "mmaction":
            frames = center_crop(resize_short_side(frames, self.short_side), c)
        else:
            frames = original_resize_short_side(frames, self.short_side)
            y, x = original_center_crop_offset(frames.shape[1], frames.shape[2], c)
            frames = frames[:, y : y + c, x : x + c]
        frames = frames[inverse.reshape(-1)]
        return torch.from_numpy(np.ascontiguousarray(frames.transpose(3, 0, 1, 2)))[None]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        inputs, error = None, None
        try:
            inputs = self.view(item.path)
        except Exception as exc:  # a bad file is reported per item, never stops validation
            error = f"{item.path}: {type(exc).__name__}: {exc}"
        return {
            "index": index,
            "inputs": inputs,
            "label": item.label,
            "error": error,
            "img_shape": (self.crop_size, self.crop_size),
        }
