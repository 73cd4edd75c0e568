"""`videomae2 bench`: listing, running (exit status passed through), and comparing two reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from videomae2 import bench
from videomae2.cli import main


def test_lists_every_checked_in_benchmark_with_its_docstring(capsys: pytest.CaptureFixture) -> None:
    found = bench.discover(bench.benchmarks_dir())
    assert {"forward", "test-job", "attention", "pretrain-step", "finetune-step", "gpu"} <= set(
        found
    )
    assert found["test-job"][1].startswith("The seed command end to end")
    assert main(["bench"]) == 0
    out = capsys.readouterr().out
    assert "views-per-forward" in out and "videomae2 bench compare" in out


def test_runs_a_script_with_its_arguments_and_passes_its_exit_status(tmp_path: Path) -> None:
    (tmp_path / "bench_echo_args.py").write_text(
        '"""Writes its arguments."""\nimport json, sys\n'
        f"open({str(tmp_path / 'argv.json')!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        "sys.exit(3)\n"
    )
    rc = main(["bench", "--dir", str(tmp_path), "echo-args", "--quick", "-x", "1"])
    assert rc == 3
    assert json.loads((tmp_path / "argv.json").read_text()) == ["--quick", "-x", "1"]
    assert main(["bench", "--dir", str(tmp_path), "nope"]) == 2


def test_missing_folder_names_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no benchmarks folder at .*absent.*--dir"):
        bench.benchmarks_dir(str(tmp_path / "absent"))


def _report(scale: float, rounds: int) -> dict:
    rows = [
        dict(
            size="small", impl="ours", threads=2, rounds=rounds, median_s=0.2 * scale, rss_mb=500.0
        ),
        dict(size="small", impl="hf", threads=2, rounds=rounds, median_s=0.3, logits=[0.1, 0.2]),
        dict(size="small", impl="ours", threads=1, rounds=rounds, median_s=0.35),
    ]
    return dict(command=["x"], results=rows, peak=dict(bf16=dict(tflops=1.0 * scale)))


def test_compare_matches_rows_by_setting_not_by_repetition_count() -> None:
    entries, notes = bench.compare_reports(_report(1.0, rounds=2), _report(0.5, rounds=3))
    got = {
        (e["section"], dict(e["row"]).get("impl"), dict(e["row"]).get("threads"), e["metric"]): e[
            "ratio"
        ]
        for e in entries
    }
    assert got[("results", "ours", 2, "median_s")] == pytest.approx(0.5)
    assert got[("results", "ours", 2, "rss_mb")] == pytest.approx(1.0)
    assert got[("results", "hf", 2, "median_s")] == pytest.approx(1.0)
    assert got[("results", "ours", 1, "median_s")] == pytest.approx(1.0)
    assert got[("peak.bf16", None, None, "tflops")] == pytest.approx(0.5)
    assert notes == []
    # filters: one metric; only what moved by 10% or more
    only, _ = bench.compare_reports(_report(1.0, 2), _report(0.5, 2), ["median_s"], 0.1)
    assert [(dict(e["row"])["impl"], e["metric"]) for e in only] == [("ours", "median_s")]


def test_compare_reports_rows_present_on_one_side_and_repeated_keys() -> None:
    old = dict(rows=[dict(model="s", t=1.0), dict(model="s", t=2.0), dict(model="b", t=3.0)])
    new = dict(rows=[dict(model="s", t=1.5), dict(model="s", t=2.0), dict(model="l", t=9.0)])
    entries, notes = bench.compare_reports(old, new)
    assert [e["ratio"] for e in entries] == [pytest.approx(1.5), pytest.approx(1.0)]
    assert notes == ["only in old: rows model=b", "only in new: rows model=l"]
    text = bench.format_comparison(entries, notes)
    assert "new/old" in text and "1.500" in text and "only in new: rows model=l" in text


def test_compare_command_prints_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a, b, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "cmp.json"
    a.write_text(json.dumps(_report(1.0, 2)))
    b.write_text(json.dumps(_report(2.0, 2)))
    assert (
        main(["bench", "compare", str(a), str(b), "--metrics", "median_s", "--json", str(out)]) == 0
    )
    assert "2.000" in capsys.readouterr().out
    saved = json.loads(out.read_text())["entries"]
    assert {e["row"]["impl"]: e["ratio"] for e in saved if e["row"]["threads"] == 2} == {
        "ours": pytest.approx(2.0),
        "hf": pytest.approx(1.0),
    }
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": [\n  oops]}')
    with pytest.raises(SystemExit, match=r"bad\.json:2: not JSON"):
        main(["bench", "compare", str(a), str(bad)])
