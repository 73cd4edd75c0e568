"""The test job: mmaction2's multi-view Kinetics test, exactly, and faster.

Flow: annotation list -> VideoTestDataset (decode, sample, resize, crop; in DataLoader workers so
decoding overlaps the model) -> Recognizer (normalise, backbone over all views, per-view softmax,
mean) -> per-video scores in annotation order -> AccMetric numbers, the `--dump` pickle, a JSON.

A bad video never loses the others: it is reported by path and reason, listed in the work dir and
left out of the metrics (or, with `strict`, stops the run at once).

Distributed (`--launcher pytorch` under torchrun): mmaction2's DefaultSampler split (pad by
wrapping to a multiple of the world size, rank r takes every W-th index), results gathered by
video index on rank 0, padding dropped: the dump and metrics equal a one-process run's.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset

from videomae2.config import TestConfig, apply_overrides, load_config, to_dict
from videomae2.data.annotations import VideoRecord, parse_video_list
from videomae2.data.datasets import VideoTestDataset, collate_views
from videomae2.data.decode import open_video, read_frames
from videomae2.metrics import accuracy_metrics
from videomae2.models.recognizer import Recognizer, cast_matmul_weights
from videomae2.models.registry import create_model
from videomae2.progress import Progress


@dataclasses.dataclass
class VideoResult:
    index: int
    label: int
    score: np.ndarray | None  # (C,) float32, None for a failed video
    error: str | None = None


# ----------------------------------------------------------------------------------------------
# Building blocks


def views_per_forward(requested: int, device: torch.device) -> int | None:
    """`test_cfg.max_views_per_forward` resolved for `device` (None: all views of a batch).

    0 (auto) is 1 on the CPU: one view's activations (1568 tokens x D per block) stay in the
    caches, 15 at once do not. benchmarks/bench_views_per_forward.py, 2 threads: 1.0-1.45x faster
    than all 15 at once over several runs (ViT-S/B, fp32/bf16), and the test job's peak memory
    roughly halves. A GPU wants the whole batch. Scores agree to float rounding.
    """
    if requested < 0:
        raise ValueError(f"test_cfg.max_views_per_forward must be >= 0, got {requested}")
    if requested:
        return requested
    return 1 if device.type == "cpu" else None


def build_recognizer(
    cfg: TestConfig, checkpoint: str | None, device: torch.device | str = "cpu"
) -> Recognizer:
    """Backbone from the registry + weights + mmaction2's preprocessor and aggregation, on
    `device` (which also decides the auto `max_views_per_forward`)."""
    device = torch.device(device)
    bb = cfg.model.backbone
    model = create_model(bb.arch, num_classes=cfg.model.cls_head.num_classes, **bb.create_kwargs())
    if checkpoint:
        from videomae2.checkpoint import load_weights

        load_weights(model, checkpoint, strict=True)
    pre = cfg.model.data_preprocessor
    if pre.format_shape != "NCTHW":
        raise ValueError(
            f"model.data_preprocessor.format_shape must be NCTHW, got {pre.format_shape}"
        )
    bf16 = cfg.test_cfg.precision == "bf16"
    if bf16:  # autocast would round the same weights in every forward: round them once
        cast_matmul_weights(model, torch.bfloat16)
    return (
        Recognizer(
            model.eval(),
            mean=pre.mean,
            std=pre.std,
            average_clips=cfg.model.cls_head.average_clips,
            max_views_per_forward=views_per_forward(cfg.test_cfg.max_views_per_forward, device),
            autocast_dtype=torch.bfloat16 if bf16 else None,
        )
        .eval()
        .to(device)
    )


def build_dataset(
    cfg: TestConfig, records: list[VideoRecord] | None = None, data_prefix: str | None = None
) -> VideoTestDataset:
    """The config's test pipeline over its annotation list (or over `records` / `data_prefix`)."""
    ds = cfg.test_dataloader.dataset
    pipe = ds.pipeline
    sf = pipe.sample_frames
    if not sf.test_mode or sf.out_of_bound_opt != "loop" or sf.twice_sample:
        raise ValueError(
            "the test pipeline supports SampleFrames(test_mode=True, out_of_bound_opt='loop', "
            "twice_sample=False) only"
        )
    if pipe.crop not in ("three_crop", "center_crop"):
        raise ValueError(f"pipeline.crop must be three_crop or center_crop, got {pipe.crop!r}")
    if records is None:
        records = parse_video_list(ds.ann_file)
        data_prefix = ds.data_prefix.video
    num_classes = cfg.model.cls_head.num_classes
    for i, rec in enumerate(records):
        if rec.label >= num_classes:
            raise ValueError(
                f"{ds.ann_file}: entry {i + 1} ({rec.filename}) has label {rec.label}, but the "
                f"model has {num_classes} classes"
            )
    return VideoTestDataset(
        records,
        data_prefix,
        clip_len=sf.clip_len,
        frame_interval=sf.frame_interval,
        num_clips=sf.num_clips,
        short_side=pipe.resize_short,
        crop_size=pipe.crop_size,
        num_crops=3 if pipe.crop == "three_crop" else 1,
        reader=functools.partial(read_frames, backend=ds.decode_backend),
        info=functools.partial(open_video, backend=ds.decode_backend),
    )


