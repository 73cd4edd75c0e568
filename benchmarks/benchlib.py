"""Helpers shared by the benchmark scripts (importable as `benchlib` from any of them: a script's
own folder is on sys.path)."""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# ViT-B's fc1 at 16x224 (M x K x N): a GEMM big enough to show what the machine's matmul reaches
PEAK_SHAPE = (1568, 768, 3072)


def linear_peak_gflops(
    precision: str,
    device: torch.device,
    shape: tuple[int, int, int] = PEAK_SHAPE,
    repeats: int = 10,
) -> float:
    """Median GFLOP/s of a plain F.linear at `shape` in `precision` (3 untimed calls first)."""
    m, k, n = shape
    a = torch.randn(m, k, device=device, dtype=DTYPES[precision])
    w = torch.randn(n, k, device=device, dtype=DTYPES[precision])
    times = []
    with torch.no_grad():
        for i in range(3 + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            F.linear(a, w)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= 3:
                times.append(time.perf_counter() - t0)
    return 2 * m * k * n / statistics.median(times) / 1e9
