"""The CPU inference fast paths (layers.linear, contiguous q/k/v) compute what training computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from videomae2.models.layers import Mlp, PatchEmbed
from videomae2.models.recognizer import Recognizer, cast_matmul_weights
from videomae2.models.vit import VisionTransformer, ViTConfig


def tiny(seed: int = 0) -> VisionTransformer:
    torch.manual_seed(seed)
    cfg = ViTConfig(
        img_size=32, embed_dim=64, depth=2, num_heads=2, num_frames=4, num_classes=7, init_scale=1
    )
    model = VisionTransformer(cfg).eval()
    with torch.no_grad():  # non-zero q/v biases and norms
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def test_inference_fp32_matches_autograd_path() -> None:
    model, x = tiny(), torch.randn(2, 3, 4, 32, 32)
    reference = model(x)  # grad enabled: the plain ATen path
    with torch.inference_mode():
        fast = model(x)
    with torch.no_grad():
        no_grad = model(x)
    assert torch.allclose(fast, reference.detach(), atol=1e-5, rtol=0)
    assert torch.equal(fast, no_grad)


def test_inference_bf16_autocast_matches_autograd_path() -> None:
    model, x = tiny(), torch.randn(2, 3, 4, 32, 32)
    with torch.autocast("cpu", torch.bfloat16):
        reference = model(x).float().detach()
        with torch.inference_mode():
            fast = model(x).float()
    assert (fast - reference).abs().max() < 2e-2
    assert (fast - model(x).detach()).abs().max() < 5e-2  # bf16 vs fp32


def test_cast_matmul_weights_keeps_keys_and_autocast_results() -> None:
    model, x = tiny(), torch.randn(1, 3, 4, 32, 32)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        before = model(x).float()
        cast_matmul_weights(model, torch.bfloat16)
        after = model(x).float()
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes
    assert model.blocks[0].mlp.fc1.weight.dtype == torch.bfloat16
    assert model.blocks[0].norm1.weight.dtype == torch.float32
    assert (before - after).abs().max() < 1e-2


def test_recognizer_autocast_dtype() -> None:
    views = torch.randint(0, 256, (1, 2, 3, 4, 32, 32), dtype=torch.uint8)
    fp32 = Recognizer(tiny(), average_clips=None).eval()
    bf16 = Recognizer(tiny(), average_clips=None, autocast_dtype=torch.bfloat16).eval()
    with torch.inference_mode():
        a, b = fp32(views), bf16(views)
    assert b.dtype == torch.float32 and a.shape == b.shape == (1, 2, 7)
    assert (a - b).abs().max() < 5e-2


def test_mlp_with_replaced_activation_is_not_fused() -> None:
    torch.manual_seed(0)
    mlp = Mlp(16, 32).eval()
    mlp.act = nn.ReLU()
    x = torch.randn(2, 5, 16)
    with torch.inference_mode():
        out = mlp(x)
    assert torch.allclose(out, mlp.fc2(torch.relu(mlp.fc1(x))))


def test_patch_embed_gemm_path_equals_conv() -> None:
    torch.manual_seed(0)
    embed = PatchEmbed(patch_size=8, tubelet_size=2, in_chans=3, embed_dim=16)
    x = torch.randn(2, 3, 4, 16, 16)
    with torch.autocast("cpu", torch.bfloat16):
        conv = embed(x).float().detach()  # grad enabled: the Conv3d path
        with torch.inference_mode():
            gemm = embed(x).float()  # bf16 CPU inference: patches gathered, one GEMM
    assert gemm.shape == conv.shape == (2, 8, 16)
    assert (gemm - conv).abs().max() < 2e-2 * conv.abs().max()


@pytest.mark.slow  # ~10 s of inductor compilation
def test_torch_compile_bf16_inference() -> None:
    # torch.compile must not see the oneDNN op (its lowering expects weights it packed itself).
    model, x = tiny(), torch.randn(1, 3, 4, 32, 32)
    compiled = torch.compile(model)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        assert (compiled(x).float() - model(x).float()).abs().max() < 2e-2
