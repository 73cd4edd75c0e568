"""Single-video prediction with the test protocol: `videomae2 predict VIDEO --checkpoint CKPT`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from videomae2.config import TestConfig, apply_overrides, load_config
from videomae2.data.annotations import VideoRecord, read_label_map
from videomae2.engine.evaluate import (
    autocast_context,
    build_dataset,
    build_recognizer,
    select_device,
)

DEFAULT_CONFIG = (
    "configs/recognition/videomaev2/"
    "vit-base-p16_videomaev2-vit-g-dist-k710-pre_16x4x1_kinetics-400.py"
)


def predict_video(
    cfg: TestConfig, checkpoint: str, video: str, topk: int = 5
) -> list[tuple[int, float]]:
    """Top-k (class index, score) for one video under the config's multi-view protocol."""
    dataset = build_dataset(cfg, [VideoRecord(str(Path(video).resolve()), -1)], None)
    item = dataset[0]
    if item["inputs"] is None:
        raise RuntimeError(f"cannot read {video}: {item['error']}")
    device = select_device(cfg.test_cfg.device)
    recognizer = build_recognizer(cfg, checkpoint, device)
    with torch.inference_mode(), autocast_context(device, cfg.test_cfg.precision):
        scores = recognizer(item["inputs"][None].to(device)).float()[0].cpu().numpy()
    order = np.argsort(scores)[::-1][:topk]
    return [(int(i), float(scores[i])) for i in order]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="a video file")
    parser.add_argument("--checkpoint", required=True, help="weights in any supported layout")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="test config (model + pipeline)")
    parser.add_argument("--label-map", help="class names, one per line")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    cfg = apply_overrides(load_config(args.config, TestConfig), args.cfg_options)
    top = predict_video(cfg, args.checkpoint, args.video, args.topk)
    names = read_label_map(args.label_map) if args.label_map else None
    rows = [
        {"class": i, "name": names[i] if names else str(i), "score": round(s, 6)} for i, s in top
    ]
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['score']:.4f}  {r['class']:>4}  {r['name']}")
    return 0
