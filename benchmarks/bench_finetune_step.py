"""Where a fine-tuning / distillation step spends its time, measured in one run on this machine.

Rows (median of --repeats after one warm-up):

* `augment`: one training clip through the CPU pipeline of data/finetune_datasets.py (RandAugment
  on every frame, random-resized crop, normalise, cube erasing) from decoded uint8 frames,
  with and without RandAugment: the DataLoader workers' budget per clip;
* `train-step`: forward + backward + AdamW step of the classifier on a batch of clips, fp32 and
  bf16 autocast (soft-target cross entropy, layer-decayed groups, as the job does), with
  GFLOP/s (a step = 3x the forward's matmul FLOPs) and % of a plain F.linear at ViT-B's fc1
  shape measured just before, in the same precision;
* `teacher-fwd`: an inference-mode forward of the teacher on the same batch (the cost a teacher-
  logit cache saves on every hit).

    python benchmarks/bench_finetune_step.py --student vit_base_patch16_224 \
        --teacher vit_giant_patch14_224 --batch 4 --device cuda
    python benchmarks/bench_finetune_step.py --quick      # tiny dims, seconds, CPU
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from bench_forward import forward_flops
from benchlib import linear_peak_gflops

from videomae2.augment import ErasingParams, parse_rand_augment
from videomae2.data.finetune_datasets import FinetuneDataset, LabeledVideo
from videomae2.engine.finetune import (
    FinetuneModelConfig,
    FinetuneOptimConfig,
    build_classifier,
    build_param_groups,
)
from videomae2.losses import soft_target_cross_entropy
from videomae2.optim import build_adamw


def timeit(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--student", default="vit_small_patch16_224")
    p.add_argument("--teacher", default="vit_base_patch16_224")
    p.add_argument("--batch", type=int, default=2, help="clips per step")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="tiny models and clips")
    a = p.parse_args(argv)
    dev = torch.device(a.device)
    dims: dict = {}
    if a.quick:
        a.frames, a.size, a.batch = 4, 32, 2
        dims = dict(embed_dim=32, depth=2, num_heads=2)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rows: list[tuple[str, str, float, str]] = []

    # --- augmentation of one clip (CPU, as in a DataLoader worker)
    rng = np.random.default_rng(0)
    h, w = (a.size * 256) // 224, (a.size * 340) // 224
    frames = rng.integers(0, 256, (a.frames, h, w, 3), dtype=np.uint8)
    for spec in ("rand-m7-n4-mstd0.5-inc1", ""):
        ds = FinetuneDataset(
            [LabeledVideo("x", 0)],
            clip_len=a.frames,
            input_size=a.size,
            rand_augment=parse_rand_augment(spec, int(0.45 * a.size)) if spec else None,
            erasing=ErasingParams(),
        )
        sec = timeit(lambda ds=ds: ds.augment(frames, rng), a.repeats, lambda: None)
        on = "on" if spec else "off"
        rows.append(("augment", f"{a.frames}x{a.size}, RandAugment {on}", sec, ""))

    # --- training step
    x = torch.randn(a.batch, 3, a.frames, a.size, a.size, device=dev)
    y = torch.softmax(torch.randn(a.batch, 400, device=dev), -1)
    mc = FinetuneModelConfig(arch=a.student, num_classes=400, **dims)
    model = build_classifier(mc, a.frames, a.size).to(dev).train()
    opt = build_adamw(build_param_groups(model, {}, FinetuneOptimConfig()), 1e-4, (0.9, 0.999))
    for prec in ("fp32", "bf16"):
        ctx = (
            (lambda: torch.autocast(dev.type, dtype=torch.bfloat16))
            if prec == "bf16"
            else contextlib.nullcontext
        )

        def step(ctx=ctx) -> None:
            with ctx():
                loss = soft_target_cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        peak = linear_peak_gflops(prec, dev)
        sec = timeit(step, a.repeats, sync)
        rate = 3 * a.batch * forward_flops(model.config) / sec / 1e9
        rate_txt = f"{rate:.1f} GFLOP/s, {100 * rate / peak:.1f}% of {peak:.0f}"
        rows.append(("train-step", f"{a.student} b{a.batch} {prec}", sec, rate_txt))

    # --- teacher forward
    tdims = dict(embed_dim=64, depth=2, num_heads=2) if a.quick else {}
    teacher = build_classifier(
        FinetuneModelConfig(arch=a.teacher, num_classes=400, **tdims), a.frames, a.size
    )
    teacher = teacher.to(dev).eval()

    def tfwd() -> None:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16):
            teacher(x)

    sec = timeit(tfwd, a.repeats, sync)
    rows.append(("teacher-fwd", f"{a.teacher} b{a.batch} bf16", sec, ""))

    tiny = " (--quick: tiny widths)" if a.quick else ""
    print(f"device {dev}, torch {torch.__version__}, threads {torch.get_num_threads()}{tiny}")
    print(f"{'what':<12} {'setting':<48} {'seconds':>9}  rate")
    for what, setting, sec, rate in rows:
        print(f"{what:<12} {setting:<48} {sec:>9.4f}  {rate}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
