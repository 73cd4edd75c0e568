"""Numerical parity with transformers' VideoMAE as an independent implementation.

Our model with random non-trivial weights -> our HF conversion -> transformers' model: the logits
must agree within 1e-4. Every LayerNorm eps in the HF model is set to 1e-6 after building
(spec §5.2: the config field does not reach fc_norm, which HF hard-codes to 1e-5).
"""

from __future__ import annotations

import json

import pytest
import torch
from ckpt_helpers import (
    assert_same_tensors,
    clip,
    pretrain_state_dict,
    randomize,
    tiny,
    uninitialised,
)

import videomae2
from videomae2.checkpoint import (
    convert_checkpoint,
    load_weights,
    original_pretrain_to_hf,
    original_to_hf,
    save_weights,
)
from videomae2.checkpoint.arch import hf_config

transformers = pytest.importorskip("transformers")
ATOL = 1e-4


def hf_classifier(cfg: dict) -> torch.nn.Module:
    hf_cfg = {k: v for k, v in hf_config(cfg).items() if k not in ("architectures", "model_type")}
    model = transformers.VideoMAEForVideoClassification(transformers.VideoMAEConfig(**hf_cfg))
    return model.eval()


def set_all_eps(model: torch.nn.Module, eps: float = 1e-6) -> int:
    n = 0
    for m in model.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.eps = eps
            n += 1
    return n


def hf_qv_biases(model: torch.nn.Module) -> list[torch.Tensor]:
    return [
        t
        for layer in model.videomae.encoder.layer
        for t in (layer.attention.attention.query.bias, layer.attention.attention.value.bias)
    ]


@torch.no_grad()
def compare(ours: videomae2.VisionTransformer, hf: torch.nn.Module, batch: int = 1) -> float:
    x = clip(ours, batch=batch)
    ref = ours(x)
    got = hf(pixel_values=x.permute(0, 2, 1, 3, 4)).logits  # HF takes (B, T, C, H, W)
    return (ref - got).abs().max().item()


def check_in_memory(ours: videomae2.VisionTransformer) -> float:
    hf = hf_classifier(ours.config.to_dict())
    hf.load_state_dict(original_to_hf(ours.state_dict()), strict=True)
    set_all_eps(hf)
    assert all(b.abs().sum() > 0 for b in hf_qv_biases(hf))
    diff = compare(ours, hf, batch=2)
    hf.config._attn_implementation = "eager"  # a genuinely different attention computation
    return max(diff, compare(ours, hf, batch=2))


def check_from_pretrained(
    ours: videomae2.VisionTransformer, folder, eager_too: bool = False
) -> float | tuple[float, float]:
    """Through files: our `convert --to hf` output read by `from_pretrained`.

    HF's default SDPA attention runs the same kernel as ours (differences are often exactly 0);
    `eager_too` also compares HF's eager attention, a genuinely different computation.
    """
    src = folder / "ours.safetensors"
    save_weights(ours, src)
    convert_checkpoint(src, folder / "hf", "hf")
    hf = transformers.VideoMAEForVideoClassification.from_pretrained(folder / "hf").eval()
    # some 5.x releases loaded q/v biases as zeros without error (spec §5.2)
    assert all(b.abs().sum() > 0 for b in hf_qv_biases(hf))
    for ours_blk, layer in zip(ours.blocks, hf.videomae.encoder.layer):
        assert torch.equal(layer.attention.attention.query.bias, ours_blk.attn.q_bias)
    c = ours.config
    assert hf.config.hidden_size == c.embed_dim and hf.config.num_attention_heads == c.num_heads
    assert hf.config.num_hidden_layers == c.depth and hf.config.num_labels == c.num_classes
    assert hf.config.intermediate_size == c.mlp_hidden
    assert (hf.config.num_frames, hf.config.image_size) == (c.num_frames, c.img_size)
    assert hf.config.use_mean_pooling == c.use_mean_pooling and hf.config.qv_bias == c.qkv_bias
    assert hf.config.layer_norm_eps == 1e-6
    assert set_all_eps(hf) > 0
    diff = compare(ours, hf)
    if not eager_too:
        return diff
    hf.config._attn_implementation = "eager"
    return diff, compare(ours, hf)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"use_mean_pooling": False}, {"init_values": 0.1}, {"qkv_bias": False}],
    ids=["mean-pool", "first-token", "layer-scale-folded", "no-qkv-bias"],
)
def test_tiny_parity_in_memory(overrides):
    ours = tiny(**overrides)
    if overrides.get("qkv_bias") is False:
        hf = hf_classifier(ours.config.to_dict())
        hf.load_state_dict(original_to_hf(ours.state_dict()), strict=True)
        set_all_eps(hf)
        hf.config._attn_implementation = "eager"
        diff = compare(ours, hf, batch=2)
    else:
        diff = check_in_memory(ours)
    print(f"tiny {overrides}: max |ours - HF| = {diff:.3g} (worst of HF sdpa / eager)")
    assert diff < ATOL


