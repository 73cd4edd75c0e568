"""Pure converters: key tables, exact round trips, qkv split, layer-scale folding, detection."""

from __future__ import annotations

import itertools

import pytest
import torch
from ckpt_helpers import assert_same_tensors, clip, pretrain_state_dict, tiny

import videomae2
from videomae2.checkpoint import (
    CheckpointError,
    convert_state_dict,
    detect_layout,
    fold_layer_scale,
    hf_pretrain_to_original,
    hf_to_original,
    mmaction2_to_original,
    original_pretrain_to_hf,
    original_to_hf,
    original_to_mmaction2,
    pretrain_encoder,
    unwrap,
)
from videomae2.checkpoint.layouts import layout_name, split_qkv
from videomae2.models.layers import sinusoid_table

CLASSIFIER_LAYOUTS = ("original", "mmaction2", "hf")


def test_s_key_counts_match_spec():
    """spec §5.1: a 12-block classifier has 162 original/mmaction2 tensors and 186 HF ones."""
    with torch.device("meta"):
        sd = videomae2.create_model("vit_small_patch16_224").state_dict()
    assert len(sd) == 162
    assert len(original_to_mmaction2(sd)) == 162
    assert len(original_to_hf(sd)) == 186
    assert sum(v.numel() for v in sd.values()) == 22_033_936


def test_spec_table_names():
    """Spot-check every row of the spec §5.1 table in both non-original layouts."""
    m = tiny(init_values=0.1)
    sd = m.state_dict()
    mm = original_to_mmaction2(sd)
    for key in (
        "backbone.patch_embed.projection.weight",
        "backbone.blocks.1.norm1.bias",
        "backbone.blocks.1.attn.q_bias",
        "backbone.blocks.1.attn.v_bias",
        "backbone.blocks.1.attn.qkv.weight",
        "backbone.blocks.1.attn.proj.bias",
        "backbone.blocks.1.norm2.weight",
        "backbone.blocks.1.mlp.layers.0.0.weight",
        "backbone.blocks.1.mlp.layers.1.bias",
        "backbone.blocks.1.gamma_1",
        "backbone.fc_norm.weight",
        "cls_head.fc_cls.weight",
    ):
        assert key in mm, key
    hf = original_to_hf(sd)
    p = "videomae.encoder.layer.1."
    for key in (
        "videomae.embeddings.patch_embeddings.projection.bias",
        p + "layernorm_before.weight",
        p + "attention.attention.query.weight",
        p + "attention.attention.key.weight",
        p + "attention.attention.value.weight",
        p + "attention.attention.query.bias",
        p + "attention.attention.value.bias",
        p + "attention.output.dense.weight",
        p + "layernorm_after.bias",
        p + "intermediate.dense.weight",
        p + "output.dense.bias",
        "fc_norm.bias",
        "classifier.weight",
    ):
        assert key in hf, key
    assert not any("gamma" in k or "key.bias" in k for k in hf)
    legacy = original_to_hf(sd, legacy_bias_names=True)
    assert p + "attention.attention.q_bias" in legacy
    assert p + "attention.attention.v_bias" in legacy
    assert not any(k.endswith(("query.bias", "value.bias")) for k in legacy)


def test_qkv_split_rows():
    sd = tiny().state_dict()
    hf = original_to_hf(sd)
    w = sd["blocks.0.attn.qkv.weight"]
    D = w.shape[1]
    pre = "videomae.encoder.layer.0.attention.attention."
    assert torch.equal(hf[pre + "query.weight"], w[:D])
    assert torch.equal(hf[pre + "key.weight"], w[D : 2 * D])
    assert torch.equal(hf[pre + "value.weight"], w[2 * D :])
    assert torch.equal(hf[pre + "query.bias"], sd["blocks.0.attn.q_bias"])
    assert torch.equal(hf[pre + "value.bias"], sd["blocks.0.attn.v_bias"])


