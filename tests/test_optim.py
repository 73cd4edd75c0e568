"""Parameter groups (weight-decay exclusions, layer decay), lr scaling, the cosine schedule."""

import math

import numpy as np
import pytest
import torch

from videomae2.models.pretrain import PretrainConfig, PretrainVisionTransformer
from videomae2.models.vit import VisionTransformer, ViTConfig
from videomae2.optim import (
    build_adamw,
    cosine_schedule,
    no_decay,
    param_groups,
    scale_lr,
    set_lr,
    vit_layer_id,
)


def tiny_pretrain() -> PretrainVisionTransformer:
    return PretrainVisionTransformer(
        PretrainConfig(
            img_size=32,
            embed_dim=32,
            depth=2,
            num_heads=2,
            num_frames=4,
            decoder_embed_dim=16,
            decoder_num_heads=2,
            decoder_depth=1,
        )
    )


def names_by_decay(model, groups):
    ids = {id(p): n for n, p in model.named_parameters()}
    decay, skip = set(), set()
    for g in groups:
        for p in g["params"]:
            (decay if g["weight_decay"] > 0 else skip).add(ids[id(p)])
    return decay, skip


def test_pretrain_weight_decay_exclusions():
    model = tiny_pretrain()
    groups = param_groups(model, 0.05)
    decay, skip = names_by_decay(model, groups)
    assert decay | skip == {n for n, _ in model.named_parameters()}
    assert "mask_token" in skip  # 3-D, excluded by the skip list
    assert "encoder_to_decoder.weight" in decay
    assert "encoder.patch_embed.proj.weight" in decay
    assert "encoder.patch_embed.proj.bias" in skip
    assert "decoder.blocks.0.attn.qkv.weight" in decay
    for n in (
        "encoder.blocks.1.attn.q_bias",
        "encoder.blocks.1.attn.v_bias",
        "decoder.norm.weight",
    ):
        assert n in skip
    # every decayed tensor is >= 2-D
    assert all(dict(model.named_parameters())[n].ndim >= 2 for n in decay)
    assert all(g["lr_scale"] == 1.0 for g in groups)


def test_no_decay_rules():
    w2 = torch.zeros(2, 2)
    assert no_decay("x.scale", w2) and no_decay("x.bias", w2) and no_decay("g", torch.zeros(3))
    assert no_decay("_orig_mod.mask_token", w2, {"mask_token"})
    assert not no_decay("decoder.head.weight", w2, {"mask_token"})


def test_layer_decay_vit_b_values():
    with torch.device("meta"):
        model = VisionTransformer(ViTConfig())
    groups = param_groups(model, 0.05, layer_decay=0.75)
    scale_of = {}
    ids = {id(p): n for n, p in model.named_parameters()}
    for g in groups:
        for p in g["params"]:
            scale_of[ids[id(p)]] = g["lr_scale"]
    assert scale_of["patch_embed.proj.weight"] == pytest.approx(0.75**13)
    assert round(scale_of["patch_embed.proj.weight"], 4) == 0.0238
    assert round(scale_of["blocks.0.norm1.weight"], 4) == 0.0317
    assert scale_of["blocks.11.mlp.fc1.weight"] == pytest.approx(0.75)
    assert scale_of["head.weight"] == 1.0 and scale_of["fc_norm.weight"] == 1.0


def test_layer_ids_ignore_wrapper_prefixes():
    assert vit_layer_id("module.encoder.blocks.3.attn.qkv.weight", 12) == 4
    assert vit_layer_id("_orig_mod.patch_embed.proj.weight", 12) == 0
    assert vit_layer_id("decoder.blocks.0.attn.qkv.weight", 12) == 13
    assert vit_layer_id("mask_token", 12) == 0


def test_scale_lr_recipes():
    assert scale_lr(1e-3, 32, 32) == pytest.approx(4e-3)  # ViT-B
    assert scale_lr(1e-3, 32, 48) == pytest.approx(6e-3)  # ViT-L
    assert scale_lr(6e-4, 32, 64) == pytest.approx(4.8e-3)  # ViT-g
    assert scale_lr(1e-3, 8, 2, accum_steps=4) == pytest.approx(2.5e-4)


def test_cosine_schedule():
    s = cosine_schedule(1.0, 0.1, total_steps=20, warmup_steps=5)
    assert s.shape == (20,)
    np.testing.assert_allclose(s[:5], np.linspace(0, 1, 5))
    assert s[0] == 0.0 and s[4] == 1.0 and s[5] == 1.0  # two peak steps, as the original
    i = np.arange(15)
    np.testing.assert_allclose(s[5:], 0.1 + 0.45 * (1 + np.cos(np.pi * i / 15)))
    assert s[-1] > 0.1 and np.all(np.diff(s[5:]) < 0)
    assert cosine_schedule(1.0, 0.0, 3, 10).tolist() == [0.0, 0.5, 1.0]
    assert cosine_schedule(2.0, 0.0, 4).tolist()[0] == 2.0


def test_set_lr_applies_scale():
    model = torch.nn.Linear(2, 2)
    groups = [
        dict(params=[model.weight], lr_scale=0.5, weight_decay=0.1),
        dict(params=[model.bias]),
    ]
    opt = build_adamw(groups, lr=1.0)
    set_lr(opt, 2.0)
    assert [g["lr"] for g in opt.param_groups] == [1.0, 2.0]
    assert opt.param_groups[0]["betas"] == (0.9, 0.95) and math.isclose(opt.defaults["eps"], 1e-8)


def test_adamw_is_fused_by_default_and_matches_the_reference_update():
    """The fused kernel (picked for plain CPU/GPU parameters) computes PyTorch's AdamW update:
    three steps with weight decay and two lr scales agree with the for-loop implementation."""
    torch.manual_seed(0)
    a, b = torch.nn.Linear(16, 8), torch.nn.Linear(16, 8)
    b.load_state_dict(a.state_dict())
    start = a.weight.detach().clone()

    def groups(m):
        return [
            dict(params=[m.weight], weight_decay=0.05, lr_scale=0.5),
            dict(params=[m.bias], weight_decay=0.0, lr_scale=1.0),
        ]

    fast = build_adamw(groups(a), lr=1e-2)
    ref = build_adamw(groups(b), lr=1e-2, fused=False)
    assert fast.defaults["fused"] is True and not ref.defaults["fused"]
    for step in range(3):
        x = torch.randn(4, 16, generator=torch.Generator().manual_seed(step))
        for m, opt in ((a, fast), (b, ref)):
            opt.zero_grad()
            m(x).square().sum().backward()
            opt.step()
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(a.bias, b.bias, rtol=1e-6, atol=1e-7)
    assert (a.weight - start).abs().max() > 1e-3  # it did train
