"""The pretraining dataset (spec pretraining.md §7) and its epoch sampler.

Sources: an mmaction2 list (`path label`), the original pretraining list (`path 0 -1` for
videos, `folder start_idx total_frames` for raw-frame folders), or a folder of videos
(`ann_file=''`: every video file under `data_root`, sorted).

Per item: pretraining temporal sampling (16 frames at stride 4), decoded once; then `num_sample`
augmented copies (repeated augmentation), each with its own multi-scale crop (PIL bilinear
resize), encoder mask and decoder mask. All randomness comes from generators derived from
`(seed, epoch, index, attempt[, repeat])`, so an item is the same whichever worker builds it and
however many workers exist, and a resumed run sees the same data as an uninterrupted one.

A video that fails to load never stops training: the failure is reported in the item's `errors`
list (the engine logs it) and another index, drawn deterministically from the same key, is used.

Shapes: S = num_sample, T frames, H = W = input_size, N tokens; an item is
`videos (S, 3, T, H, W)` float32 normalised, `mask (S, N)` and `decode_mask (S, N)` bool.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from videomae2.data.annotations import PretrainRecord, parse_pretrain_list, parse_video_list
from videomae2.data.decode import VideoDecodeError, open_video, read_frames, resolve_video_path
from videomae2.data.sampling import pretrain_indices
from videomae2.data.transforms import multi_scale_crop_params
from videomae2.losses import IMAGENET_MEAN, IMAGENET_STD
from videomae2.masking import decoder_mask, encoder_mask

__all__ = [
    "VIDEO_EXTS",
    "PretrainDataset",
    "collate_pretrain",
    "epoch_batches",
    "find_videos",
    "load_pretrain_records",
    "write_synthetic_videos",
]

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".flv")

InfoFn = Callable[[str], Any]  # path -> object with an int `num_frames`
Reader = Callable[[str, np.ndarray], np.ndarray]  # path, indices -> (K, H, W, 3) uint8


def find_videos(root: str | os.PathLike, exts: Sequence[str] = VIDEO_EXTS) -> list[str]:
    """Every file under `root` (recursively) with a video extension, sorted for determinism.

    Hidden files (a leading '.', e.g. half-written temporaries) are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video folder not found: {root}")
    lowered = tuple(e.lower() for e in exts)
    return sorted(
        str(p)
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in lowered and not p.name.startswith(".")
    )