@pytest.mark.parametrize("overrides", [{}, {"use_mean_pooling": False}, {"qkv_bias": False}])
@pytest.mark.parametrize("legacy", [False, True])
def test_round_trip_every_classifier_layout(overrides, legacy):
    sd = tiny(**overrides).state_dict()
    assert_same_tensors(mmaction2_to_original(original_to_mmaction2(sd)), sd)
    assert_same_tensors(hf_to_original(original_to_hf(sd, legacy_bias_names=legacy)), sd)


def test_any_to_any_is_exact():
    sd = tiny().state_dict()
    for src, dst in itertools.permutations(CLASSIFIER_LAYOUTS, 2):
        there = convert_state_dict(convert_state_dict(sd, "original", src), src, dst)
        assert detect_layout(there) == dst
        back = convert_state_dict(there, dst, "original")
        assert_same_tensors(back, sd)


def test_learnable_pos_embed_round_trips_through_mmaction2_not_hf():
    sd = tiny(use_learnable_pos_emb=True).state_dict()
    mm = original_to_mmaction2(sd)
    assert "backbone.pos_embed" in mm
    assert_same_tensors(mmaction2_to_original(mm), sd)
    with pytest.raises(CheckpointError, match="learned position table"):
        original_to_hf(sd)
    # the fixed table is informationless and is dropped on the way to HF
    fixed = {**tiny().state_dict(), "pos_embed": sinusoid_table(8, 64)}
    assert "pos_embed" not in str(sorted(original_to_hf(fixed)))


def test_pretrain_round_trip_original_hf():
    sd = pretrain_state_dict()
    for legacy in (False, True):
        hf = original_pretrain_to_hf(sd, legacy_bias_names=legacy)
        assert detect_layout(hf) == "hf-pretrain"
        assert "videomae.layernorm.weight" in hf
        assert "decoder.decoder_layers.0.attention.attention.key.weight" in hf
        assert "decoder.head.weight" in hf and "mask_token" in hf
        assert_same_tensors(hf_pretrain_to_original(hf), sd)
        assert_same_tensors(convert_state_dict(hf, "hf-pretrain", "original-pretrain"), sd)
    with pytest.raises(CheckpointError, match="crosses pretraining"):
        convert_state_dict(sd, "original-pretrain", "hf")


def test_pretrain_encoder_extraction():
    sd = pretrain_state_dict()
    enc, dropped = pretrain_encoder(sd, keep_norm=False)
    assert all(not k.startswith(("encoder.", "decoder.")) for k in enc)
    assert torch.equal(enc["blocks.1.attn.q_bias"], sd["encoder.blocks.1.attn.q_bias"])
    assert "norm.weight" not in enc and "encoder.norm.weight" in dropped
    assert {"mask_token", "encoder_to_decoder.weight", "decoder.head.weight"} <= set(dropped)
    enc2, _ = pretrain_encoder(sd, keep_norm=True)
    assert torch.equal(enc2["norm.weight"], sd["encoder.norm.weight"])


@torch.no_grad()
def test_fold_layer_scale_keeps_the_function():
    """A gamma model and the gamma-free model from its folded weights give the same logits."""
    m = tiny(init_values=0.1)
    folded = hf_to_original(original_to_hf(m.state_dict()))
    assert not any("gamma" in k for k in folded)
    plain = tiny()
    plain.load_state_dict(folded, strict=True)
    x = clip(m)
    torch.testing.assert_close(plain(x), m(x), rtol=0, atol=1e-5)
    # pure: the input dict is untouched
    sd = m.state_dict()
    before = sd["blocks.0.attn.proj.weight"].clone()
    fold_layer_scale(sd)
    assert torch.equal(sd["blocks.0.attn.proj.weight"], before)


