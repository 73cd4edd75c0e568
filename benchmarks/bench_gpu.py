"""The GPU check of the speed issue, as one prepared run: ViT-B 5x3 videos/s, MFU, decode limit.

Why: GPU time is lent in minutes, so everything the GPU path must show is measured by one command
that cannot lose what it already measured. Each section is timed separately and written to the
JSON as soon as it ends; a section that fails records its error and the next one still runs.

Sections (ViT-B/16 unless --model, the seed's 16x4x1 sampling, 5 clips x 3 crops = 15 views):
  env      torch / CUDA / device name, SDPA backends that run for this model's shapes
  peak     the measured bf16 (and fp32/TF32) GEMM rate: 8192^3 and the model's GEMM shapes
  model    the Recognizer (bf16 weights + autocast, as `--bf16`; and fp32) on random views,
           1..N videos per forward: ms per video, videos/s, TFLOP/s, MFU against the measured
           peak and against the nominal one (--nominal-tflops); the bf16 vs fp32 score gap
  decode   decode + sample + resize + crop only (no model), through the test DataLoader with W
           workers: the decode-bound ceiling of the whole job in videos/s
  e2e      the test loop itself (`engine.evaluate.evaluate`) with pinned memory and non-blocking
           copies: videos/s, and model time / loop time (1.0 = the GPU never waits for data)

Videos: H.264 clips written by benchmarks/peers/make_fixture.py's encoder (Kinetics-like sizes,
10 s at 30 fps) into --work, each listed --repeat times. Weights are random (speed only).

On a lent H200 (whose image has torch and OpenCV but not PyAV: carry its wheel, see
benchmarks/gpu/README.md):
    python3 benchmarks/bench_gpu.py --json $OUT/gpu.json
Here, as the smoke test does (seconds):
    .venv/bin/python benchmarks/bench_gpu.py --tiny --device cpu --videos 2 --workers 0,1
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchlib import linear_peak_gflops, time_calls  # noqa: E402

from videomae2.config import TestConfig, apply_overrides, load_config  # noqa: E402
from videomae2.data.annotations import VideoRecord  # noqa: E402
from videomae2.engine.evaluate import (  # noqa: E402
    build_dataset,
    build_loader,
    build_recognizer,
    evaluate,
)

CONFIG = (
    "configs/recognition/videomaev2/"
    "vit-{}-p16_videomaev2-vit-g-dist-k710-pre_16x4x1_kinetics-400.py"
)
# --tiny: ViT-S's config with a 64-wide 2-block backbone (the pipeline and 15 views unchanged).
TINY = {"model.backbone.embed_dim": 64, "model.backbone.depth": 2, "model.backbone.num_heads": 2}
# (width, height, frames): Kinetics-like 10 s clips at 30 fps, landscape and portrait.
VIDEO_SHAPES = ((340, 256, 300), (256, 340, 300), (455, 256, 300), (320, 240, 250))
VIEWS = 15  # 5 clips x 3 crops


# ----------------------------------------------------------------------------- helpers
def _load_script(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- sections
def section_env(device: torch.device, cfg: TestConfig) -> dict[str, Any]:
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(
            name=p.name,
            capability=f"{p.major}.{p.minor}",
            sms=p.multi_processor_count,
            memory_gib=round(p.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    # Which SDPA kernels accept this model's attention (bf16, heads x 1568 x 64)?
    bb = cfg.model.backbone
    heads = bb.create_kwargs().get("num_heads", 12)
    q = torch.randn(VIEWS, heads, 1568, 64, device=device, dtype=torch.bfloat16)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {}
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        try:
            with sdpa_kernel(getattr(SDPBackend, name)):
                F.scaled_dot_product_attention(q, q, q)
            backends[name.lower()] = "ok"
        except Exception as e:  # recorded, not fatal
            backends[name.lower()] = f"{type(e).__name__}: {str(e)[:120]}"
    info["sdpa_backends_bf16"] = backends
    return info


def section_peak(device: torch.device, shapes: list[tuple[str, int, int, int]], repeats: int):
    rows = []
    # (label, precision of the operands, TF32 matmuls allowed)
    kinds = [("bf16", "bf16", False), ("fp32", "fp32", False)]
    if device.type == "cuda":
        kinds.append(("tf32", "fp32", True))
    big = 8192 if device.type == "cuda" else 1024
    for label, precision, tf32 in kinds:
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            for name, m, k, n in [("square", big, big, big), *shapes]:
                gflops = linear_peak_gflops(precision, device, (m, k, n), repeats)
                rows.append(dict(dtype=label, gemm=name, M=m, K=k, N=n, tflops=gflops / 1e3))
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old
    return rows


def section_model(
    device: torch.device,
    cfg: TestConfig,
    flops_per_view: float,
    batches: list[int],
    repeats: int,
    peak_tflops: float | None,
    nominal_tflops: float | None,
) -> list[dict[str, Any]]:
    cuda = device.type == "cuda"
    crop = cfg.test_dataloader.dataset.pipeline.crop_size
    frames = cfg.test_dataloader.dataset.pipeline.sample_frames.clip_len
    g = torch.Generator().manual_seed(0)
    rows = []
    scores: dict[str, torch.Tensor] = {}
    for precision in ("bf16", "fp32"):
        cfg.test_cfg.precision = precision
        torch.manual_seed(0)  # the same random weights for both precisions
        rec = build_recognizer(cfg, None, device)
        # a fresh head is ~0 (init_scale): give it weights so that scores differ between
        # videos and precisions (copy_ rounds to a bf16 head exactly as the weight cast would)
        head = rec.model.head.weight
        w = torch.randn(head.shape, generator=torch.Generator().manual_seed(1)) * 0.02
        with torch.no_grad():
            head.copy_(w)
        ctx = (
            (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
            if precision == "bf16"
            else contextlib.nullcontext
        )
        for videos in batches if precision == "bf16" else batches[:1]:
            # uint8 views as the loader delivers them: (videos, views, 3, T, H, W)
            shape = (videos, VIEWS, 3, frames, crop, crop)
            x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8).to(device)

            def fwd(x=x, rec=rec, ctx=ctx):
                with torch.inference_mode(), ctx():
                    return rec(x)

            ts = time_calls(fwd, device, repeats, 2)
            s = statistics.median(ts)
            tflops = flops_per_view * videos * VIEWS / s / 1e12
            row = dict(
                precision=precision,
                videos_per_forward=videos,
                views=videos * VIEWS,
                ms_per_video=1e3 * s / videos,
                videos_per_s=videos / s,
                tflops=tflops,
                mfu_measured_peak=tflops / peak_tflops if peak_tflops else None,
                mfu_nominal=tflops / nominal_tflops if nominal_tflops else None,
                max_memory_gib=(torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None),
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
            if videos == batches[0]:
                scores[precision] = fwd().float().cpu()
            del x
        del rec
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
    if len(scores) == 2:
        diff = (scores["bf16"] - scores["fp32"]).abs().max().item()
        same = (scores["bf16"].argmax(-1) == scores["fp32"].argmax(-1)).float().mean().item()
        rows.append(dict(bf16_vs_fp32_max_score_diff=diff, bf16_vs_fp32_top1_agreement=same))
    return rows


def make_videos(
    work: Path, n_distinct: int, repeat: int, frames: int | None = None
) -> list[VideoRecord]:
    """`n_distinct` encoded clips under work/videos (kept between runs), listed `repeat` times;
    `frames` shortens every clip (smoke tests)."""
    fixture = _load_script("make_fixture", ROOT / "benchmarks/peers/make_fixture.py")
    from fractions import Fraction

    (work / "videos").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n_distinct):
        w, h, t = VIDEO_SHAPES[i % len(VIDEO_SHAPES)]
        t = frames or t
        name = f"g{i:02d}_{w}x{h}_n{t}.mp4"
        path = work / "videos" / name
        if not path.is_file():
            tmp = path.with_suffix(".tmp.mp4")
            fixture.encode_video(tmp, w, h, t, Fraction(30), seed=1000 + i)
            tmp.replace(path)
        names.append(name)
    return [VideoRecord(names[i % n_distinct], i % 400) for i in range(n_distinct * repeat)]


def section_decode(cfg: TestConfig, dataset, workers: list[int]) -> list[dict[str, Any]]:
    rows = []
    for w in workers:
        cfg.test_dataloader.num_workers = w
        loader = build_loader(dataset, cfg, pin_memory=False)
        t0 = time.perf_counter()
        first = None
        n = 0
        for batch in loader:
            if first is None:
                first = time.perf_counter() - t0
            n += len(batch["index"])
            if batch["failed"]:
                raise RuntimeError(f"decode failed: {batch['failed'][0]['error']}")
        total = time.perf_counter() - t0
        rows.append(
            dict(
                workers=w,
                videos=n,
                seconds=total,
                videos_per_s=n / total,
                # steady state: the first batch pays for worker start-up
                steady_videos_per_s=(n - 1) / (total - first) if n > 1 and total > first else None,
            )
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def section_e2e(
    device: torch.device, cfg: TestConfig, dataset, workers: list[int], batch_videos: list[int]
) -> list[dict[str, Any]]:
    cfg.test_cfg.precision = "bf16"
    rec = build_recognizer(cfg, None, device)
    rows = []
    for w in workers:
        for b in batch_videos:
            cfg.test_dataloader.num_workers = w
            cfg.test_dataloader.batch_size = b
            loader = build_loader(dataset, cfg, pin_memory=device.type == "cuda")
            t0 = time.perf_counter()
            results, timing = evaluate(rec, loader, device=device, precision="bf16")
            total = time.perf_counter() - t0
            failed = [r for r in results if r.error]
            rows.append(
                dict(
                    workers=w,
                    videos_per_batch=b,
                    videos=len(results),
                    failed=len(failed),
                    seconds=total,
                    videos_per_s=len(results) / total,
                    model_fraction=timing["model_s"] / total,
                    data_wait_s=timing["data_wait_s"],
                )
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


# ----------------------------------------------------------------------------- main
def _csv_ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="base", choices=["small", "base"])
    p.add_argument("--tiny", action="store_true", help="64-wide 2-block backbone (smoke test)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sections", default="env,peak,model,decode,e2e")
    p.add_argument("--batches", type=_csv_ints, default=[1, 2, 4, 8], help="videos per forward")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--videos", type=int, default=8, help="distinct encoded videos")
    p.add_argument("--repeat", type=int, default=8, help="list entries per distinct video")
    p.add_argument("--video-frames", type=int, default=None, help="frames per clip (250-300)")
    p.add_argument("--workers", type=_csv_ints, default=[4, 8, 15], help="decode workers")
    p.add_argument("--e2e-batches", type=_csv_ints, default=[1, 4], help="videos per batch")
    p.add_argument("--nominal-tflops", type=float, default=None, help="e.g. 989 (H100/H200)")
    p.add_argument("--work", type=Path, default=ROOT / "work_dirs" / "bench_gpu")
    p.add_argument("--json", type=Path, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    size = "small" if args.tiny else args.model
    cfg = load_config(str(ROOT / CONFIG.format(size)), TestConfig)
    if args.tiny:
        apply_overrides(cfg, [f"{k}={v}" for k, v in TINY.items()])
    bench_forward = _load_script("bench_forward", ROOT / "benchmarks/bench_forward.py")
    from videomae2.models.registry import create_model

    bb = cfg.model.backbone
    with torch.device("meta"):  # only the config is needed: no memory, no init
        vit = create_model(bb.arch, num_classes=400, **bb.create_kwargs())
    flops_per_view = bench_forward.forward_flops(vit.config)
    shapes = [(n, m * VIEWS, k, nn) for n, m, k, nn in bench_forward.gemm_shapes(vit.config)]
    del vit

    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    report["gflops_per_view"] = flops_per_view / 1e9

    def save() -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.json.with_suffix(".tmp")
            tmp.write_text(json.dumps(report, indent=2) + "\n")
            tmp.replace(args.json)

    def run(name: str, fn: Callable[[], Any]) -> Any:
        if name not in args.sections.split(","):
            return None
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            report[name] = fn()
        except Exception as e:  # recorded; the next section still runs
            traceback.print_exc()
            report[name] = {"error": f"{type(e).__name__}: {e}"}
        report.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t0, 1)
        save()
        return report[name]

    run("env", lambda: section_env(device, cfg))
    peak_rows = run("peak", lambda: section_peak(device, shapes, args.repeats)) or []
    bf16_peak = max(
        (r["tflops"] for r in peak_rows if isinstance(r, dict) and r.get("dtype") == "bf16"),
        default=None,
    )
    run(
        "model",
        lambda: section_model(
            device, cfg, flops_per_view, args.batches, args.repeats, bf16_peak, args.nominal_tflops
        ),
    )
    records = None
    if {"decode", "e2e"} & set(args.sections.split(",")):
        records = make_videos(args.work, args.videos, args.repeat, args.video_frames)
        dataset = build_dataset(cfg, records, str(args.work / "videos"))
        run("decode", lambda: section_decode(cfg, dataset, args.workers))
        run("e2e", lambda: section_e2e(device, cfg, dataset, args.workers[-1:], args.e2e_batches))
    print(format_summary(report))
    save()
    return 0


def format_summary(report: dict[str, Any]) -> str:
    """The headline numbers: best model-only, decode-bound and end-to-end videos/s."""
    lines = ["", "summary"]
    model = [r for r in report.get("model") or [] if isinstance(r, dict) and "videos_per_s" in r]
    bf16 = [r for r in model if r["precision"] == "bf16"]
    if bf16:
        best = max(bf16, key=lambda r: r["videos_per_s"])
        mfu = best["mfu_measured_peak"]
        lines.append(
            f"  model only, bf16: {best['videos_per_s']:.1f} videos/s at "
            f"{best['videos_per_forward']} videos per forward, {best['tflops']:.1f} TFLOP/s"
            + (f", {100 * mfu:.0f}% of the measured bf16 GEMM peak" if mfu else "")
        )
    dec = [r for r in report.get("decode") or [] if isinstance(r, dict) and "videos_per_s" in r]
    for r in dec:
        lines.append(f"  decode only, {r['workers']:2d} workers: {r['videos_per_s']:.1f} videos/s")
    e2e = [r for r in report.get("e2e") or [] if isinstance(r, dict) and "videos_per_s" in r]
    for r in e2e:
        lines.append(
            f"  end to end, {r['workers']} workers, {r['videos_per_batch']} videos/batch: "
            f"{r['videos_per_s']:.1f} videos/s (model {100 * r['model_fraction']:.0f}% of the loop)"
        )
    for name in ("env", "peak", "model", "decode", "e2e"):
        if isinstance(report.get(name), dict) and "error" in report[name]:
            lines.append(f"  {name} FAILED: {report[name]['error']}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