def _is_original_list(path: str) -> bool:
    """An original pretraining list has >= 3 fields with integer 2nd and 3rd fields."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.strip().split(" ")
            if fields == [""]:
                continue
            if len(fields) < 3:
                return False
            try:
                int(fields[1]), int(fields[2])
            except ValueError:
                return False
            return True
    return False


def load_pretrain_records(
    ann_file: str, data_root: str, exts: Sequence[str] = VIDEO_EXTS
) -> list[PretrainRecord]:
    """Records with paths joined to `data_root`; the list format is detected from its first line.

    `ann_file=''` lists a folder of videos instead. Labels of mmaction2 lists are ignored.
    """
    if not ann_file:
        records = [PretrainRecord(p, 0, -1) for p in find_videos(data_root, exts)]
        if not records:
            raise ValueError(f"no video files ({', '.join(exts)}) found under {data_root}")
        return records
    if not Path(ann_file).is_file():
        raise FileNotFoundError(f"annotation file not found: {ann_file}")
    if _is_original_list(ann_file):
        # The original joins root and path as written (raw-frame folders have no extension).
        records = [
            PretrainRecord(os.path.join(data_root, r.path), r.start_idx, r.total_frames)
            for r in parse_pretrain_list(ann_file)
        ]
    else:
        # mmaction2's rule: join with the prefix, '.mp4' appended to a bare name.
        records = [
            PretrainRecord(resolve_video_path(data_root or None, r.filename), 0, -1)
            for r in parse_video_list(ann_file)
        ]
    if not records:
        raise ValueError(f"{ann_file}: no entries")
    return records


def epoch_batches(
    num_items: int,
    batch_size: int,
    *,
    epoch: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    shuffle: bool = True,
) -> np.ndarray:
    """This rank's batches of one epoch, `(steps, batch_size)` int64 item indices.

    DistributedSampler semantics with drop_last: a permutation seeded by `seed + epoch`, cut to a
    multiple of `world_size`, rank r takes positions r, r + W, ...; incomplete batches are
    dropped, so `steps = num_items // (batch_size · world_size)` on every rank. Step s of all
    ranks together covers the same items as step s of one process with `batch_size · W`.
    """
    if shuffle:
        g = torch.Generator().manual_seed(seed + epoch)
        order = torch.randperm(num_items, generator=g).numpy()
    else:
        order = np.arange(num_items)
    total = num_items // world_size * world_size
    mine = order[rank:total:world_size]
    steps = len(mine) // batch_size
    return mine[: steps * batch_size].reshape(steps, batch_size).astype(np.int64)


def _seed_from(rng: np.random.Generator) -> int:
    return int(rng.integers(2**63 - 1))


def _read_frame_folder(record: PretrainRecord, indices: np.ndarray, tmpl: str) -> np.ndarray:
    frames = []
    for i in indices:
        path = os.path.join(record.path, tmpl.format(int(i) + record.start_idx))
        try:
            with Image.open(path) as img:
                frames.append(np.asarray(img.convert("RGB")))
        except OSError as e:
            raise VideoDecodeError(path, f"cannot read frame: {e}") from None
    return np.stack(frames)


class PretrainDataset(Dataset):
    """Items keyed by `(epoch, index)` (a plain int means epoch 0); see the module docstring."""

    def __init__(
        self,
        records: Sequence[PretrainRecord],
        *,
        num_frames: int = 16,
        sampling_rate: int = 4,
        input_size: int = 224,
        num_sample: int = 1,
        patch_size: int = 16,
        tubelet_size: int = 2,
        mask_type: str = "tube",
        mask_ratio: float = 0.9,
        decoder_mask_type: str = "run_cell",
        decoder_mask_ratio: float = 0.5,
        scales: Sequence[float] = (1, 0.875, 0.75, 0.66),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        seed: int = 0,
        max_retries: int = 10,
        frame_tmpl: str = "img_{:05}.jpg",
        info_fn: InfoFn = open_video,
        reader: Reader = read_frames,
    ) -> None:
        if num_frames % tubelet_size or input_size % patch_size:
            raise ValueError(
                f"num_frames {num_frames} / input_size {input_size} must be divisible by the "
                f"tubelet {tubelet_size} / patch {patch_size}"
            )
        self.records = list(records)
        self.num_frames = num_frames
        self.sampling_rate = sampling_rate
        self.input_size = input_size
        self.num_sample = num_sample
        self.grid = (num_frames // tubelet_size, input_size // patch_size, input_size // patch_size)
        self.mask_type, self.mask_ratio = mask_type, mask_ratio
        self.decoder_mask_type, self.decoder_mask_ratio = decoder_mask_type, decoder_mask_ratio
        self.scales = tuple(scales)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
        self.seed = seed
        self.max_retries = max_retries
        self.frame_tmpl = frame_tmpl
        self.info_fn = info_fn
        self.reader = reader
        # Fail at construction, not in a worker, on a bad mask setting.
        g = torch.Generator().manual_seed(0)
        probe = encoder_mask(mask_type, 1, self.grid, mask_ratio, g)
        decoder_mask(decoder_mask_type, probe, self.grid, decoder_mask_ratio, g)

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, record: PretrainRecord, rng: np.random.Generator) -> np.ndarray:
        if record.total_frames >= 0:  # raw-frame folder with a known frame count
            n = record.total_frames
            idx = pretrain_indices(n, rng, self.num_frames, self.sampling_rate)
            return _read_frame_folder(record, idx, self.frame_tmpl)
        n = int(self.info_fn(record.path).num_frames)
        idx = pretrain_indices(n, rng, self.num_frames, self.sampling_rate)
        return self.reader(record.path, idx)  # (T, H, W, 3) uint8

    def augment(self, frames: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One augmented copy: multi-scale crop + resize, normalise, fresh masks."""
        h, w = frames.shape[1:3]
        y, x, ch, cw = multi_scale_crop_params(h, w, rng, self.input_size, self.scales)
        size = (self.input_size, self.input_size)
        crops = [
            np.asarray(Image.fromarray(f[y : y + ch, x : x + cw]).resize(size, Image.BILINEAR))
            for f in frames
        ]
        clip = torch.from_numpy(np.stack(crops))  # (T, H, W, 3) uint8
        clip = clip.permute(3, 0, 1, 2).float().div_(255)  # (3, T, H, W) in [0, 1]
        clip = (clip - self.mean) / self.std
        g = torch.Generator().manual_seed(_seed_from(rng))
        mask = encoder_mask(self.mask_type, 1, self.grid, self.mask_ratio, g)  # (1, N)
        dmask = decoder_mask(self.decoder_mask_type, mask, self.grid, self.decoder_mask_ratio, g)
        return dict(videos=clip, mask=mask[0], decode_mask=dmask[0])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = (0, key) if isinstance(key, int | np.integer) else key
        epoch, index = int(epoch), int(index)
        errors: list[str] = []
        item = index
        for attempt in range(self.max_retries + 1):
            if attempt:
                # Deterministic replacement: a function of the key and the attempt only.
                pick = np.random.default_rng([self.seed, epoch, index, attempt, 7])
                item = int(pick.integers(len(self.records)))
            rng = np.random.default_rng([self.seed, epoch, index, attempt])
            try:
                frames = self._load(self.records[item], rng)
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
        copies = [
            self.augment(frames, np.random.default_rng([self.seed, epoch, index, attempt, 1 + r]))
            for r in range(self.num_sample)
        ]
        out: dict[str, Any] = {k: torch.stack([c[k] for c in copies]) for k in copies[0]}
        out.update(index=item, errors=errors)
        return out


def collate_pretrain(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Flatten the repeated copies: a batch of B items becomes `B · num_sample` clips."""
    out = {k: torch.cat([b[k] for b in batch]) for k in ("videos", "mask", "decode_mask")}
    out["index"] = [b["index"] for b in batch]
    out["errors"] = [e for b in batch for e in b["errors"]]
    return out


def write_synthetic_videos(
    folder: str | os.PathLike,
    count: int,
    *,
    num_frames: int = 48,
    size: tuple[int, int] = (96, 128),
    seed: int = 0,
    fps: int = 30,
) -> list[str]:
    """Fill `folder` with `count` moving-square H.264 videos (`(h, w)` frames) if it has fewer.

    Existing files are kept, so the call is idempotent; returns the sorted video paths.
    """
    from videomae2.data.synthetic import moving_square_video, write_video

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"synthetic_{i:04d}.mp4"
        if path.exists():
            continue
        frames = moving_square_video(num_frames, size[0], size[1], np.random.default_rng([seed, i]))
        tmp = folder / f".partial_{i:04d}.mp4"
        write_video(tmp, frames, fps=fps)
        os.replace(tmp, path)  # a half-written file never looks like a video
    return find_videos(folder)
