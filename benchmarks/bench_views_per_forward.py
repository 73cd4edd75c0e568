"""How many of a video's 15 views (5 clips x 3 crops) should go through the backbone at once.

Why: the test job's `test_cfg.max_views_per_forward = 0` (auto) means one view per forward on the
CPU and the whole batch on a GPU. This script is the measurement behind that choice: the
recognizer on one video's 15 uint8 views of 16x224x224, with 1, 5 and 15 views per forward. All
variants share one model in one process, and their calls alternate (the order flips every
round), so drift on a shared machine hits all of them alike.

    .venv/bin/python benchmarks/bench_views_per_forward.py --models small,base
    .venv/bin/python benchmarks/bench_views_per_forward.py --quick      # tiny model, seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from videomae2.models.recognizer import Recognizer, cast_matmul_weights
from videomae2.models.registry import create_model

MODELS = {"small": "vit_small_patch16_224", "base": "vit_base_patch16_224"}
QUICK = dict(embed_dim=64, depth=2, num_heads=2, img_size=32, num_frames=4)
VIEWS = 15


def measure(size: str, precision: str, chunks: list[int], rounds: int, quick: bool) -> list[dict]:
    overrides = QUICK if quick else {}
    torch.manual_seed(0)
    model = create_model(MODELS[size], num_classes=400, **overrides).eval()
    with torch.no_grad():  # a fresh head is ~0: scores would be uniform whatever the chunking
        model.head.weight.normal_(0.0, 0.02)
    if precision == "bf16":
        cast_matmul_weights(model, torch.bfloat16)
    dtype = torch.bfloat16 if precision == "bf16" else None
    recs = {
        k: Recognizer(model, max_views_per_forward=k, autocast_dtype=dtype).eval() for k in chunks
    }
    cfg = model.config
    shape = (1, VIEWS, 3, cfg.num_frames, cfg.img_size, cfg.img_size)
    gen = torch.Generator().manual_seed(0)
    views = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)

    def run(k: int) -> tuple[float, torch.Tensor]:
        t0 = time.perf_counter()
        with torch.inference_mode():
            scores = recs[k](views)
        return time.perf_counter() - t0, scores

    reference = {k: run(k)[1] for k in chunks}  # warm-up, and the scores to compare
    times: dict[int, list[float]] = {k: [] for k in chunks}
    for r in range(rounds):
        for k in chunks if r % 2 == 0 else chunks[::-1]:
            times[k].append(run(k)[0])
    base = statistics.median(times[max(chunks)])
    return [
        dict(
            model=size,
            precision=precision,
            views_per_forward=k,
            median_s=statistics.median(times[k]),
            speedup_vs_all_at_once=base / statistics.median(times[k]),
            max_score_diff_vs_all_at_once=float(
                (reference[k] - reference[max(chunks)]).abs().max()
            ),
        )
        for k in chunks
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="small", help="small,base")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--chunks", default="1,5,15", help="views per forward to compare")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    chunks = sorted(int(c) for c in a.chunks.split(","))
    rows = []
    for size in a.models.split(","):
        for precision in a.precisions.split(","):
            rows += measure(size, precision, chunks, 1 if a.quick else a.rounds, a.quick)
    print(f"{VIEWS} views per video, {a.threads} threads, torch {torch.__version__}")
    print("model  prec  views/forward  median s  vs all at once  max|d score|")
    for r in rows:
        print(
            f"{r['model']:<6} {r['precision']:<5} {r['views_per_forward']:>13}  "
            f"{r['median_s']:8.3f}  {r['speedup_vs_all_at_once']:13.2f}x  "
            f"{r['max_score_diff_vs_all_at_once']:.1e}"
        )
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
