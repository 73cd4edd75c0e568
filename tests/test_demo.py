"""The demo's --quick path end to end: dataset, pretraining, fine-tuning, the test command, PNGs."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image


def test_quick_demo_writes_everything(tmp_path):
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
    for picture in summary["pictures"].values():
        img = np.asarray(Image.open(picture))
        assert img.ndim == 3 and img.std() > 5, picture  # drawn, not blank
