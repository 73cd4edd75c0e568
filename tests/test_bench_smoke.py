"""The benchmarks must keep running: bench_forward.py --quick and bench_test_job.py --tiny on tiny
models (no timing thresholds)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from videomae2.models.registry import SIZES
from videomae2.models.vit import ViTConfig

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_forward.py"


def run_bench(script: str, *args: str, timeout: int = 300) -> str:
    """Run benchmarks/<script> with this Python; it must exit 0. Returns its stdout."""
    cmd = [sys.executable, str(BENCH.with_name(script)), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


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
    argv = ["--quick", "--in-process", "--threads", "1", "--paired", "2", "--json", str(out)]
    assert bench.main(argv) == 0
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
    paired = {(r["size"], r["precision"]): r for r in report["paired"]}
    assert set(paired) == {("small", "fp32"), ("small", "bf16")}
    for r in paired.values():
        assert r["pairs"] == 2 and r["ratio_q1"] <= r["ratio_median"] <= r["ratio_q3"]
        assert r["median_ours_s"] > 0 and r["median_hf_s"] > 0
    assert paired[("small", "bf16")]["ours"] == "ours-bf16w"


def test_isolated_worker_reports_memory(bench: ModuleType) -> None:
    spec = dict(
        size="small", impl="ours", precision="fp32", threads=1, repeats=1, warmup=0, quick=True
    )
    result = bench.run_isolated(spec, timeout_s=600)
    assert result["peak_rss_mb"] > 0 and result["rss_before_forward_mb"] > 0
    assert len(result["logits"]) == 10 and len(result["times_s"]) == 1


# ----------------------------------------------------------------------------- bench_test_job.py
TEST_JOB = BENCH.with_name("bench_test_job.py")


def test_test_job_tiny_without_peer(tmp_path: Path) -> None:
    """The seed command's benchmark end to end on one short video, a tiny ViT, no mmaction2."""
    from fractions import Fraction

    fixture_spec = importlib.util.spec_from_file_location(
        "make_fixture", BENCH.parent / "peers" / "make_fixture.py"
    )
    assert fixture_spec is not None and fixture_spec.loader is not None
    make_fixture = importlib.util.module_from_spec(fixture_spec)
    sys.modules[fixture_spec.name] = make_fixture  # its dataclass looks the module up
    fixture_spec.loader.exec_module(make_fixture)
    fixture = tmp_path / "fixture"
    (fixture / "videos").mkdir(parents=True)
    for name in ("a", "b"):  # --videos 1 must leave the second one out
        make_fixture.encode_video(fixture / "videos" / f"{name}.mp4", 96, 64, 24, Fraction(25), 0)
    (fixture / "list.txt").write_text("a.mp4 3\nb.mp4 5\n")

    out = tmp_path / "bench.json"
    args = ["--tiny", "--skip-peer", "--videos", "1", "--threads", "1", "--num-workers", "0"]
    args += ["--fixture", str(fixture), "--work-dir", str(tmp_path / "work"), "--json", str(out)]
    stdout = run_bench(TEST_JOB.name, *args)

    table = stdout.splitlines()
    assert table[0].split()[:4] == ["model", "run", "videos", "s/video"]
    assert [line.split()[:3] for line in table[1:3]] == [
        ["tiny", "ours-fp32", "1"],
        ["tiny", "ours-bf16", "1"],
    ]
    assert "mmaction2 rows skipped (--skip-peer)" in stdout
    report = json.loads(out.read_text())
    assert [(r["model"], r["run"]) for r in report["rows"]] == [
        ("tiny", "ours-fp32"),
        ("tiny", "ours-bf16"),
    ]
    assert report["videos"] == 1 and report["decode"]["videos"] == 1
    assert report["decode"]["per_video_s"] > 0 and not report["decode"]["failed"]
    for r in report["rows"]:
        assert "error" not in r and r["videos"] == 1 and r["failed"] == 0
        assert r["s_per_video"] > 0 and r["loop_s"] > 0 and r["model_s"] > 0
        assert r["data_wait_s"] >= 0 and 0 < r["model_over_total"] <= 1
        assert r["peak_pss_tree_mib"] > 0 and r["peak_rss_main_mib"] > 0
        assert r["ratio_vs_mmaction2"] is None and r["max_abs_diff_vs_mmaction2"] is None
    assert 0 < report["rows"][1]["max_abs_diff_vs_ours_fp32"] < 0.05  # bf16: near, not equal


def test_attention_bench_quick() -> None:
    """benchmarks/bench_attention.py --quick: both kernels, both precisions, equal outputs."""
    stdout = run_bench("bench_attention.py", "--quick", timeout=120)
    rows = [line.split() for line in stdout.splitlines()[2:]]
    assert [r[:3] for r in rows] == [
        ["quick", p, impl] for p in ("fp32", "bf16") for impl in ("sdpa", "two-matmuls")
    ]
    for r in rows:
        assert float(r[3]) > 0 and float(r[5]) < (1e-5 if r[1] == "fp32" else 2e-2)


