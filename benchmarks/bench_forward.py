"""Forward speed and memory of our ViT vs transformers' VideoMAE, against this machine's peak.

In one run on one machine it measures and prints (and writes with --json):

* the matmul peak at the model's GEMM shapes ((N x D) @ (D x 3D), (N x D) @ (D x 4D),
  (N x 4D) @ (4D x D)), fp32 and bf16, with 1 thread and with --threads threads;
* the forward time per view (1 x 3 x 16 x 224 x 224) of ours and of transformers'
  `VideoMAEForVideoClassification` (attention 'eager' and 'sdpa') loaded with the same weights
  (converted from ours by `videomae2.checkpoint`), in fp32 and bf16 autocast: seconds,
  GFLOP/s from an analytic count (`forward_flops`), % of the matmul peak, ours' speed-up, and the
  max |logit difference| to ours;
* peak memory: every setting runs in a fresh subprocess that reports its peak RSS (VmHWM), and
  the peak of tensor memory allocated during one forward (torch.profiler's allocation events).

Rows: `ours` (fp32 / bf16 autocast), `ours-bf16w` (the bf16 opt-in: weights stored in bf16 by
`videomae2.models.recognizer.cast_matmul_weights`, then autocast), `hf-eager`, `hf-sdpa`, and with
--compile `ours-compile` (torch.compile, compile time reported).

    python benchmarks/bench_forward.py --models small,base --precisions fp32,bf16 --repeats 5
    python benchmarks/bench_forward.py --quick          # tiny model, seconds (the CI smoke test)
    python benchmarks/bench_forward.py --impls ours --repeats 1 --rounds 1 --paired 30
                                       # the drift-proof ours vs transformers ratio only

`main(argv)` is importable so a `videomae2 bench` subcommand can wrap it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from videomae2.models import create_model
from videomae2.models.vit import ViTConfig

MODELS = {"small": "vit_small_patch16_224", "base": "vit_base_patch16_224"}
# --quick: a tiny model (width 64, 2 blocks, 4 frames of 32 px: 32 tokens) for the smoke test.
QUICK_OVERRIDES = dict(embed_dim=64, depth=2, num_heads=2, img_size=32, num_frames=4)
PRECISIONS = ("fp32", "bf16")
IMPLS = ("ours", "ours-bf16w", "hf-eager", "hf-sdpa")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
NUM_CLASSES = 400
RESULT_TAG = "BENCH_RESULT "


# ----------------------------------------------------------------------------- FLOPs and peak
def forward_flops(cfg: ViTConfig, batch: int = 1) -> int:
    """FLOPs (2 x multiply-accumulates) of every matmul of one forward; `batch` views.

    Counted: the patch conv (a matmul over C*t*p*p inputs per token), per block the qkv
    projection, attention's Q K^T and A V, the output projection, fc1 and fc2, and the head.
    Not counted: norms, softmax, GELU, adds (a few % of the time, no matmul peak to compare to).
    ViT-S/16 at 16x224x224 gives 113.8 GFLOP, ViT-B 360.7 (mmaction2 reports 57 / 180 GMACs).
    """
    n = (cfg.num_frames // cfg.tubelet_size) * (cfg.img_size // cfg.patch_size) ** 2  # tokens
    d, hidden = cfg.embed_dim, cfg.mlp_hidden
    inner = d  # heads * head_dim (the ViT family has head_dim = D / heads)
    patch = n * d * cfg.in_chans * cfg.tubelet_size * cfg.patch_size**2
    block = n * d * 3 * inner + 2 * n * n * inner + n * inner * d + 2 * n * d * hidden
    head = d * cfg.num_classes
    return 2 * batch * (patch + cfg.depth * block + head)


def gemm_shapes(cfg: ViTConfig) -> list[tuple[str, int, int, int]]:
    """(label, M, K, N) of the model's big GEMMs: tokens x in_features @ in_features x out."""
    n = (cfg.num_frames // cfg.tubelet_size) * (cfg.img_size // cfg.patch_size) ** 2
    d, hid = cfg.embed_dim, cfg.mlp_hidden
    return [("qkv", n, d, 3 * d), ("fc1", n, d, hid), ("fc2", n, hid, d)]


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_calls(
    fn: Callable[[], object], repeats: int, warmup: int, clock: str = "wall"
) -> list[float]:
    """Seconds of `repeats` calls after `warmup` untimed ones, on the `CLOCKS[clock]` clock."""
    now = CLOCKS[clock]
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = now()
        fn()
        times.append(now() - t0)
    return times


def matmul_peak(
    shapes: list[tuple[str, int, int, int]],
    precision: str,
    threads: int,
    repeats: int,
    clock: str = "wall",
) -> list[dict[str, Any]]:
    """Median GFLOP/s of `F.linear` (no bias) at each shape: the reachable GEMM speed here."""
    dtype = DTYPES[precision]
    g = torch.Generator().manual_seed(0)
    rows = []
    with num_threads(threads), torch.inference_mode():
        for label, m, k, n in shapes:
            a = torch.randn(m, k, generator=g).to(dtype)
            w = torch.randn(n, k, generator=g).to(dtype)
            times = time_calls(lambda a=a, w=w: F.linear(a, w), repeats, 3, clock)
            gflops = 2 * m * k * n / statistics.median(times) / 1e9
            rows.append(
                dict(precision=precision, threads=threads, gemm=label, M=m, K=k, N=n, gflops=gflops)
            )
    return rows


# ----------------------------------------------------------------------------- one setting
def model_config(size: str, quick: bool) -> tuple[str, dict]:
    overrides = dict(num_classes=NUM_CLASSES, init_scale=1.0)
    if quick:
        overrides.update(QUICK_OVERRIDES, num_classes=10)
    return MODELS[size], overrides


def build_ours(size: str, quick: bool) -> torch.nn.Module:
    """Our model with seeded, perturbed weights: identical in every subprocess; q/v biases and
    norms are non-zero so that the conversion to HF is really exercised."""
    name, overrides = model_config(size, quick)
    torch.manual_seed(0)
    model = create_model(name, **overrides).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model


def build_hf(ours: torch.nn.Module, attn_implementation: str) -> torch.nn.Module:
    """transformers' VideoMAEForVideoClassification holding our weights (converted, strict)."""
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    from videomae2.checkpoint.arch import hf_config
    from videomae2.checkpoint.layouts import original_to_hf

    config = VideoMAEConfig(**hf_config(ours.config.to_dict()))
    config._attn_implementation = attn_implementation
    # Built on the meta device and loaded with assign=True: the converted tensors become the
    # parameters without a second copy, so setup does not inflate the process's peak memory.
    with torch.device("meta"):
        hf = VideoMAEForVideoClassification(config)
    hf.load_state_dict(original_to_hf(ours.state_dict()), strict=True, assign=True)
    for module in hf.modules():  # HF hard-codes fc_norm's eps to 1e-5 (spec/model.md §5.2)
        if isinstance(module, torch.nn.LayerNorm):
            module.eps = ours.config.norm_eps
    q_bias = hf.videomae.encoder.layer[0].attention.attention.query.bias
    assert q_bias is not None and torch.count_nonzero(q_bias) > 0, "HF q bias did not load"
    return hf.eval()


def _proc_status_mb(field: str) -> float:
    """A `/proc/self/status` memory field (VmRSS, VmHWM) in MiB.

    VmHWM is this process image's own peak RSS. `ru_maxrss` is not: Linux carries it over from
    the parent across fork + exec, so every worker would report at least the parent's RSS.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def tensor_peak_mb(fn: Callable[[], object]) -> float | None:
    """Peak of CPU tensor memory allocated during `fn` (above what existed before), from the
    profiler's allocation events; None where this torch does not expose them."""
    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        events = prof.profiler.kineto_results.events()
    except (AttributeError, RuntimeError):
        return None
    allocs = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    current = peak = 0
    for _, nbytes in allocs:
        current += nbytes
        peak = max(peak, current)
    return peak / 2**20


def run_setting(spec: dict[str, Any]) -> dict[str, Any]:
    """Build one (model, impl, precision) and time it; returns a JSON-able result."""
    with num_threads(spec["threads"]):
        return _run_setting(spec)


def _run_setting(spec: dict[str, Any]) -> dict[str, Any]:
    from videomae2.models.recognizer import cast_matmul_weights

    size, impl, precision, quick = spec["size"], spec["impl"], spec["precision"], spec["quick"]
    ours = build_ours(size, quick)
    cfg = ours.config
    x = torch.randn(1, 3, cfg.num_frames, cfg.img_size, cfg.img_size, generator=_gen(2))
    if impl.startswith("hf-"):
        model = build_hf(ours, impl.removeprefix("hf-"))
        del ours
        pixel_values = x.permute(0, 2, 1, 3, 4)  # HF takes (B, T, C, H, W), permutes it back

        def forward() -> torch.Tensor:
            return model(pixel_values=pixel_values).logits
    else:
        model = ours
        if impl == "ours-bf16w":
            cast_matmul_weights(model, torch.bfloat16)
        if impl == "ours-compile":
            model = torch.compile(model)

        def forward() -> torch.Tensor:
            return model(x)

    autocast = precision == "bf16"

    def step() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            return forward()

    rss_before = _proc_status_mb("VmRSS")
    t0 = time.perf_counter()
    logits = step().float()
    first_s = time.perf_counter() - t0
    times = time_calls(step, spec["repeats"], spec["warmup"], spec.get("clock", "wall"))
    alloc_peak = tensor_peak_mb(step)
    return dict(
        size=size,
        impl=impl,
        precision=precision,
        threads=torch.get_num_threads(),
        gflop=forward_flops(cfg) / 1e9,
        times_s=times,
        median_s=statistics.median(times),
        min_s=min(times),
        first_call_s=first_s,  # includes compilation for ours-compile
        rss_before_forward_mb=rss_before,
        peak_rss_mb=_proc_status_mb("VmHWM"),
        forward_tensor_peak_mb=alloc_peak,
        logits=logits.flatten().tolist(),
    )


def paired_ratio(size: str, precision: str, pairs: int, threads: int, quick: bool) -> dict:
    """transformers' SDPA model vs ours (bf16: ours with bf16 weights, the `--bf16` path) in ONE
    process, forwards alternating (the order flips every pair): the median of the per-pair time
    ratios t_hf / t_ours. A machine whose speed drifts over seconds moves both sides of a pair
    alike, so this ratio holds where separate runs' medians do not."""
    from videomae2.models.recognizer import cast_matmul_weights

    with num_threads(threads):
        ours = build_ours(size, quick)
        hf = build_hf(ours, "sdpa")
        if precision == "bf16":  # a fresh copy: hf was loaded with assign=True and shares
            # `ours`' tensors, which an in-place cast would turn into bf16 weights for HF too
            ours = cast_matmul_weights(build_ours(size, quick), torch.bfloat16)
        cfg = ours.config
        x = torch.randn(1, 3, cfg.num_frames, cfg.img_size, cfg.img_size, generator=_gen(2))
        pixel_values = x.permute(0, 2, 1, 3, 4)
        autocast = precision == "bf16"

        def timed(fn: Callable[[], object]) -> float:
            t0 = time.perf_counter()
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
                fn()
            return time.perf_counter() - t0

        def run_ours() -> float:
            return timed(lambda: ours(x))

        def run_hf() -> float:
            return timed(lambda: hf(pixel_values=pixel_values))

        run_ours(), run_hf()  # warm-up
        t_ours, t_hf = [], []
        for i in range(pairs):
            if i % 2:
                t_ours.append(run_ours())
                t_hf.append(run_hf())
            else:
                t_hf.append(run_hf())
                t_ours.append(run_ours())
    ratios = sorted(h / o for h, o in zip(t_hf, t_ours))
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return dict(
        size=size,
        precision=precision,
        pairs=pairs,
        ours="ours-bf16w" if precision == "bf16" else "ours",
        median_ours_s=statistics.median(t_ours),
        median_hf_s=statistics.median(t_hf),
        ratio_median=statistics.median(ratios),
        ratio_q1=q[0],
        ratio_q3=q[2],
    )


def format_paired(rows: list[dict]) -> str:
    lines = [
        "",
        "paired in one process (alternating forwards): t_hf-sdpa / t_ours per pair (> 1: ours "
        "faster)",
        "  model  prec  pairs  ours s   hf s     ratio median  [q1 - q3]",
    ]
    for r in rows:
        lines.append(
            f"  {r['size']:<6} {r['precision']:<5} {r['pairs']:>5}  {r['median_ours_s']:.4f}  "
            f"{r['median_hf_s']:.4f}   {r['ratio_median']:.3f}        "
            f"[{r['ratio_q1']:.3f} - {r['ratio_q3']:.3f}]"
        )
    return "\n".join(lines)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def merge_rounds(runs: list[dict]) -> dict:
    """One result from a setting's rounds: all timed forwards pooled, the largest memory."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    merged = dict(ok[0])
    merged["times_s"] = [t for r in ok for t in r["times_s"]]
    merged["median_s"] = statistics.median(merged["times_s"])
    merged["min_s"] = min(merged["times_s"])
    merged["rounds"] = len(ok)
    for key in ("peak_rss_mb", "rss_before_forward_mb", "forward_tensor_peak_mb", "first_call_s"):
        values = [r[key] for r in ok if r.get(key) is not None]
        merged[key] = max(values) if values else None
    return merged


def run_isolated(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """`run_setting` in a fresh interpreter, so memory and allocator state are its own."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    raise RuntimeError(
        f"benchmark worker {spec} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    )


# ----------------------------------------------------------------------------- report
def _max_abs_diff(a: list[float] | None, b: list[float] | None) -> float | None:
    if a is None or b is None:
        return None
    return max(abs(x - y) for x, y in zip(a, b))


def summarize(results: list[dict], peaks: dict[tuple[str, str, int], float]) -> None:
    """Add % of peak, ours' speed-up and logit differences to each result, in place."""
    by_key = {(r["size"], r["impl"], r["precision"]): r for r in results if "error" not in r}
    for r in results:
        if "error" in r:
            continue
        r["gflops"] = r["gflop"] / r["median_s"]
        peak = peaks.get((r["size"], r["precision"], r["threads"]))
        r["matmul_peak_gflops"] = peak
        r["pct_of_peak"] = 100 * r["gflops"] / peak if peak else None
        ours = by_key.get((r["size"], "ours", r["precision"]))
        ours32 = by_key.get((r["size"], "ours", "fp32"))
        r["ours_speedup"] = r["median_s"] / ours["median_s"] if ours else None
        r["max_abs_diff_vs_ours"] = _max_abs_diff(r["logits"], ours and ours["logits"])
        r["max_abs_diff_vs_ours_fp32"] = _max_abs_diff(r["logits"], ours32 and ours32["logits"])


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_tables(peak_rows: list[dict], results: list[dict], clock: str = "wall") -> str:
    lines = [
        f"matmul peak: F.linear without bias at the model's GEMM shapes, median GFLOP/s "
        f"({clock} clock)"
    ]
    groups: dict[tuple[str, str, int], list[dict]] = {}
    for p in peak_rows:
        groups.setdefault((p["size"], p["precision"], p["threads"]), []).append(p)
    shown: set[str] = set()
    for (size, precision, threads), rows in groups.items():
        if size not in shown:
            shapes = ", ".join(f"{r['gemm']} {r['M']}x{r['K']}x{r['N']}" for r in rows)
            lines.append(f"  {size}: {shapes} (M x K x N)")
            shown.add(size)
        cells = "  ".join(f"{r['gemm']} {r['gflops']:7.1f}" for r in rows)
        best = max(r["gflops"] for r in rows)
        lines.append(f"    {precision:5} threads {threads:>2}:  {cells}  best {best:7.1f}")
    lines.append("")
    lines.append(
        f"forward per view, {clock} clock (median of repeats; % of the best GEMM peak above at "
        "the same threads; "
        "'t/t_ours' > 1 means ours is faster; max|d| = max |logit difference|):"
    )
    head = (
        f"  {'model':6} {'impl':12} {'prec':5} {'thr':>3} {'median s':>9} {'min s':>8} "
        f"{'GFLOP':>7} {'GFLOP/s':>8} {'%peak':>6} {'t/t_ours':>8} {'max|d| ours':>11} "
        f"{'max|d| fp32':>11} {'RSS MB':>7} {'fwd MB':>7}"
    )
    lines.append(head)
    for r in results:
        if "error" in r:
            lines.append(f"  {r['size']:6} {r['impl']:12} {r['precision']:5} ERROR {r['error']}")
            continue
        lines.append(
            f"  {r['size']:6} {r['impl']:12} {r['precision']:5} {r['threads']:>3} "
            f"{r['median_s']:9.4f} {r['min_s']:8.4f} {r['gflop']:7.4g} {r['gflops']:8.1f} "
            f"{_fmt(r['pct_of_peak'], '6.1f')} {_fmt(r['ours_speedup'], '8.2f')} "
            f"{_fmt(r['max_abs_diff_vs_ours'], '11.2e')} "
            f"{_fmt(r['max_abs_diff_vs_ours_fp32'], '11.2e')} "
            f"{r['peak_rss_mb']:7.0f} {_fmt(r['forward_tensor_peak_mb'], '7.0f')}"
        )
    compiled = [r for r in results if r.get("impl") == "ours-compile" and "error" not in r]
    for r in compiled:
        lines.append(
            f"  compile: {r['size']} {r['precision']} first call {r['first_call_s']:.1f} s "
            "(compilation included)"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry point
def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench_forward", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--models", type=_csv, default=None, help="small,base (--quick: small)")
    p.add_argument("--precisions", type=_csv, default=list(PRECISIONS), help="fp32,bf16")
    p.add_argument(
        "--impls",
        type=_csv,
        default=list(IMPLS),
        help=f"subset of {','.join(IMPLS)},ours-compile (ours-bf16w runs in bf16 only)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed forwards per setting")
    p.add_argument("--warmup", type=int, default=1, help="untimed forwards after the first call")
    p.add_argument(
        "--rounds", type=int, default=1, help="visit every setting this many times (noisy hosts)"
    )
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    p.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall (default) or cpu: process CPU time, immune to preemption on a shared host; "
        "meaningful with --threads 1 only (idle OpenMP threads spin on the CPU clock)",
    )
    p.add_argument("--compile", action="store_true", help="add ours-compile rows (torch.compile)")
    p.add_argument(
        "--paired",
        type=int,
        default=0,
        metavar="N",
        help="also N alternating ours / hf-sdpa forward pairs in one process per model and "
        "precision: the drift-proof speed ratio",
    )
    p.add_argument("--json", type=Path, default=None, help="write everything to this JSON file")
    p.add_argument("--quick", action="store_true", help="tiny model smoke run (seconds)")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run settings in this process (faster; memory columns then cover the whole run)",
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per setting")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker is not None:  # a subprocess of run_isolated
        print(RESULT_TAG + json.dumps(run_setting(json.loads(args.worker))), flush=True)
        return 0
    if args.models is None:
        args.models = ["small"] if args.quick else list(MODELS)
    for name, values, known in (
        ("--models", args.models, MODELS),
        ("--precisions", args.precisions, PRECISIONS),
        ("--impls", args.impls, (*IMPLS, "ours-compile")),
    ):
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise SystemExit(f"{name}: unknown {unknown}; choose from {','.join(known)}")
    impls = list(args.impls) + (["ours-compile"] if args.compile else [])
    if "ours" not in impls:
        impls.insert(0, "ours")  # the reference every other row is compared to
    repeats, warmup = (2, 1) if args.quick else (args.repeats, args.warmup)
    thread_counts = sorted({1, args.threads})

    peak_rows: list[dict] = []
    peaks: dict[tuple[str, str, int], float] = {}
    for size in args.models:
        name, overrides = model_config(size, args.quick)
        cfg = create_model(name, **overrides).config
        for precision in args.precisions:
            for threads in thread_counts:
                rows = matmul_peak(
                    gemm_shapes(cfg), precision, threads, max(5, 2 * repeats), args.clock
                )
                for row in rows:
                    row["size"] = size
                peak_rows += rows
                peaks[(size, precision, threads)] = max(r["gflops"] for r in rows)

    specs = [
        dict(
            size=size,
            impl=impl,
            precision=precision,
            threads=args.threads,
            repeats=repeats,
            warmup=warmup,
            quick=args.quick,
            clock=args.clock,
        )
        for size in args.models
        for precision in args.precisions
        for impl in impls
        if impl != "ours-bf16w" or precision == "bf16"
    ]
    # Rounds visit every setting in turn, so load that comes and goes on a shared machine spreads
    # over all settings instead of biasing whichever ran at the wrong moment.
    runs: list[list[dict]] = [[] for _ in specs]
    for round_index in range(args.rounds):
        for spec, spec_runs in zip(specs, runs):
            try:
                if args.in_process:
                    result = run_setting(spec)
                else:
                    result = run_isolated(spec, timeout_s=args.timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                result = dict(spec, error=str(e).splitlines()[0][:200])
            spec_runs.append(result)
            label = f"{spec['size']} {spec['impl']} {spec['precision']}"
            print(f"round {round_index + 1}/{args.rounds}: {label}", file=sys.stderr, flush=True)
    results = [merge_rounds(spec_runs) for spec_runs in runs]
    summarize(results, peaks)
    print(format_tables(peak_rows, results, args.clock))
    paired = []
    if args.paired:
        for size in args.models:
            for precision in args.precisions:
                pairs = 2 if args.quick else args.paired
                paired.append(paired_ratio(size, precision, pairs, args.threads, args.quick))
                print(f"paired: {size} {precision}", file=sys.stderr, flush=True)
        print(format_paired(paired))
    if args.json is not None:
        report = dict(
            command=["bench_forward.py", *(sys.argv[1:] if argv is None else argv)],
            machine=dict(
                processor=platform.processor() or platform.machine(),
                cpu_count=os.cpu_count(),
                torch=torch.__version__,
                threads=args.threads,
                clock=args.clock,
                isolated=not args.in_process,
            ),
            matmul_peak=peak_rows,
            results=results,
            paired=paired,
        )
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
