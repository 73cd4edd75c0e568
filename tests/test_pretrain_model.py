"""Pretraining model: sizes, original state-dict layout, init, decoder order, options."""

import math

import pytest
import torch

from videomae2.masking import running_cell_mask, tube_mask
from videomae2.models.layers import sinusoid_table
from videomae2.models.pretrain import PretrainConfig, PretrainVisionTransformer, decoder_dims
from videomae2.models.registry import create_model
from videomae2.models.vit import VisionTransformer, ViTConfig

# spec pretraining.md §6 (decoder params: blocks, norm, head, encoder_to_decoder, mask_token)
DECODER_PARAMS = {
    "pretrain_videomae_small_patch16_224": (2_149_440, 192, 3, 768, 1536),
    "pretrain_videomae_base_patch16_224": (7_983_744, 384, 6, 1536, 1536),
    "pretrain_videomae_large_patch16_224": (13_921_280, 512, 8, 2048, 1536),
    "pretrain_videomae_huge_patch16_224": (14_052_352, 512, 8, 2048, 1536),
    "pretrain_videomae_giant_patch14_224": (14_695_808, 512, 8, 2234, 1176),
}
# model.md §3 encoder params (norm replaces fc_norm: same count)
ENCODER_PARAMS = {
    "pretrain_videomae_small_patch16_224": 21_879_936,
    "pretrain_videomae_base_patch16_224": 86_227_200,
    "pretrain_videomae_large_patch16_224": 303_860_736,
    "pretrain_videomae_huge_patch16_224": 631_607_040,
    "pretrain_videomae_giant_patch14_224": 1_011_610_752,
}


def tiny(**kw) -> PretrainVisionTransformer:
    cfg = dict(
        img_size=32,
        patch_size=16,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_frames=8,
        decoder_embed_dim=16,
        decoder_num_heads=2,
        decoder_depth=2,
    )
    cfg.update(kw)
    torch.manual_seed(0)
    return PretrainVisionTransformer(PretrainConfig(**cfg))


def masks(batch: int, grid, seed: int = 0, ratio: float = 0.5):
    g = torch.Generator().manual_seed(seed)
    return tube_mask(batch, grid, 0.75, g), running_cell_mask(batch, grid, ratio, g)


@pytest.mark.parametrize("name", list(DECODER_PARAMS))
def test_sizes_on_meta(name):
    params, dd, heads, hidden, out = DECODER_PARAMS[name]
    with torch.device("meta"):
        model = create_model(name)
    assert model.config.decoder_depth == 4
    dec = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("encoder."))
    enc = sum(p.numel() for n, p in model.named_parameters() if n.startswith("encoder."))
    assert dec == params
    assert enc == ENCODER_PARAMS[name]
    blk = model.decoder.blocks[0]
    assert blk.attn.num_heads == heads and blk.mlp.fc1.out_features == hidden
    assert model.decoder.head.out_features == out
    assert model.mask_token.shape == (1, 1, dd)
    assert model.encoder_to_decoder.bias is None


def test_decoder_dims_and_unknown_option():
    assert decoder_dims("giant") == dict(decoder_embed_dim=512, decoder_num_heads=8)
    with pytest.raises(TypeError, match="unknown model option"):
        create_model("pretrain_videomae_small_patch16_224", decoder_width=3)


def test_state_dict_is_the_original_layout():
    with torch.device("meta"):
        model = create_model("pretrain_videomae_small_patch16_224")
    keys = set(model.state_dict())
    block = {
        "norm1.weight",
        "norm1.bias",
        "attn.q_bias",
        "attn.v_bias",
        "attn.qkv.weight",
        "attn.proj.weight",
        "attn.proj.bias",
        "norm2.weight",
        "norm2.bias",
        "mlp.fc1.weight",
        "mlp.fc1.bias",
        "mlp.fc2.weight",
        "mlp.fc2.bias",
    }
    expected = {"encoder.patch_embed.proj.weight", "encoder.patch_embed.proj.bias"}
    expected |= {f"encoder.blocks.{i}.{k}" for i in range(12) for k in block}
    expected |= {"encoder.norm.weight", "encoder.norm.bias", "encoder_to_decoder.weight"}
    expected |= {"mask_token", "decoder.norm.weight", "decoder.norm.bias"}
    expected |= {"decoder.head.weight", "decoder.head.bias"}
    expected |= {f"decoder.blocks.{j}.{k}" for j in range(4) for k in block}
    assert keys == expected
    # encoder sub-keys are exactly the classifier's (minus fc_norm/head, plus the final norm)
    with torch.device("meta"):
        vit = create_model("vit_small_patch16_224")
    enc = {k[len("encoder.") :] for k in keys if k.startswith("encoder.")}
    assert enc - {"norm.weight", "norm.bias"} == set(vit.state_dict()) - {
        "fc_norm.weight",
        "fc_norm.bias",
        "head.weight",
        "head.bias",
    }


