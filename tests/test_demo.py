"""The demo's --quick path end to end: dataset, pretraining, fine-tuning, the test command, PNGs."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image


def test_quick_demo_writes_everything_and_pretraining_pays(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "videomae2", "demo", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-3:]
    assert last[0].split() == ["model", "top-1", "top-5"]
    assert last[1].startswith("scratch") and last[2].startswith("pretrained")
    summary = json.loads((out / "results.json").read_text())
    for name in ("scratch", "pretrained"):
        r = summary["results"][name]
        assert 0.0 <= r["top1"] <= r["top5"] <= 1.0
        assert f"{100 * r['top1']:.1f}%" in proc.stdout
    assert "python tools/test.py" in proc.stdout
    # the point of the demo: the same 200 fine-tuning steps, with and without the ~700 steps of
    # dual-masking pretraining (measured: scratch 25% = chance, pretrained 75% on 16 videos)
    top1 = {name: summary["results"][name]["top1"] for name in ("scratch", "pretrained")}
    assert top1["pretrained"] >= top1["scratch"] + 0.25, top1
    assert top1["pretrained"] >= 2 * summary["chance_top1"], top1
    for picture in summary["pictures"].values():
        img = np.asarray(Image.open(picture))
        assert img.ndim == 3 and img.std() > 5, picture  # drawn, not blank