def test_tiny_parity_from_pretrained(tmp_path):
    diff = check_from_pretrained(tiny(), tmp_path)
    print(f"tiny from_pretrained: max |ours - HF| = {diff:.3g}")
    assert diff < ATOL


def test_hf_save_pretrained_folder_loads_back_exactly(tmp_path):
    """A folder written by transformers itself (not by us) loads strictly into our model."""
    ours = tiny()
    hf = hf_classifier(ours.config.to_dict())
    hf.load_state_dict(original_to_hf(ours.state_dict()), strict=True)
    hf.save_pretrained(tmp_path / "hf")
    model = tiny(seed=7)
    report = load_weights(model, tmp_path / "hf")
    assert report.layout == "hf" and report.complete
    assert_same_tensors(model.state_dict(), ours.state_dict())
    back = videomae2.checkpoint.load_model(tmp_path / "hf")  # config.json gives heads/frames
    assert back.config.num_heads == 2 and back.config.num_frames == 4
    assert_same_tensors(back.state_dict(), ours.state_dict())


def test_s_width_depth_parity_small_clip(tmp_path):
    """ViT-S width/depth/heads at 4 frames x 64 px: fast enough for the default suite."""
    ours = randomize(uninitialised("vit_small_patch16_224", num_frames=4, img_size=64), seed=11)
    diff, diff_eager = check_from_pretrained(ours, tmp_path, eager_too=True)
    print(f"ViT-S 4x64: max |ours - HF| = {diff:.3g} (HF sdpa), {diff_eager:.3g} (HF eager)")
    assert diff < ATOL and diff_eager < ATOL


@pytest.mark.slow
def test_s_parity_full_clip(tmp_path):
    """ViT-S at the real 16 x 224 clip (1568 tokens), one video, through files."""
    ours = randomize(uninitialised("vit_small_patch16_224"), seed=12)
    diff, diff_eager = check_from_pretrained(ours, tmp_path, eager_too=True)
    print(f"ViT-S 16x224: max |ours - HF| = {diff:.3g} (HF sdpa), {diff_eager:.3g} (HF eager)")
    assert diff < ATOL and diff_eager < ATOL


@torch.no_grad()
def test_negative_controls_show_the_comparison_is_live():
    """The checks above would notice HF's own eps or a lost q bias."""
    ours = tiny()
    hf = hf_classifier(ours.config.to_dict())
    hf.load_state_dict(original_to_hf(ours.state_dict()), strict=True)
    hf.fc_norm.eps = 1e-5  # HF's hard-coded value
    assert compare(ours, hf) > 1e-7
    set_all_eps(hf)
    hf.videomae.encoder.layer[0].attention.attention.query.bias.zero_()
    assert compare(ours, hf) > 1e-3


@torch.no_grad()
def test_hf_pretraining_layout_parity(tmp_path):
    """HF VideoMAEForPreTraining loads our converted pretraining dict; its encoder output
    (``videomae.layernorm`` of all tokens) equals ours after loading the encoder into a
    first-token classifier, whose ``norm`` receives ``encoder.norm``."""
    sd = pretrain_state_dict(dim=64, depth=2, dec_dim=32, dec_depth=1)
    convert_checkpoint(sd, tmp_path / "hfpt", "hf", num_heads=2, num_frames=4, img_size=32)
    cfg = json.loads((tmp_path / "hfpt" / "config.json").read_text())
    assert cfg["architectures"] == ["VideoMAEForPreTraining"]
    hf = transformers.VideoMAEForPreTraining.from_pretrained(tmp_path / "hfpt").eval()
    assert all(b.abs().sum() > 0 for b in hf_qv_biases(hf))
    want = original_pretrain_to_hf(sd)
    got = hf.state_dict()
    for k, v in want.items():
        assert torch.equal(got[k], v), k
    set_all_eps(hf)

    ours = tiny(use_mean_pooling=False)
    report = load_weights(ours, tmp_path / "hfpt")
    assert report.layout == "hf-pretrain" and report.fresh == ["head.weight", "head.bias"]
    x = clip(ours)
    ref = ours.norm(ours.tokens(x))
    out = hf.videomae(pixel_values=x.permute(0, 2, 1, 3, 4)).last_hidden_state
    diff = (ref - out).abs().max().item()
    print(f"pretraining encoder: max |ours - HF| = {diff:.3g}")
    assert diff < ATOL
