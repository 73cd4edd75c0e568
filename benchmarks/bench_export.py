"""Exported models (`videomae2 export`) against the eager model: export time, file size,
output difference and seconds per view, .pt2 and ONNX Runtime, alternating in one process.

    .venv/bin/python benchmarks/bench_export.py --model small --threads 2 --rounds 6
    .venv/bin/python benchmarks/bench_export.py --quick      # tiny model (smoke)

Weights are random and perturbed, head included: a fresh classifier's head is zero
(`init_scale`), and all-zero logits would make the difference column meaningless.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from videomae2 import export
from videomae2.models.registry import create_model

TINY = dict(embed_dim=48, depth=2, num_heads=2, num_frames=4, img_size=32, patch_size=16)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small", help="registry size: small, base, ...")
    p.add_argument("--threads", type=int, default=0, help="torch and onnxruntime threads")
    p.add_argument("--rounds", type=int, default=6, help="timed forwards of each, alternating")
    p.add_argument("--quick", action="store_true", help="tiny model, 2 rounds (smoke)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    rounds = 2 if a.quick else a.rounds
    torch.manual_seed(0)
    model = create_model(
        f"vit_{'small' if a.quick else a.model}_patch16_224", **(TINY if a.quick else {})
    )
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(0.02 * torch.randn_like(prm))
    model.eval()
    wrapper = export.ExportWrapper(model).eval()
    c = model.config
    example = export.example_input("normalized", 2, c.num_frames, c.img_size)
    x = export.example_input("normalized", 1, c.num_frames, c.img_size, seed=1)

    import onnxruntime as ort

    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        want = model(x)
        runners = {"eager": lambda: model(x)}
        for fmt, fn in (("pt2", export.export_pt2), ("onnx", export.export_onnx)):
            out = Path(tmp) / f"m.{fmt}"
            t0 = time.perf_counter()
            with torch.inference_mode(False):
                fn(wrapper, example, out, {})
            seconds = time.perf_counter() - t0
            if fmt == "pt2":
                module = torch.export.load(out).module()
                runners[fmt] = lambda m=module: m(x)
            else:
                so = ort.SessionOptions()
                if a.threads:
                    so.intra_op_num_threads, so.inter_op_num_threads = a.threads, 1
                sess = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
                runners[fmt] = lambda s=sess: torch.from_numpy(s.run(None, {"x": x.numpy()})[0])
            diff = (runners[fmt]() - want).abs().max().item()
            rows.append(
                dict(format=fmt, export_s=seconds, mib=out.stat().st_size / 2**20, max_diff=diff)
            )
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(rounds):
            for name, run in runners.items():
                t0 = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t0)
    rows.insert(0, dict(format="eager"))
    for r in rows:
        r["s_per_view"] = statistics.median(times[r["format"]])
    print(f"{'format':<7} {'export s':>9} {'MiB':>7} {'max|d|':>9} {'s/view':>8}")
    for r in rows:
        e, m, d = (f"{r[k]:.3g}" if k in r else "-" for k in ("export_s", "mib", "max_diff"))
        print(f"{r['format']:<7} {e:>9} {m:>7} {d:>9} {r['s_per_view']:8.3f}")
    if a.json:
        a.json.write_text(
            json.dumps(dict(args=vars(a) | {"json": str(a.json)}, rows=rows), indent=1) + "\n"
        )
    return 0 if all(r.get("max_diff", 0.0) < 1e-4 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