def shard_indices(n: int, world_size: int, rank: int) -> list[int]:
    """mmaction2's DefaultSampler(shuffle=False, round_up=True) share of rank `rank`."""
    per_rank = math.ceil(n / world_size) if n else 0
    padded = [i % n for i in range(per_rank * world_size)] if n else []
    return padded[rank::world_size]


def _worker_init(_: int) -> None:
    # Decoding workers must not fight the model for cores with their own thread pools.
    torch.set_num_threads(1)
    with contextlib.suppress(Exception):
        import cv2

        cv2.setNumThreads(1)


def build_loader(dataset, cfg: TestConfig, pin_memory: bool) -> DataLoader:
    dl = cfg.test_dataloader
    workers = dl.num_workers
    return DataLoader(
        dataset,
        batch_size=dl.batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_views,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers else None,
        persistent_workers=False,  # one pass: nothing to keep alive
        prefetch_factor=dl.prefetch_factor if workers else None,
    )


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_context(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"test_cfg.precision must be fp32 or bf16, got {precision!r}")


# ----------------------------------------------------------------------------------------------
# The loop


def evaluate(
    recognizer: Recognizer,
    loader: DataLoader,
    *,
    device: torch.device,
    precision: str = "fp32",
    strict: bool = False,
    progress: Progress | None = None,
) -> tuple[list[VideoResult], dict[str, float]]:
    """Score every video the loader yields; returns results (any order) and timing totals."""
    results: list[VideoResult] = []
    hits = scored = 0
    model_s = wait_s = 0.0
    t_wait = time.perf_counter()
    for batch in loader:
        wait_s += time.perf_counter() - t_wait
        for f in batch["failed"]:
            if strict:
                raise RuntimeError(f"unreadable video (strict mode): {f['error']}")
            results.append(VideoResult(f["index"], f["label"], None, f["error"]))
        if batch["inputs"] is not None:
            t0 = time.perf_counter()
            views = batch["inputs"].to(device, non_blocking=True)
            with torch.inference_mode(), autocast_context(device, precision):
                scores = recognizer(views).float().cpu().numpy()
            model_s += time.perf_counter() - t0
            for idx, label, score in zip(batch["index"], batch["label"].tolist(), scores):
                results.append(VideoResult(idx, label, score))
                scored += 1
                hits += int(np.argmax(score) == label)
        if progress is not None:
            top1 = f"top1 {100 * hits / scored:.1f}%" if scored else ""
            failed = sum(r.error is not None for r in results)
            progress.update(
                len(batch["index"]) + len(batch["failed"]),
                top1 + (f" failed {failed}" if failed else ""),
            )
        t_wait = time.perf_counter()
    return results, {"model_s": model_s, "data_wait_s": wait_s}


