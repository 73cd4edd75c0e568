"""Compare two mmaction2-format `--dump` pickles video by video (ours vs mmaction2's).

    .venv/bin/python benchmarks/peers/compare_dumps.py OURS.pkl REFERENCE.pkl [--atol 1e-4]

Prints the max absolute pred_score difference, label/prediction agreement and exits non-zero when
any video differs by more than --atol (so it can gate a parity run).
"""

from __future__ import annotations

import argparse
import pickle
import sys

import numpy as np


def load(path: str) -> list[dict]:
    with open(path, "rb") as f:
        return pickle.load(f)


def compare(ours: list[dict], ref: list[dict]) -> dict:
    if len(ours) != len(ref):
        raise SystemExit(f"different video counts: {len(ours)} vs {len(ref)}")
    diffs, same_pred, same_gt = [], 0, 0
    for a, b in zip(ours, ref):
        sa, sb = np.asarray(a["pred_score"]), np.asarray(b["pred_score"])
        if sa.shape != sb.shape:
            raise SystemExit(f"pred_score shapes differ: {sa.shape} vs {sb.shape}")
        diffs.append(float(np.abs(sa - sb).max()))
        same_pred += int(np.asarray(a["pred_label"]).item() == np.asarray(b["pred_label"]).item())
        same_gt += int(np.asarray(a["gt_label"]).item() == np.asarray(b["gt_label"]).item())
    return {
        "videos": len(ours),
        "max_abs_diff": max(diffs) if diffs else 0.0,
        "per_video_max_abs_diff": diffs,
        "same_pred_label": same_pred,
        "same_gt_label": same_gt,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("ours")
    p.add_argument("reference")
    p.add_argument("--atol", type=float, default=1e-4)
    args = p.parse_args(argv)
    r = compare(load(args.ours), load(args.reference))
    print(
        f"{r['videos']} videos: max |pred_score diff| {r['max_abs_diff']:.3e}; "
        f"pred_label equal {r['same_pred_label']}/{r['videos']}; "
        f"gt_label equal {r['same_gt_label']}/{r['videos']}"
    )
    for i, d in enumerate(r["per_video_max_abs_diff"]):
        print(f"  video {i}: {d:.3e}")
    ok = r["max_abs_diff"] <= args.atol and r["same_gt_label"] == r["videos"]
    print("PASS" if ok else f"FAIL (atol {args.atol})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