def test_hf_key_bias_must_be_zero():
    hf = original_to_hf(tiny().state_dict())
    k = "videomae.encoder.layer.0.attention.attention.key.bias"
    hf[k] = torch.zeros(64)
    assert_same_tensors(hf_to_original(hf), tiny().state_dict())
    hf[k] = torch.ones(64)
    with pytest.raises(CheckpointError, match="key bias"):
        hf_to_original(hf)


def test_incomplete_qkv_stays_visible():
    hf = original_to_hf(tiny().state_dict())
    del hf["videomae.encoder.layer.0.attention.attention.key.weight"]
    out = hf_to_original(hf)
    assert "blocks.0.attn.qkv.weight" not in out
    assert "blocks.0.attn.qkv.weight[q]" in out


def test_split_qkv_owns_storage():
    parts = split_qkv({"blocks.0.attn.qkv.weight": torch.randn(6, 2)})
    ptrs = {t.untyped_storage().data_ptr() for t in parts.values()}
    assert len(ptrs) == 3


def test_layout_name_for_messages():
    assert layout_name("blocks.3.mlp.fc1.weight", "mmaction2") == (
        "backbone.blocks.3.mlp.layers.0.0.weight"
    )
    assert layout_name("head.bias", "hf") == "classifier.bias"
    assert "{query,key,value}" in layout_name("blocks.0.attn.qkv.weight", "hf")
    assert layout_name("blocks.0.attn.qkv.weight", "original") is None


# ----------------------------------------------------------------------------------- detection
@pytest.mark.parametrize(
    ("layout", "make"),
    [
        ("original", lambda: tiny().state_dict()),
        ("mmaction2", lambda: original_to_mmaction2(tiny().state_dict())),
        ("hf", lambda: original_to_hf(tiny().state_dict())),
        ("hf", lambda: original_to_hf(tiny().state_dict(), legacy_bias_names=True)),
        ("original-pretrain", pretrain_state_dict),
        ("hf-pretrain", lambda: original_pretrain_to_hf(pretrain_state_dict())),
    ],
)
def test_detect_layout(layout, make):
    assert detect_layout(make()) == layout


def test_detect_unknown_layout_names_keys():
    with pytest.raises(CheckpointError, match=r"cannot tell the checkpoint layout.*weird\.key"):
        detect_layout({"weird.key": torch.zeros(1)})


@pytest.mark.parametrize(
    ("wrap", "container", "prefixes"),
    [
        (lambda sd: sd, "flat", []),
        (lambda sd: {"state_dict": sd, "meta": {"epoch": 3}}, "['state_dict']", []),
        (lambda sd: {"model": sd, "epoch": 3, "optimizer": {}}, "['model']", []),
        (lambda sd: {"module": sd}, "['module']", []),
        (lambda sd: {"model": {"module": sd}}, "['model']['module']", []),
        (lambda sd: {f"module.{k}": v for k, v in sd.items()}, "flat", ["module."]),
        (lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()}, "flat", ["_orig_mod."]),
        (
            lambda sd: {"state_dict": {f"module._orig_mod.{k}": v for k, v in sd.items()}},
            "['state_dict']",
            ["_orig_mod.", "module."],
        ),
        (lambda sd: {f"model.{k}": v for k, v in sd.items()}, "flat", ["model."]),
    ],
)
def test_unwrap_containers_and_prefixes(wrap, container, prefixes):
    sd = original_to_mmaction2(tiny().state_dict())
    un = unwrap(wrap(sd))
    assert un.container == container
    assert un.stripped_prefixes == prefixes
    assert_same_tensors(un.state_dict, sd)
    assert detect_layout(un.state_dict) == "mmaction2"


def test_unwrap_lists_non_tensor_entries():
    sd = tiny().state_dict()
    un = unwrap({**sd, "note": "hello"})
    assert un.ignored == ["note"]
    with pytest.raises(CheckpointError, match="no tensors"):
        unwrap({"meta": {}})
    with pytest.raises(CheckpointError, match="twice"):
        unwrap({"module.head.bias": torch.zeros(1), "head.bias": torch.zeros(1)})