# ----------------------------------------------------------------------------- bench_gpu.py
def test_gpu_check_runs_every_section_on_the_cpu(tmp_path: Path) -> None:
    """The prepared GPU script must not fail on the lent machine for a reason a CPU run shows:
    every section runs (tiny ViT, two short videos) and writes its rows to the JSON."""
    out = tmp_path / "gpu.json"
    args = ["--tiny", "--device", "cpu", "--videos", "2", "--repeat", "1", "--video-frames", "40"]
    args += ["--workers", "0,1", "--batches", "1,2", "--e2e-batches", "2", "--repeats", "1"]
    args += ["--work", str(tmp_path / "work"), "--json", str(out)]
    stdout = run_bench("bench_gpu.py", *args, timeout=600)
    report = json.loads(out.read_text())
    for name in ("env", "peak", "model", "decode", "e2e"):
        assert not (isinstance(report[name], dict) and "error" in report[name]), report[name]
    assert report["env"]["device"] == "cpu"
    assert {r["dtype"] for r in report["peak"]} == {"bf16", "fp32"}
    model = [r for r in report["model"] if "videos_per_s" in r]
    assert [(r["precision"], r["videos_per_forward"]) for r in model] == [
        ("bf16", 1),
        ("bf16", 2),
        ("fp32", 1),
    ]
    assert all(r["views"] == 15 * r["videos_per_forward"] and r["tflops"] > 0 for r in model)
    gap = report["model"][-1]
    assert 0 < gap["bf16_vs_fp32_max_score_diff"] < 0.05
    assert [r["workers"] for r in report["decode"]] == [0, 1]
    assert all(r["videos"] == 2 and r["videos_per_s"] > 0 for r in report["decode"])
    (e2e,) = report["e2e"]
    assert e2e["videos"] == 2 and e2e["failed"] == 0 and 0 < e2e["model_fraction"] <= 1
    assert "model only, bf16" in stdout and "decode only" in stdout


# ----------------------------------------------------------------------------- bench_pretrain_step
def test_pretrain_step_bench_tiny(tmp_path: Path) -> None:
    """Dual masking, v1 and dual + checkpointing rows, with FLOP rates and the two ratios."""
    out = tmp_path / "pre.json"
    args = ["--tiny", "--steps", "1", "--warmup", "0", "--precisions", "fp32", "--threads", "1"]
    run_bench("bench_pretrain_step.py", *args, "--json", str(out))
    report = json.loads(out.read_text())
    rows = {r["setting"]: r for r in report["rows"]}
    assert set(rows) == {"dual", "v1", "dual-ckpt"}
    assert rows["dual"]["decoded_tokens"] < rows["v1"]["decoded_tokens"]
    assert rows["dual"]["step_gflop"] < rows["v1"]["step_gflop"]
    assert rows["dual-ckpt"]["step_gflop"] == rows["dual"]["step_gflop"]
    # checkpointing keeps only block inputs: fewer saved activations, same loss
    assert rows["dual-ckpt"]["saved_activations_mb"] < rows["dual"]["saved_activations_mb"]
    assert rows["dual-ckpt"]["loss"] == pytest.approx(rows["dual"]["loss"], rel=1e-5)
    for r in rows.values():
        assert r["gflops"] > 0 and 0 < r["pct_of_peak"]
    ratios = report["ratios"]["fp32"]
    assert ratios["time_v1_over_dual"] > 0 and ratios["checkpointing_time_cost"] > 0


def test_views_per_forward_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "vpf.json"
    run_bench("bench_views_per_forward.py", "--quick", "--threads", "1", "--json", str(out))
    rows = json.loads(out.read_text())
    assert [(r["precision"], r["views_per_forward"]) for r in rows] == [
        (p, k) for p in ("fp32", "bf16") for k in (1, 5, 15)
    ]
    for r in rows:
        assert r["median_s"] > 0 and r["speedup_vs_all_at_once"] > 0
        assert r["max_score_diff_vs_all_at_once"] < (1e-6 if r["precision"] == "fp32" else 1e-2)


def test_extract_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "extract.json"
    run_bench("bench_extract.py", "--quick", "--threads", "1", "--json", str(out))
    report = json.loads(out.read_text())
    assert report["windows"] == 10 and report["max_diff"] == 0.0
    assert len(report["rows"]) == 5 and all(r["windows_per_s"] > 0 for r in report["rows"])


def test_export_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    run_bench("bench_export.py", "--quick", "--threads", "1", "--json", str(out), timeout=300)
    rows = {r["format"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"eager", "pt2", "onnx"}
    assert rows["pt2"]["max_diff"] < 1e-5 and rows["onnx"]["max_diff"] < 1e-4
    assert all(r["s_per_view"] > 0 for r in rows.values()) and rows["onnx"]["mib"] > 0
