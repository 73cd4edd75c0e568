"""benchmarks/bench_forward.py must keep running: its --quick path on a tiny model (no timings)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from videomae2.models.registry import SIZES
from videomae2.models.vit import ViTConfig

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_forward.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_forward", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_flop_count_matches_published_costs(bench: ModuleType) -> None:
    # mmaction2 reports 57 / 180 GFLOPs (= GMACs) per 16x224x224 view for ViT-S / ViT-B.
    small = bench.forward_flops(ViTConfig(**SIZES["small"], num_classes=400)) / 1e9
    base = bench.forward_flops(ViTConfig(**SIZES["base"], num_classes=400)) / 1e9
    assert small == pytest.approx(113.8, abs=0.05)
    assert base == pytest.approx(360.7, abs=0.05)


def test_quick_run_in_process(bench: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--in-process", "--threads", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {(r["impl"], r["precision"]): r for r in report["results"]}
    assert not [r for r in rows.values() if "error" in r]
    assert set(rows) == {
        ("ours", "fp32"),
        ("hf-eager", "fp32"),
        ("hf-sdpa", "fp32"),
        ("ours", "bf16"),
        ("ours-bf16w", "bf16"),
        ("hf-eager", "bf16"),
        ("hf-sdpa", "bf16"),
    }
    for r in rows.values():
        assert r["median_s"] > 0 and r["gflops"] > 0 and r["pct_of_peak"] > 0
    # Same weights in transformers' model: fp32 logits agree to float rounding.
    assert rows[("hf-sdpa", "fp32")]["max_abs_diff_vs_ours"] < 1e-5
    assert rows[("hf-eager", "fp32")]["max_abs_diff_vs_ours"] < 1e-5
    # bf16 stays close to fp32; stored bf16 weights compute what autocast computes.
    assert rows[("ours", "bf16")]["max_abs_diff_vs_ours_fp32"] < 0.05
    assert rows[("ours-bf16w", "bf16")]["max_abs_diff_vs_ours"] < 1e-2
    assert {p["precision"] for p in report["matmul_peak"]} == {"fp32", "bf16"}


def test_isolated_worker_reports_memory(bench: ModuleType) -> None:
    spec = dict(
        size="small", impl="ours", precision="fp32", threads=1, repeats=1, warmup=0, quick=True
    )
    result = bench.run_isolated(spec, timeout_s=600)
    assert result["peak_rss_mb"] > 0 and result["rss_before_forward_mb"] > 0
    assert len(result["logits"]) == 10 and len(result["times_s"]) == 1
