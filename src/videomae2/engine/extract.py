"""Sliding-window feature extraction for temporal action detection: `videomae2 extract-features`.

    videomae2 extract-features VIDEOS --checkpoint CKPT --out FEATURES [--preset thumos14]

Every video becomes ``<out>/<stem>.npy``, float32 ``(num_windows, D)``: the classifier's
`forward_features` (fc_norm of the mean token) of each window of `window` consecutive frames,
windows starting at ``0, stride, 2*stride, ...`` while the whole window fits
(``range(0, n - window + 1, stride)``; spec finetune-distill.md §10: stride 4 for THUMOS14, 16 for
FineAction, window 16).

Preprocessing, `--preprocess`:
- ``original`` (default): the original extraction script's, needed to reproduce its released
  features. Frames to [0, 1] (``/ 255``), NO mean/std normalisation, each frame resized to
  exactly 224x224 with ``F.interpolate(bilinear, align_corners=False)``, squashing the aspect
  ratio. Bit-identical to the original's whole-window resize (tested): the resize treats every
  frame's planes independently.
- ``standard``: what the models were trained and tested with. mmaction2's short-side resize to
  224 (OpenCV bilinear), the centre 224x224 crop, ImageNet mean/std on the 0-255 scale. For new
  features; the choice is recorded in ``extract_summary.json``.

Differences from the original script, deliberately:
- output names are ``Path(name).stem`` (the original cuts at the FIRST dot, so ``a.b.mp4`` and
  ``a.c.mp4`` would both write ``a.npy``);
- a video too short for one window, or one that cannot be decoded, is listed in
  ``failed_videos.txt`` and the run goes on (the original stops with an exception); the exit
  status is 1 when any video failed;
- each file is written to a temporary name and renamed, so an interrupted run never leaves a
  truncated ``.npy`` that a rerun would skip; existing outputs are skipped (``--overwrite``
  recomputes them), as in the original;
- under torchrun every rank takes every WORLD_SIZE-th video (on GPU ``cuda:LOCAL_RANK``) and
  writes its own ``extract_summary.rank<r>.json``; no process group is needed;
- decoding streams the video (memory: one window, not the video) in a background thread that
  prepares the next batches while the model runs, or, with ``--num-workers W``, in W DataLoader
  processes that each take whole videos (what a GPU needs; features are bit-identical);
  ``--batch-size`` windows go through the model at once (features agree with one window per
  forward to float rounding).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from videomae2.checkpoint.io import atomic_write
from videomae2.data.decode import BACKENDS, VideoDecodeError, iter_frames, open_video
from videomae2.data.transforms import center_crop, normalize, resize_short_side

PRESETS = {"thumos14": 4, "fineaction": 16}  # window stride of the original script
PREPROCESS = ("original", "standard")
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv", ".3gp"}
)


def window_starts(num_frames: int, window: int = 16, stride: int = 4) -> range:
    """First frame of every window that fits: the original's ``range(0, n - 15, 4)`` at 16/4."""
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got {window} and {stride}")
    return range(0, num_frames - window + 1, stride)


def original_frame(frame: np.ndarray, size: int = 224) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, size, size)`` float32 in [0, 1], the original's transform."""
    x = torch.from_numpy(frame).permute(2, 0, 1).to(torch.float32) / 255  # (3, H, W)
    x = F.interpolate(x[:, None], size=(size, size), mode="bilinear", align_corners=False)
    return x[:, 0]


