"""Feature extraction (`videomae2 extract-features`): can the data side keep the model busy?

One generated H.264 video, in one run:
- data only, ours: the streamed decode, each frame resized once, windows assembled from a ring of
  the last 16 prepared frames;
- data only, the original script's way: every window decoded again (frames start..start+15) and
  the whole window resized, so each frame is decoded and resized window/stride times;
- the model alone on prepared windows (windows/s at the chosen precision and batch);
- end to end (`FeatureExtractor.video`), decode inline (prefetch 0) and in the background
  thread (prefetch 2), with the features of both checked equal.

    .venv/bin/python benchmarks/bench_extract.py --model small --frames 300 --threads 2
    .venv/bin/python benchmarks/bench_extract.py --quick      # tiny model, seconds (smoke)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from videomae2.data.decode import iter_frames, read_frames
from videomae2.data.synthetic import moving_square_video, write_video
from videomae2.engine import extract
from videomae2.models.registry import create_model

TINY = dict(embed_dim=48, depth=2, num_heads=2, num_frames=4, img_size=32, patch_size=16)


def original_way(path: str, n: int, window: int, stride: int, size: int) -> int:
    """The original script's data side: decode and resize every window on its own."""
    count = 0
    for s in extract.window_starts(n, window, stride):
        frames = read_frames(path, np.arange(s, s + window))
        vid = torch.from_numpy(frames).permute(3, 0, 1, 2).to(torch.float32) / 255
        F.interpolate(vid, size=(size, size), mode="bilinear", align_corners=False)
        count += 1
    return count


def ours(path: str, cfg: extract.ExtractConfig) -> int:
    batches = extract._batches(iter_frames(path), cfg, cfg.batch_size or 1)
    return sum(len(starts) for starts, _ in batches)


def timed(fn, device: torch.device | None = None) -> tuple[float, object]:
    cuda = device is not None and device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t, out


def _csv_ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small", help="small, base, ... (registry size)")
    p.add_argument("--frames", type=int, default=300, help="frames of the generated video")
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    p.add_argument("--batch-size", type=int, default=0, help="windows per forward (0: auto)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--videos", type=int, default=1, help="copies of the video for --workers rows")
    p.add_argument("--workers", type=_csv_ints, default=[], help="e.g. 2,8: --num-workers rows")
    p.add_argument("--quick", action="store_true", help="tiny model, 40 frames (smoke)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.quick:
        a.frames, a.height, a.width = 40, 48, 64
    window, size = (4, 32) if a.quick else (16, 224)
    kwargs = TINY if a.quick else {}
    model = create_model(f"vit_{'small' if a.quick else a.model}_patch16_224", **kwargs).eval()
    cfg = extract.ExtractConfig(
        window=window, stride=a.stride, size=size, batch_size=a.batch_size, precision=a.precision
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "video.mp4")
        write_video(
            path, moving_square_video(a.frames, a.height, a.width, np.random.default_rng(0))
        )
        n_windows = len(extract.window_starts(a.frames, window, a.stride))

        dt, got = timed(lambda: ours(path, cfg))
        assert got == n_windows
        rows.append(
            dict(
                what=f"data: streamed, each frame once (ours), {cfg.batch_size or 1}/batch",
                seconds=dt,
            )
        )
        dt, got = timed(lambda: original_way(path, a.frames, window, a.stride, size))
        rows.append(dict(what="data: every window decoded + resized (original)", seconds=dt))

        device = torch.device(a.device)
        fx = extract.FeatureExtractor(model, cfg, device)
        x = torch.rand(fx.batch, 3, window, size, size)
        fx.features(x)  # warm-up
        reps = max(1, min(8, n_windows // fx.batch))
        dt, _ = timed(lambda: [fx.features(x) for _ in range(reps)], device)
        rows.append(
            dict(
                what=f"model only, {a.precision}, {fx.batch}/forward",
                seconds=dt * n_windows / (reps * fx.batch),
            )
        )
        feats = {}
        for depth in (0, 2):
            fx.cfg.prefetch = depth
            dt, (feats[depth], _) = timed(lambda: fx.video(path), device)
            rows.append(
                dict(
                    what=f"end to end, decode {'inline' if depth == 0 else 'in a thread'}",
                    seconds=dt,
                )
            )
        same = float(np.abs(feats[0] - feats[2]).max())
        for r in rows:
            r["windows"] = n_windows
        copies = [path] + [str(Path(tmp) / f"copy{i}.mp4") for i in range(1, a.videos)]
        for c in copies[1:]:
            Path(c).write_bytes(Path(path).read_bytes())
        for w in a.workers:
            dt, results = timed(lambda w=w: list(fx.stream(copies, w)), device)
            done = sum(len(r[2]) for r in results)
            same = max([same] + [float(np.abs(r[1] - feats[0]).max()) for r in results])
            what = f"end to end, {len(copies)} videos, {w} decode workers"
            rows.append(dict(what=what, seconds=dt, windows=done))
    for r in rows:
        r["windows_per_s"] = r["windows"] / r["seconds"]
    print(
        f"{a.frames} frames {a.width}x{a.height}, {n_windows} windows of {window} "
        f"(stride {a.stride}), threads {torch.get_num_threads()}"
    )
    print(f"{'what':<52} {'s':>8} {'windows/s':>10}")
    for r in rows:
        print(f"{r['what']:<52} {r['seconds']:8.2f} {r['windows_per_s']:10.2f}")
    print(f"features of every end-to-end run vs inline: max |difference| {same:.3g}")
    if a.json:
        a.json.write_text(
            json.dumps(
                dict(
                    args=vars(a) | {"json": str(a.json)},
                    windows=n_windows,
                    rows=rows,
                    max_diff=same,
                ),
                indent=1,
            )
            + "\n"
        )
    return 0 if same == 0.0 else 1


if __name__ == "__main__":
    sys.exit(main())
