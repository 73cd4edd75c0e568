"""The classifier backbone: sizes, the position table, attention math, options."""

import math

import pytest
import torch
import torch.nn.functional as F

import videomae2
from videomae2.models.layers import Attention, sinusoid_table
from videomae2.models.vit import VisionTransformer, ViTConfig


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def tiny(**kw) -> VisionTransformer:
    cfg = dict(img_size=32, patch_size=16, embed_dim=64, depth=2, num_heads=2, num_frames=4)
    cfg.update(kw)
    return VisionTransformer(ViTConfig(**cfg))


@pytest.mark.parametrize(
    "name,count", [("vit_small_patch16_224", 22_033_936), ("vit_base_patch16_224", 86_534_800)]
)
def test_param_counts_small_base(name, count):
    assert n_params(videomae2.create_model(name, num_classes=400)) == count


@pytest.mark.parametrize(
    "name,classes,count",
    [
        ("vit_small_patch16_224", 710, 22_153_286),
        ("vit_base_patch16_224", 710, 86_773_190),
        ("vit_large_patch16_224", 400, 304_270_736),
        ("vit_large_patch16_224", 0, 303_860_736),
        ("vit_huge_patch16_224", 400, 632_119_440),
        ("vit_huge_patch16_224", 710, 632_516_550),
        ("vit_giant_patch14_224", 400, 1_012_174_352),
        ("vit_giant_patch14_224", 710, 1_012_611_142),
    ],
)
def test_param_counts_on_meta(name, classes, count):
    with torch.device("meta"):
        model = videomae2.create_model(name, num_classes=classes)
    assert n_params(model) == count


def test_list_and_unknown():
    names = videomae2.list_models("vit_")
    assert names == sorted(
        [
            "vit_small_patch16_224",
            "vit_base_patch16_224",
            "vit_large_patch16_224",
            "vit_huge_patch16_224",
            "vit_giant_patch14_224",
        ]
    )
    with pytest.raises(ValueError, match="unknown model"):
        videomae2.create_model("vit_tiny")
    with pytest.raises(TypeError, match="num_clases"):
        videomae2.create_model("vit_small_patch16_224", num_clases=3)


def test_sinusoid_table_matches_formula():
    n, d = 50, 12
    table = sinusoid_table(n, d)
    assert table.shape == (1, n, d) and table.dtype == torch.float32
    for p in (0, 1, 7, 49):
        for j in range(d):
            angle = p / 10000 ** (2 * (j // 2) / d)
            expected = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert abs(table[0, p, j].item() - expected) < 1e-6
    # not stored: the state dict holds no table
    assert not any("pos" in k for k in tiny().state_dict())


def test_attention_equals_explicit_formula():
    torch.manual_seed(0)
    attn = Attention(dim=32, num_heads=4, qkv_bias=True).eval()
    with torch.no_grad():
        attn.q_bias.normal_()
        attn.v_bias.normal_()
    x = torch.randn(2, 10, 32)
    # independent: q/k/v by slicing the weight, explicit scaled softmax, k has no bias
    w = attn.qkv.weight
    q = x @ w[:32].T + attn.q_bias
    k = x @ w[32:64].T
    v = x @ w[64:].T + attn.v_bias

    def heads(t):
        return t.view(2, 10, 4, 8).transpose(1, 2)

    a = ((heads(q) * 8**-0.5) @ heads(k).transpose(-1, -2)).softmax(-1)
    ref = attn.proj((a @ heads(v)).transpose(1, 2).reshape(2, 10, 32))
    assert torch.allclose(attn(x), ref, atol=1e-6)


def test_no_qkv_bias_and_qk_scale():
    attn = Attention(dim=16, num_heads=2, qkv_bias=False, qk_scale=0.5)
    assert attn.q_bias is None and attn.scale == 0.5
    assert {k for k, _ in attn.named_parameters()} == {"qkv.weight", "proj.weight", "proj.bias"}


def test_shapes_and_features():
    model = tiny(num_classes=7).eval()
    x = torch.randn(3, 3, 4, 32, 32)
    assert model(x).shape == (3, 7)
    assert model.forward_features(x).shape == (3, 64)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(drop_path_rate=0.2, init_values=0.1),
        dict(use_learnable_pos_emb=True, drop_rate=0.1, use_mean_pooling=False),
    ],
)
def test_mmaction2_unit_test_configs(kwargs):
    # mmaction2's own backbone test: ViT-B dims, 64 px, 8 frames -> (1, 768) in train and eval
    model = VisionTransformer(ViTConfig(img_size=64, num_frames=8, num_classes=0, **kwargs))
    x = torch.randn(1, 3, 8, 64, 64)
    for train in (True, False):
        model.train(train)
        assert model(x).shape == (1, 768)
    keys = set(model.state_dict())
    assert ("blocks.0.gamma_1" in keys) == ("init_values" in kwargs)
    assert ("pos_embed" in keys) == ("use_learnable_pos_emb" in kwargs)
    assert ("norm.weight" in keys) != ("fc_norm.weight" in keys)


