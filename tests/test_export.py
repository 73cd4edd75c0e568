"""`videomae2 export`: .pt2 and .onnx files that compute what the eager model computes, at any
batch size, with their input/output contract stored inside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import videomae2
from videomae2 import export
from videomae2.checkpoint import save_weights
from videomae2.cli import main
from videomae2.models.recognizer import Recognizer

TINY = dict(embed_dim=48, depth=2, num_heads=2, num_frames=4, img_size=32, patch_size=16)


@pytest.fixture(scope="module")
def checkpoint(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, videomae2.VisionTransformer]:
    torch.manual_seed(0)
    model = videomae2.create_model("vit_small_patch16_224", num_classes=7, **TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # non-zero head, biases, norms
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_weights(model, path)
    return path, model


def test_pt2_logits_at_another_batch_size_and_its_contract(checkpoint, tmp_path: Path) -> None:
    ckpt, model = checkpoint
    out = tmp_path / "m.pt2"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    x = torch.randn(5, 3, 4, 32, 32)
    with torch.no_grad():
        got = torch.export.load(out).module()(x)
        want = model(x)
    assert got.shape == (5, 7)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    meta = export.read_contract(out)
    assert meta["input"]["shape"] == ["batch", 3, 4, 32, 32] and meta["output"]["name"] == "logits"
    assert meta["model_config"]["embed_dim"] == 48
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt2"]  # no temporary left behind


def test_onnx_with_uint8_input_equals_the_test_jobs_recognizer(checkpoint, tmp_path: Path) -> None:
    ckpt, model = checkpoint
    out = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), "--out", str(out), "--input", "uint8"]) == 0
    views = torch.randint(0, 256, (3, 3, 4, 32, 32), dtype=torch.uint8)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": views.numpy()})[0]
    with torch.inference_mode():  # the test job's preprocessing + backbone, per view
        want = Recognizer(model, average_clips=None).view_logits(views[None])[0]
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-4)
    meta = export.read_contract(out)
    assert (
        meta["input"]["dtype"] == "uint8" and meta["input"]["normalization"]["applied"] == "inside"
    )


def test_features_output(checkpoint, tmp_path: Path) -> None:
    ckpt, model = checkpoint
    out = tmp_path / "f.pt2"
    assert main(["export", str(ckpt), "--out", str(out), "--output", "features"]) == 0
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            torch.export.load(out).module()(x), model.forward_features(x), rtol=0, atol=1e-5
        )


def test_verification_fails_loudly_and_bad_arguments(checkpoint, tmp_path: Path) -> None:
    ckpt, _ = checkpoint
    # an impossible tolerance: the reload-and-compare must be what decides the exit status
    rc = main(["export", str(ckpt), "--out", str(tmp_path / "m.pt2"), "--atol", "-1"])
    assert rc == 1 and (tmp_path / "m.pt2").exists()
    with pytest.raises(SystemExit, match="suffix picks the format"):
        main(["export", str(ckpt), "--out", str(tmp_path / "m.bin")])


def test_onnx_weights_in_a_side_file_survive_the_rename(checkpoint, tmp_path: Path) -> None:
    # ViT-H/g exceed protobuf's 2 GiB and need external data; forced here on the tiny model
    _, model = checkpoint
    wrapper = export.ExportWrapper(model).eval()
    x = export.example_input("normalized", 2, 4, 32)
    out = tmp_path / "big.onnx"
    written = export.export_onnx(wrapper, x, out, {"k": 1}, external_data=True)
    assert sorted(p.name for p in written) == ["big.onnx", "big.onnx.data"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    assert 3 * out.stat().st_size < (tmp_path / "big.onnx.data").stat().st_size  # weights moved
    got = export.run_exported(out, "onnx", x)
    with torch.no_grad():
        torch.testing.assert_close(got, model(x), rtol=0, atol=1e-4)
    assert export.read_contract(out) == {"k": 1}