def standard_frame(frame: np.ndarray, size: int = 224) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, size, size)`` uint8: mmaction2's short-side resize + centre
    crop (normalised later, per batch, by `data.transforms.normalize`)."""
    x = center_crop(resize_short_side(frame[None], size), size)[0]
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)


def iter_windows(
    frames: Iterator[np.ndarray],
    window: int,
    stride: int,
    prepare: Callable[[np.ndarray], torch.Tensor],
) -> Iterator[tuple[int, tuple[torch.Tensor, ...]]]:
    """``(start, its window's prepared frames)`` for every window of `window_starts`, from a
    frame stream; each frame ``(3, H, W)``.

    Each frame is prepared once (not once per window it belongs to) and only the last `window`
    prepared frames are kept. The caller stacks them (once, into its batch).
    """
    window_starts(0, window, stride)  # validates both
    recent: deque[torch.Tensor] = deque(maxlen=window)
    for i, frame in enumerate(frames):
        if i % stride >= window:  # between windows (stride > window): in none of them
            continue
        recent.append(prepare(frame))
        start = i - window + 1
        if start >= 0 and start % stride == 0:
            yield start, tuple(recent)


@dataclass
class ExtractConfig:
    window: int = 16
    stride: int = 4
    preprocess: str = "original"
    size: int = 224
    batch_size: int = 0  # 0 = auto: 1 window per forward on the CPU, 16 on a GPU
    precision: str = "fp32"
    backend: str = "pyav"
    prefetch: int = 2  # batches prepared ahead by the decode thread (0: decode inline)

    def __post_init__(self) -> None:
        if self.preprocess not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {PREPROCESS}, got {self.preprocess!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        window_starts(0, self.window, self.stride)  # validates both
        if self.batch_size < 0 or self.prefetch < 0:
            raise ValueError("batch_size and prefetch must be >= 0")


def _batches(
    frames: Iterator[np.ndarray], cfg: ExtractConfig, batch: int
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Windows in batches ``(starts, (B, 3, window, H, W))``: each window's frames are stacked
    straight into the batch tensor (no per-window tensor copied again)."""
    prepare = original_frame if cfg.preprocess == "original" else standard_frame
    starts: list[int] = []
    out: torch.Tensor | None = None
    for start, wframes in iter_windows(
        frames, cfg.window, cfg.stride, lambda f: prepare(f, cfg.size)
    ):
        if out is None:  # a fresh tensor per batch: the consumer may still hold the previous one
            f0 = wframes[0]
            out = torch.empty((batch, f0.shape[0], len(wframes), *f0.shape[1:]), dtype=f0.dtype)
        torch.stack(wframes, dim=1, out=out[len(starts)])
        starts.append(start)
        if len(starts) == batch:
            yield starts, out
            starts, out = [], None
    if starts:
        assert out is not None
        yield starts, out[: len(starts)]


def video_pieces(index: int, path: str, cfg: ExtractConfig, batch: int) -> Iterator[dict]:
    """One video as stream items: ``{video, starts, x}`` per batch of windows, then
    ``{video, done: True, error}`` (error None, or why the video has no features).

    The windows are those of the decoder's frame count (the original's ``len(vr)``), and every
    one of them must decode: a video shorter than one window, unreadable, or truncated (it
    decodes fewer frames than its header counts) ends with an error instead. Errors are plain
    strings so that they cross DataLoader worker processes.
    """
    try:
        n = open_video(path, cfg.backend).num_frames
        expected = window_starts(n, cfg.window, cfg.stride)
        if not expected:
            raise VideoDecodeError(path, f"{n} frames: shorter than one {cfg.window}-frame window")
        got = 0
        for starts, x in _batches(itertools.islice(iter_frames(path, cfg.backend), n), cfg, batch):
            got += len(starts)
            yield dict(video=index, starts=starts, x=x)
        if got != len(expected):
            raise VideoDecodeError(
                path,
                f"the header counts {n} frames ({len(expected)} windows) but decoding ended "
                f"after {got} windows: a truncated file?",
            )
    except VideoDecodeError as e:
        yield dict(video=index, done=True, error=e.reason)
    except (OSError, ValueError) as e:
        yield dict(video=index, done=True, error=f"{type(e).__name__}: {e}")
    else:
        yield dict(video=index, done=True, error=None)


class WindowStream(torch.utils.data.IterableDataset):
    """The pieces of every video; DataLoader worker w of W takes videos w, w+W, ... whole."""

    def __init__(self, paths: list[str], cfg: ExtractConfig, batch: int) -> None:
        self.paths, self.cfg, self.batch = paths, cfg, batch

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for i in range(wid, len(self.paths), nw):
            yield from video_pieces(i, self.paths[i], self.cfg, self.batch)


def _prefetched(it: Iterator, depth: int) -> Iterator:
    """`it` run in a background thread, `depth` items ahead; its exception is re-raised here."""
    if depth == 0:
        yield from it
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in it:
                if stop.is_set():
                    return
                q.put(item)
            q.put(done)
        except BaseException as e:  # handed to the consumer
            q.put(e)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


class FeatureExtractor:
    """A classifier's `forward_features` over the windows of one video at a time."""

    def __init__(self, model: torch.nn.Module, cfg: ExtractConfig, device: torch.device) -> None:
        if not hasattr(model, "forward_features") or not hasattr(model, "fc_norm"):
            raise TypeError(
                f"feature extraction needs a classifier checkpoint (VisionTransformer), got "
                f"{type(model).__name__}; fine-tune or convert a pretraining checkpoint first"
            )
        self.cfg, self.device = cfg, device
        self.batch = cfg.batch_size or (1 if device.type == "cpu" else 16)
        if cfg.precision == "bf16":
            from videomae2.models.recognizer import cast_matmul_weights

            cast_matmul_weights(model, torch.bfloat16)
        self.model = model.eval().to(device)
        self.dim = int(model.num_features)

    @torch.inference_mode()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """A prepared batch ``(B, 3, T, H, W)`` -> float32 ``(B, D)``."""
        x = x.to(self.device, non_blocking=True)
        if self.cfg.preprocess == "standard":
            x = normalize(x)  # ImageNet mean/std, 0-255 scale, as the test pipeline
        if self.cfg.precision == "bf16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                return self.model.forward_features(x).float()
        return self.model.forward_features(x).float()

    def stream(
        self, paths: list[str], num_workers: int = 0
    ) -> Iterator[tuple[int, np.ndarray | None, list[int], str | None]]:
        """``(index, features, starts, error)`` per video, in the order they finish.

        ``num_workers = 0``: decoding runs in one background thread (`ExtractConfig.prefetch`
        batches ahead). ``> 0``: DataLoader worker processes decode whole videos in parallel
        (pinned memory on a GPU), which a fast GPU needs to stay busy.
        """
        ds = WindowStream(paths, self.cfg, self.batch)
        cuda = self.device.type == "cuda"
        if num_workers == 0:
            items = _prefetched(iter(ds), self.cfg.prefetch)
        else:
            loader = torch.utils.data.DataLoader(
                ds,
                batch_size=None,
                num_workers=num_workers,
                pin_memory=cuda,
                prefetch_factor=max(1, self.cfg.prefetch),
            )
            items = iter(loader)
        partial: dict[int, tuple[list[torch.Tensor], list[int]]] = {}
        for item in items:
            i = item["video"]
            if item.get("done"):
                feats, starts = partial.pop(i, ([], []))
                if item["error"] is not None:
                    yield i, None, [], item["error"]
                else:
                    yield i, torch.cat(feats).numpy(), starts, None
                continue
            x = item["x"]
            if cuda and not x.is_pinned():
                x = x.pin_memory()
            feats, starts = partial.setdefault(i, ([], []))
            feats.append(self.features(x).cpu())
            starts += item["starts"]

    def video(self, path: str) -> tuple[np.ndarray, list[int]]:
        """``(num_windows, D)`` float32 features and the window starts of one video; raises
        `VideoDecodeError` where `video_pieces` ends with an error."""
        for _, feats, starts, error in self.stream([str(path)]):
            if error is not None:
                raise VideoDecodeError(str(path), error)
            return feats, starts
        raise AssertionError("the stream ends every video with a result")


def list_videos(source: str | os.PathLike, data_prefix: str | None = None) -> list[Path]:
    """The videos of a folder (sorted, by suffix) or of a list file (first field of every
    non-empty line, relative to `data_prefix`, else to the list's folder)."""
    source = Path(source)
    if source.is_dir():
        return sorted(p for p in source.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: neither a folder of videos nor a list file")
    base = Path(data_prefix) if data_prefix else source.parent
    out = []
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.strip():
            name = line.split()[0]
            out.append(Path(name) if Path(name).is_absolute() else base / name)
    return out


def unique_stems(videos: list[Path]) -> tuple[list[Path], dict[str, str]]:
    """Videos whose output name is free (first come), and the others with the reason."""
    owner: dict[str, Path] = {}
    kept, dropped = [], {}
    for path in videos:
        if path.stem in owner:
            dropped[str(path)] = f"same output name {path.stem}.npy as {owner[path.stem]}"
        else:
            owner[path.stem] = path
            kept.append(path)
    return kept, dropped


def shard(videos: list[Path], rank: int, world: int) -> list[Path]:
    """Rank `rank`'s share of `world` processes (torchrun): every `world`-th video. Each output
    file has one owner, so the ranks need no communication."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside a world of {world}")
    return videos[rank::world]


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to a name
            np.save(f, array)

    atomic_write(path, write)


@dataclass
class ExtractSummary:
    config: dict
    checkpoint: str
    feature_dim: int
    videos: dict[str, dict] = field(default_factory=dict)  # stem -> windows, seconds, ...
    skipped_existing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # path -> reason
    timing: dict = field(default_factory=dict)  # seconds, windows, windows_per_s of this run


def extract_features(
    extractor: FeatureExtractor,
    videos: list[Path],
    out_dir: Path,
    overwrite: bool = False,
    num_workers: int = 0,
    log: Callable[[str], None] = print,
) -> ExtractSummary:
    """Every video -> ``out_dir/<stem>.npy``; bad videos are listed, never fatal."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = ExtractSummary(asdict(extractor.cfg), "", extractor.dim)
    videos, summary.failed = unique_stems(videos)
    todo = []
    for path in videos:
        if (out_dir / f"{path.stem}.npy").exists() and not overwrite:
            summary.skipped_existing.append(path.stem)
        else:
            todo.append(path)
    t0 = last = time.perf_counter()
    windows = 0
    for done, (i, feats, starts, error) in enumerate(
        extractor.stream([str(p) for p in todo], num_workers), start=1
    ):
        path, now = todo[i], time.perf_counter()
        dt, last = now - last, now  # since the previous video finished
        if error is not None:
            summary.failed[str(path)] = error
            log(f"[{done}/{len(todo)}] FAILED {path}: {error}")
            continue
        target = out_dir / f"{path.stem}.npy"
        save_npy_atomic(target, feats)
        windows += len(starts)
        summary.videos[path.stem] = dict(
            path=str(path), windows=len(starts), last_start=starts[-1], seconds=round(dt, 3)
        )
        log(f"[{done}/{len(todo)}] {target} {feats.shape} ({dt:.1f}s)")
    total = time.perf_counter() - t0
    summary.timing = dict(
        seconds=round(total, 3), windows=windows, windows_per_s=windows / total if total else 0.0
    )
    return summary


def write_summary(summary: ExtractSummary, out_dir: Path, suffix: str = "") -> None:
    """``extract_summary<suffix>.json`` and ``failed_videos<suffix>.txt`` (suffix: per rank)."""
    path = out_dir / f"extract_summary{suffix}.json"
    path.write_text(json.dumps(asdict(summary), indent=1) + "\n")
    failed_path = out_dir / f"failed_videos{suffix}.txt"
    if summary.failed:
        failed_path.write_text("".join(f"{p}\t{r}\n" for p, r in summary.failed.items()))
    elif failed_path.exists():
        failed_path.unlink()


# ---- CLI --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", help="a folder of videos, or a list file (path per line)")
    parser.add_argument("--checkpoint", required=True, help="a classifier checkpoint, any layout")
    parser.add_argument("--out", required=True, help="folder for <stem>.npy features")
    parser.add_argument(
        "--arch", default=None, help="e.g. vit_giant_patch14_224 (default: inferred)"
    )
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), help="the original's stride per dataset"
    )
    parser.add_argument("--stride", type=int, default=None, help="frames between window starts (4)")
    parser.add_argument("--window", type=int, default=16, help="frames per window")
    parser.add_argument("--size", type=int, default=224, help="input height = width")
    parser.add_argument("--preprocess", choices=PREPROCESS, default="original")
    parser.add_argument("--batch-size", type=int, default=0, help="windows per forward (0: auto)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (opt-in)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 (default: auto)")
    parser.add_argument("--backend", choices=BACKENDS, default="pyav", help="video decoder")
    parser.add_argument("--data-prefix", default=None, help="folder a list file's paths are in")
    parser.add_argument("--overwrite", action="store_true", help="recompute existing outputs")
    parser.add_argument(
        "--num-workers", type=int, default=0, help="decode processes (0: one background thread)"
    )


