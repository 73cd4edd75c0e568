"""Helpers shared by the benchmark scripts (importable as `benchlib` from any of them: a script's
own folder is on sys.path)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# ViT-B's fc1 at 16x224 (M x K x N): a GEMM big enough to show what the machine's matmul reaches
PEAK_SHAPE = (1568, 768, 3072)


def time_calls(
    fn: Callable[[], object], device: torch.device, repeats: int, warmup: int
) -> list[float]:
    """Seconds per call of `fn` after `warmup` untimed calls: CUDA events on a GPU (the kernels'
    time), the wall clock elsewhere."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return out


def linear_peak_gflops(
    precision: str,
    device: torch.device,
    shape: tuple[int, int, int] = PEAK_SHAPE,
    repeats: int = 10,
) -> float:
    """Median GFLOP/s of a plain F.linear at `shape` (M x K x N) in `precision`, 3 untimed calls
    first."""
    m, k, n = shape
    a = torch.randn(m, k, device=device, dtype=DTYPES[precision])
    w = torch.randn(n, k, device=device, dtype=DTYPES[precision])
    with torch.no_grad():
        times = time_calls(lambda: F.linear(a, w), device, repeats, 3)
    return 2 * m * k * n / statistics.median(times) / 1e9