def test_no_mean_pooling_uses_first_patch_token():
    model = tiny(use_mean_pooling=False, num_classes=0).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    assert torch.allclose(model(x), model.norm(model.tokens(x))[:, 0])


def test_other_frame_counts_and_sizes_rebuild_the_table():
    model = tiny().eval()
    x = torch.randn(1, 3, 8, 64, 48)  # grid (4, 4, 3) instead of (2, 2, 2)
    assert model(x).shape == (1, 400)
    assert torch.equal(model.position_table((4, 4, 3)), sinusoid_table(48, 64))
    with pytest.raises(ValueError, match="divisible"):
        model(torch.randn(1, 3, 3, 32, 32))


def test_bicubic_interpolation_option():
    model = tiny(pos_interp="bicubic").eval()
    table = model.position_table((2, 3, 3))
    assert table.shape == (1, 18, 64)
    same = F.interpolate(
        model.pos_table.reshape(2, 2, 2, 64).permute(0, 3, 1, 2),
        size=(3, 3),
        mode="bicubic",
        align_corners=False,
    )
    assert torch.allclose(table, same.permute(0, 2, 3, 1).reshape(1, 18, 64))
    with pytest.raises(ValueError, match="frame count"):
        model.position_table((4, 2, 2))
    with pytest.raises(ValueError, match="pos_interp"):
        tiny(pos_interp="nearest")


def test_grad_checkpointing_is_exact():
    torch.manual_seed(0)
    a = tiny(num_classes=5)
    b = tiny(num_classes=5, grad_checkpointing=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 4, 32, 32)
    ya, yb = a(x), b(x)
    ya.sum().backward()
    yb.sum().backward()
    assert torch.equal(ya, yb)
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-6), n


def test_drop_path_only_in_training():
    model = tiny(drop_path_rate=0.5)
    x = torch.randn(32, 3, 4, 32, 32)
    f = model.forward_features
    model.eval()
    assert torch.equal(f(x), f(x))
    model.train()
    torch.manual_seed(1)
    y1 = f(x)
    torch.manual_seed(2)
    assert not torch.equal(y1, f(x))


def test_init_follows_original():
    model = tiny(num_classes=10, init_scale=0.001)
    w = model.blocks[0].mlp.fc1.weight
    assert abs(w.std().item() - 0.02) < 0.004
    assert torch.all(model.blocks[0].mlp.fc1.bias == 0)
    assert torch.all(model.blocks[0].attn.q_bias == 0)
    assert abs(model.head.weight.std().item() - 0.001 * 0.02) < 0.001 * 0.006
    zero_head = tiny(num_classes=10)  # class default init_scale 0 -> all-zero head
    assert torch.all(zero_head.head.weight == 0)


def test_meta_then_materialize_restores_table():
    with torch.device("meta"):
        model = tiny()
    model = model.to_empty(device="cpu")
    model.reset_parameters()
    assert torch.equal(model.pos_table, sinusoid_table(8, 64))