def gather_results(results: list[VideoResult], n: int) -> list[VideoResult]:
    """All ranks' results in dataset order on every rank; padding duplicates dropped."""
    if dist.is_available() and dist.is_initialized():
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, results)
        results = [r for part in parts for r in part]
    by_index = {r.index: r for r in results}
    missing = sorted(set(range(n)) - set(by_index))
    assert not missing, f"no result for dataset items {missing[:10]}"
    return [by_index[i] for i in range(n)]


def make_dump(results: list[VideoResult], num_classes: int, img_shape: tuple[int, int]) -> list:
    """mmaction2's DumpResults content: one dict per scored video, in annotation order."""
    out = []
    for r in results:
        if r.score is None:
            continue
        score = torch.from_numpy(np.ascontiguousarray(r.score, dtype=np.float32))
        out.append(
            {
                "gt_label": torch.tensor([r.label], dtype=torch.long),
                "pred_score": score,
                "pred_label": torch.tensor([int(torch.argmax(score))], dtype=torch.long),
                "num_classes": num_classes,
                "img_shape": img_shape,
            }
        )
    return out


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------------------------
# The job


def _init_distributed(launcher: str, device: torch.device) -> tuple[int, int]:
    if launcher == "none":
        return 0, 1
    if launcher != "pytorch":
        raise ValueError(f"--launcher {launcher} is not supported here; use none or pytorch")
    if "RANK" not in os.environ:
        raise RuntimeError("--launcher pytorch needs torchrun's environment (RANK, WORLD_SIZE)")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def run_test(
    cfg: TestConfig,
    checkpoint: str | None,
    *,
    work_dir: str | Path,
    dump: str | None = None,
    launcher: str = "none",
) -> dict[str, Any]:
    """Run the whole test job; returns the metrics dict (every rank gets it)."""
    if dump is not None and not dump.endswith((".pkl", ".pickle")):
        raise ValueError(f"--dump must end in .pkl or .pickle, got {dump}")
    rt = cfg.test_cfg
    device = select_device(rt.device)
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    rank, world = _init_distributed(launcher, device)
    if rt.threads:
        torch.set_num_threads(rt.threads)
    work_dir = Path(work_dir)
    if rank == 0:
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")

    if rt.compile and rt.precision == "bf16" and device.type == "cpu":
        # measured with torch 2.13: inductor's CPU code for this model under bf16 autocast
        # returns NaN logits once the patch embedding and two blocks share a graph (one block,
        # two blocks on eager tokens and aot_eager are exact). It is inductor's vectorized C++:
        # cpp.simdlen=1 is exact, and so is freezing=True (other kernels), which is no faster
        # than eager bf16 here (0.235 vs 0.215 s per ViT-S view). Refuse rather than write a
        # result file of NaNs (benchmarks/bench_forward.py --compile shows it).
        raise ValueError(
            "test_cfg.compile with test_cfg.precision='bf16' on CPU gives NaN scores with this "
            "torch (inductor bug, measured); use --compile or --bf16, not both"
        )
    dataset = build_dataset(cfg)
    recognizer = build_recognizer(cfg, checkpoint, device)
    if rt.compile:
        t0 = time.perf_counter()
        recognizer.model = torch.compile(recognizer.model)
        print(f"torch.compile wrapped the backbone ({time.perf_counter() - t0:.1f}s)")
    shard = shard_indices(len(dataset), world, rank)
    loader = build_loader(Subset(dataset, shard), cfg, pin_memory=device.type == "cuda")
    progress = Progress(len(shard), unit="videos", enabled=rank == 0)
    t0 = time.perf_counter()
    results, timing = evaluate(
        recognizer,
        loader,
        device=device,
        precision=rt.precision,
        strict=rt.strict,
        progress=progress,
    )
    timing["total_s"] = time.perf_counter() - t0
    results = gather_results(results, len(dataset))

    ok = [r for r in results if r.score is not None]
    failed = [r for r in results if r.score is None]
    metrics: dict[str, Any] = {}
    if ok:
        metrics = accuracy_metrics(
            np.stack([r.score for r in ok]),
            np.array([r.label for r in ok]),
            tuple(cfg.test_evaluator.topk),
            tuple(cfg.test_evaluator.metrics),
        )
    summary = {
        **metrics,
        "num_videos": len(results),
        "num_scored": len(ok),
        "num_failed": len(failed),
        "world_size": world,
        "precision": rt.precision,
        "timing": {**timing, "per_video_s": timing["total_s"] / max(len(shard), 1)},
    }
    if rank == 0:
        _report(summary, failed, dataset, work_dir)
        if dump:
            crop = dataset.crop_size
            records = make_dump(results, cfg.model.cls_head.num_classes, (crop, crop))
            data = pickle.dumps(records, protocol=2)
            atomic_write_bytes(dump, data)
            print(f"results dumped to {dump} ({len(ok)} videos)")
    if world > 1:
        dist.barrier()
    return summary