def run(args: argparse.Namespace) -> int:
    from videomae2.checkpoint import load_model
    from videomae2.engine.evaluate import select_device

    if args.preset and args.stride is not None and args.stride != PRESETS[args.preset]:
        raise SystemExit(
            f"--preset {args.preset} means --stride {PRESETS[args.preset]}, got {args.stride}"
        )
    stride = args.stride if args.stride is not None else PRESETS.get(args.preset or "thumos14")
    cfg = ExtractConfig(
        window=args.window,
        stride=stride,
        preprocess=args.preprocess,
        size=args.size,
        batch_size=args.batch_size,
        precision="bf16" if args.bf16 else "fp32",
        backend=args.backend,
    )
    videos = list_videos(args.videos, args.data_prefix)
    if not videos:
        raise SystemExit(f"{args.videos}: no videos found")
    # torchrun: every rank takes its share, on its own GPU; no process group is needed
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    videos, duplicates = unique_stems(videos)
    videos = shard(videos, rank, world)
    device = select_device(args.device)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    model = load_model(args.checkpoint, model_name=args.arch)
    extractor = FeatureExtractor(model, cfg, device)
    out = Path(args.out)
    summary = extract_features(extractor, videos, out, args.overwrite, args.num_workers)
    summary.checkpoint = str(args.checkpoint)
    if rank == 0:
        summary.failed = {**duplicates, **summary.failed}
    suffix = f".rank{rank}" if world > 1 else ""
    write_summary(summary, out, suffix)
    print(
        f"{len(summary.videos)} videos extracted, {len(summary.skipped_existing)} already there, "
        f"{len(summary.failed)} failed; summary: {out / f'extract_summary{suffix}.json'}"
    )
    if summary.failed:
        print(f"FAILED videos (listed in {out / f'failed_videos{suffix}.txt'}):", file=sys.stderr)
        for p, r in list(summary.failed.items())[:10]:
            print(f"  {p}: {r}", file=sys.stderr)
        return 1
    return 0
