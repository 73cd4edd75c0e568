"""`videomae2 convert`: help, a full CLI round trip through every output, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from ckpt_helpers import assert_same_tensors, tiny

from videomae2.checkpoint import load_model, original_to_mmaction2, save_weights
from videomae2.cli import main


def test_convert_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["convert", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--to", "--model", "--head-map", "safetensors", "mmaction2", "folded"):
        assert flag in out


def test_convert_help_as_a_program():
    out = subprocess.run(
        [sys.executable, "-m", "videomae2", "convert", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--to {safetensors,mmaction2,original,hf}" in out


def test_cli_round_trip_every_output(tmp_path, capsys):
    ref = tiny()
    save_weights(ref, tmp_path / "a.safetensors")
    steps = [
        ("a.safetensors", "b.pth", "mmaction2", []),
        ("b.pth", "c_hf", "hf", ["--num-heads", "2", "--num-frames", "4", "--img-size", "32"]),
        ("c_hf", "d.pth", "original", []),  # heads/frames/size from c_hf/config.json
        ("d.pth", "e.safetensors", "safetensors", ["--num-heads", "2", "--num-frames", "4",
                                                   "--img-size", "32"]),
    ]  # fmt: skip
    for src, dst, to, extra in steps:
        rc = main(["convert", str(tmp_path / src), str(tmp_path / dst), "--to", to, *extra])
        assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "layout mmaction2" in out and "layout hf" in out and "wrote hf" in out
    model = load_model(tmp_path / "e.safetensors")  # no flags: config in the metadata
    assert model.config == ref.config.__class__(**{**ref.config.to_dict()})
    assert_same_tensors(model.state_dict(), ref.state_dict())


def test_cli_head_map(tmp_path, capsys):
    big = tiny(num_classes=12)
    torch.save(original_to_mmaction2(big.state_dict()), tmp_path / "k710.pth")
    (tmp_path / "map.json").write_text(json.dumps([11, 0, 5]))
    rc = main(
        [
            "convert", str(tmp_path / "k710.pth"), str(tmp_path / "k3.safetensors"),
            "--to", "safetensors", "--head-map", str(tmp_path / "map.json"),
            "--num-heads", "2", "--num-frames", "4", "--img-size", "32",
        ]
    )  # fmt: skip
    assert rc == 0
    assert "3-entry map" in capsys.readouterr().out
    model = load_model(tmp_path / "k3.safetensors")
    assert model.config.num_classes == 3
    assert torch.equal(model.head.weight, big.head.weight[[11, 0, 5]])


def test_cli_reports_inferred_heads(tmp_path, capsys):
    torch.save({"module": tiny().state_dict()}, tmp_path / "t.pth")
    rc = main(["convert", str(tmp_path / "t.pth"), str(tmp_path / "t.safetensors"), "--to",
               "safetensors"])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "heads 1: no registry size of width 64" in out  # and that is why --num-heads exists
    assert "assumed 16 x 224" in out


def test_cli_errors_exit_nonzero(tmp_path, capsys):
    rc = main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "x"), "--to", "hf"])
    assert rc == 1
    assert "missing.pth" in capsys.readouterr().err
    torch.save({"weird": torch.zeros(1)}, tmp_path / "w.pth")
    rc = main(["convert", str(tmp_path / "w.pth"), str(tmp_path / "x"), "--to", "hf"])
    assert rc == 1
    assert "cannot tell the checkpoint layout" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["convert", "a", "b", "--to", "onnx"])