def _report(summary: dict, failed: list[VideoResult], dataset, work_dir: Path) -> None:
    for key in sorted(k for k in summary if k.startswith("acc/")):
        print(f"{key}: {summary[key]:.4f}")
    t = summary["timing"]
    print(
        f"{summary['num_scored']} videos scored in {t['total_s']:.1f}s "
        f"({t['per_video_s']:.3f} s/video on this rank; model {t['model_s']:.1f}s, "
        f"waiting for data {t['data_wait_s']:.1f}s)"
    )
    (work_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    failed_path = work_dir / "failed_videos.txt"
    if failed:
        lines = [f"{r.index}\t{dataset.path(r.index)}\t{r.error}" for r in failed]
        failed_path.write_text("\n".join(lines) + "\n")
        bar = "!" * 78
        print(f"{bar}\n{len(failed)} of {summary['num_videos']} videos could NOT be read and are")
        print(f"EXCLUDED from the metrics and the dump; list: {failed_path}")
        for line in lines[:10]:
            print("  " + line)
        if len(lines) > 10:
            print(f"  ... and {len(lines) - 10} more")
        print(bar)
    elif failed_path.exists():
        failed_path.unlink()
    print(f"metrics written to {work_dir / 'metrics.json'}")


# ----------------------------------------------------------------------------------------------
# CLI (`videomae2 test` and tools/test.py)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="test config file (configs/recognition/...)")
    parser.add_argument("checkpoint", help="checkpoint in any supported layout")
    parser.add_argument("--work-dir", help="default: ./work_dirs/<config name>")
    parser.add_argument("--dump", help="write per-video results as a pickle (.pkl/.pickle)")
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys, e.g. test_dataloader.dataset.ann_file=val.txt",
    )
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    parser.add_argument("--strict", action="store_true", help="abort at the first bad video")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (opt-in)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: auto)")
    for flag in ("--show", "--show-dir", "--interval", "--wait-time"):
        parser.add_argument(flag, nargs="?", const=True, default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    for flag in ("show", "show_dir", "interval", "wait_time"):
        if getattr(args, flag) is not None:
            raise SystemExit(
                f"--{flag.replace('_', '-')} needs a visualization hook, which the VideoMAE V2 "
                "configs do not have (mmaction2 fails the same way)"
            )
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    cfg = load_config(args.config, TestConfig)
    apply_overrides(cfg, args.cfg_options)
    if args.strict:
        cfg.test_cfg.strict = True
    if args.bf16:
        cfg.test_cfg.precision = "bf16"
    if args.compile:
        cfg.test_cfg.compile = True
    if args.device:
        cfg.test_cfg.device = args.device
    work_dir = args.work_dir or cfg.work_dir or str(Path("work_dirs") / Path(args.config).stem)
    run_test(cfg, args.checkpoint, work_dir=work_dir, dump=args.dump, launcher=args.launcher)
    return 0
