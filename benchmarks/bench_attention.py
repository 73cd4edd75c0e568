"""Attention alone: PyTorch's SDPA vs attention as two matmuls, at the ViT's shapes.

Why: in bf16 on a CPU the linears of ViT-S run near the GEMM peak but the forward as a whole does
not, and attention (40% of ViT-S's FLOPs at 16x224) is where the rest goes. This script times
one layer's attention, SDPA against the textbook alternative (QKᵀ and PV as matmuls with a
float32 softmax, chunked over queries so the score block stays small), and prints GFLOP/s, so a
kernel change can be judged before it goes into models/layers.py.

    .venv/bin/python benchmarks/bench_attention.py                  # ViT-S and ViT-B, fp32 + bf16
    .venv/bin/python benchmarks/bench_attention.py --quick          # tiny shapes (smoke)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

SHAPES = {"small": (6, 1568, 64), "base": (12, 1568, 64), "quick": (2, 64, 16)}  # heads, N, hd


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, scale=q.shape[-1] ** -0.5)


def two_matmuls(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int) -> torch.Tensor:
    """softmax(q kᵀ · scale) v, the score block (B, h, chunk, N) in float32."""
    out = torch.empty_like(q)
    kt, scale = k.transpose(-1, -2), q.shape[-1] ** -0.5
    for i in range(0, q.shape[2], chunk):
        s = torch.matmul(q[:, :, i : i + chunk], kt).float().mul_(scale)  # (B, h, c, N)
        out[:, :, i : i + chunk] = torch.matmul(s.softmax(-1).to(q.dtype), v)
    return out


def median_time(fn: Callable[[], torch.Tensor], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="small,base")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--chunk", type=int, default=392, help="queries per score block")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="tiny shapes, 1 repeat")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    models = ["quick"] if a.quick else a.models.split(",")
    repeats = 1 if a.quick else a.repeats
    print(f"threads {torch.get_num_threads()}, one layer, batch 1, median of {repeats}")
    print(f"{'model':<6} {'prec':<5} {'impl':<12} {'ms':>8} {'GFLOP/s':>8} {'max|d|':>9}")
    g = torch.Generator().manual_seed(0)
    for model in models:
        h, n, hd = SHAPES[model]
        flop = 4 * h * n * n * hd  # QKᵀ and PV, multiply-add = 2
        for prec in a.precisions.split(","):
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[prec]
            q, k, v = (torch.randn(1, h, n, hd, generator=g).to(dtype) for _ in range(3))
            with torch.inference_mode():
                ref = sdpa(q, k, v).float()
                impls = {
                    "sdpa": lambda: sdpa(q, k, v),  # noqa: B023 (used within the iteration)
                    "two-matmuls": lambda: two_matmuls(q, k, v, a.chunk),  # noqa: B023
                }
                for name, fn in impls.items():
                    t = median_time(fn, repeats)
                    diff = (fn().float() - ref).abs().max().item()
                    print(
                        f"{model:<6} {prec:<5} {name:<12} {1e3 * t:8.2f} {flop / t / 1e9:8.1f} "
                        f"{diff:9.2e}"
                    )


if __name__ == "__main__":
    main()