def test_strict_load_of_an_original_layout_file_and_encoder_into_classifier():
    src = tiny()
    sd = {k: torch.randn_like(v) for k, v in src.state_dict().items()}
    dst = tiny()
    dst.load_state_dict(sd, strict=True)
    for k, v in dst.state_dict().items():
        assert torch.equal(v, sd[k])
    vit = VisionTransformer(
        ViTConfig(img_size=32, embed_dim=32, depth=2, num_heads=2, num_frames=8, num_classes=3)
    )
    enc = {k[len("encoder.") :]: v for k, v in sd.items() if k.startswith("encoder.")}
    enc.pop("norm.weight"), enc.pop("norm.bias")
    missing, unexpected = vit.load_state_dict(enc, strict=False)
    assert sorted(missing) == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    assert unexpected == []


def test_init():
    model = tiny(embed_dim=64, num_heads=4, decoder_embed_dim=48, decoder_num_heads=4)
    mt = model.mask_token
    assert mt.abs().max() <= 0.02 and mt.std() > 0.005
    for lin in (model.encoder.blocks[0].mlp.fc1, model.decoder.blocks[0].attn.qkv):
        bound = math.sqrt(6 / (lin.in_features + lin.out_features))
        assert lin.weight.abs().max() <= bound and lin.weight.abs().max() > 0.9 * bound
        if lin.bias is not None:
            assert (lin.bias == 0).all()
    # encoder_to_decoder keeps PyTorch's default Linear init: U(-1/sqrt(in), 1/sqrt(in))
    w = model.encoder_to_decoder.weight
    assert w.abs().max() <= 1 / math.sqrt(64) and w.abs().max() > 0.9 / math.sqrt(64)
    assert (model.decoder.norm.weight == 1).all() and (
        model.encoder.blocks[0].attn.q_bias == 0
    ).all()


def reference_forward(model, videos, mask, decode_mask):
    """Per-sample forward with explicit index lists (independent of the batched gather)."""
    enc = model.encoder
    n = mask.shape[1]
    outs = []
    for b in range(videos.shape[0]):
        vis_idx = [i for i in range(n) if not mask[b, i]]
        dec_idx = [i for i in range(n) if not decode_mask[b, i]]
        x = enc.patch_embed(videos[b : b + 1]) + sinusoid_table(n, enc.embed_dim)
        x = x[:, vis_idx]
        for blk in enc.blocks:
            x = blk(x)
        x = model.encoder_to_decoder(enc.norm(x))
        dtab = sinusoid_table(n, model.config.decoder_embed_dim)
        tokens = [x[:, j] + dtab[:, i] for j, i in enumerate(vis_idx)]
        tokens += [model.mask_token[:, 0] + dtab[:, i] for i in dec_idx]
        y = torch.stack(tokens, dim=1)
        for blk in model.decoder.blocks:
            y = blk(y)
        outs.append(model.decoder.head(model.decoder.norm(y[:, len(vis_idx) :])))
    return torch.cat(outs)


def test_forward_matches_per_sample_reference():
    model = tiny(img_size=64).eval()
    grid = model.grid
    assert grid == (4, 4, 4)
    videos = torch.randn(3, 3, 8, 64, 64)
    mask, dmask = masks(3, grid)
    with torch.no_grad():
        out = model(videos, mask, dmask)
        ref = reference_forward(model, videos, mask, dmask)
    assert out.shape == (3, 32, 3 * 2 * 16 * 16)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_v1_mode_decodes_every_hidden_token():
    model = tiny(img_size=64).eval()
    videos = torch.randn(2, 3, 8, 64, 64)
    mask, _ = masks(2, model.grid)
    with torch.no_grad():
        a = model(videos, mask)
        b = model(videos, mask, ~mask)
    assert a.shape == (2, 48, 1536)
    assert torch.equal(a, b)


def test_base_token_counts_at_16x224():
    torch.manual_seed(0)
    model = create_model("pretrain_videomae_base_patch16_224", depth=1, decoder_depth=1).eval()
    g = torch.Generator().manual_seed(0)
    mask = tube_mask(1, model.grid, 0.9, g)
    dmask = running_cell_mask(1, model.grid, 0.5, g)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 16, 224, 224), mask, dmask)
    assert out.shape == (1, 784, 1536)


def test_unequal_counts_raise():
    model = tiny()
    mask, dmask = masks(2, model.grid)
    mask[1, (~mask[1]).nonzero()[0]] = True  # one fewer visible token in sample 1
    with pytest.raises(ValueError, match="same number of encoder-visible"):
        model(torch.randn(2, 3, 8, 32, 32), mask, dmask)
    mask, dmask = masks(2, model.grid)
    dmask[0, 0] = ~dmask[0, 0]
    with pytest.raises(ValueError, match="same number of decoded"):
        model(torch.randn(2, 3, 8, 32, 32), mask, dmask)
    with pytest.raises(ValueError, match="mask must be"):
        model(torch.randn(2, 3, 8, 32, 32), mask[:, :-1], dmask)


def test_grad_checkpointing_matches():
    videos = torch.randn(2, 3, 8, 32, 32)
    mask, dmask = masks(2, (4, 2, 2))
    grads = []
    for ckpt in (False, True):
        model = tiny(grad_checkpointing=ckpt)
        out = model(videos, mask, dmask)
        out.square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, msg=name)


def test_meta_init_then_materialise():
    with torch.device("meta"):
        model = tiny()
    model.to_empty(device="cpu")
    model.reset_parameters()
    assert torch.equal(model.decoder_pos_table, sinusoid_table(16, 16))
    assert torch.isfinite(model(torch.randn(1, 3, 8, 32, 32), *masks(1, model.grid))).all()
