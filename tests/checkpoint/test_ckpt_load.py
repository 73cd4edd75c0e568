"""load_weights / load_model / save_weights / convert_checkpoint through real files."""

from __future__ import annotations

import json
import os

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
    CheckpointError,
    CheckpointMismatchError,
    convert_checkpoint,
    load_model,
    load_weights,
    original_pretrain_to_hf,
    original_to_hf,
    original_to_mmaction2,
    read_checkpoint,
    save_weights,
    select_head_rows,
)
from videomae2.checkpoint.io import atomic_write, save_safetensors
from videomae2.checkpoint.load import infer_architecture
from videomae2.models.layers import sinusoid_table
from videomae2.models.registry import SIZES, size_of


def handwritten_mmaction2_s(seed: int = 0) -> dict[str, torch.Tensor]:
    """ViT-S in mmaction2 1.2.0 names, built from the spec §5.1 table, NOT from our converter.

    Order as in mmaction2 (spec: norm1, q_bias, v_bias, qkv, proj, norm2, fc1, fc2), no
    `backbone.pos_embed` (published files lack it), flat dict.
    """
    g = torch.Generator().manual_seed(seed)
    D, hidden, n_cls = 384, 1536, 400
    r = lambda *s: torch.randn(*s, generator=g) * 0.05  # noqa: E731
    sd = {
        "backbone.patch_embed.projection.weight": r(D, 3, 2, 16, 16),
        "backbone.patch_embed.projection.bias": r(D),
    }
    for i in range(12):
        b = f"backbone.blocks.{i}."
        sd[b + "norm1.weight"] = 1 + r(D)
        sd[b + "norm1.bias"] = r(D)
        sd[b + "attn.q_bias"] = r(D)
        sd[b + "attn.v_bias"] = r(D)
        sd[b + "attn.qkv.weight"] = r(3 * D, D)
        sd[b + "attn.proj.weight"] = r(D, D)
        sd[b + "attn.proj.bias"] = r(D)
        sd[b + "norm2.weight"] = 1 + r(D)
        sd[b + "norm2.bias"] = r(D)
        sd[b + "mlp.layers.0.0.weight"] = r(hidden, D)
        sd[b + "mlp.layers.0.0.bias"] = r(hidden)
        sd[b + "mlp.layers.1.weight"] = r(D, hidden)
        sd[b + "mlp.layers.1.bias"] = r(D)
    sd["backbone.fc_norm.weight"] = 1 + r(D)
    sd["backbone.fc_norm.bias"] = r(D)
    sd["cls_head.fc_cls.weight"] = r(n_cls, D)
    sd["cls_head.fc_cls.bias"] = r(n_cls)
    return sd


def direct_original_names(mm: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors under our names, mapped by hand (independent of the key table)."""
    out = {}
    for k, v in mm.items():
        k = k.replace("cls_head.fc_cls.", "head.").removeprefix("backbone.")
        k = k.replace("patch_embed.projection.", "patch_embed.proj.")
        k = k.replace("mlp.layers.0.0.", "mlp.fc1.").replace("mlp.layers.1.", "mlp.fc2.")
        out[k] = v
    return out


@torch.no_grad()
def test_independent_mmaction2_file_loads_strictly_into_vit_s(tmp_path):
    mm = handwritten_mmaction2_s()
    assert len(mm) == 162
    path = tmp_path / "vit-small-p16_k400.pth"
    torch.save(mm, path)
    model = uninitialised("vit_small_patch16_224")
    report = load_weights(model, path)
    assert report.layout == "mmaction2" and report.complete and len(report.loaded) == 162
    direct = uninitialised("vit_small_patch16_224")
    direct.load_state_dict(direct_original_names(mm), strict=True)
    assert_same_tensors(model.state_dict(), direct.state_dict())
    x = torch.randn(1, 3, 4, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(x), direct(x))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "meta": {"a": 1}},
        lambda sd: {"state_dict": sd},
    ],
)
def test_mmaction2_container_variants(tmp_path, wrap):
    ref = tiny()
    path = tmp_path / "mm.pth"
    torch.save(wrap(original_to_mmaction2(ref.state_dict())), path)
    model = tiny(seed=9)
    report = load_weights(model, str(path))
    assert report.container == "['state_dict']"
    assert_same_tensors(model.state_dict(), ref.state_dict())


def test_mmaction2_with_pos_embed(tmp_path):
    ref = tiny()
    mm = original_to_mmaction2(ref.state_dict())
    mm["backbone.pos_embed"] = sinusoid_table(8, 64)  # 4 frames / 2 x (32 / 16)^2 tokens
    path = tmp_path / "mm.pth"
    torch.save(mm, path)
    model = tiny(seed=5)
    report = load_weights(model, path)
    assert any("pos_embed" in n and "ignored" in n for n in report.notes)
    assert_same_tensors(model.state_dict(), ref.state_dict())
    mm["backbone.pos_embed"] = mm["backbone.pos_embed"] + 1e-3
    torch.save(mm, path)
    with pytest.raises(CheckpointError, match=r"pos_embed.*not the fixed sinusoid table"):
        load_weights(tiny(), path)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"module": sd},
        lambda sd: {"model": sd, "epoch": 7},
        lambda sd: {"model": {f"_orig_mod.{k}": v for k, v in sd.items()}},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
    ],
)
def test_original_container_variants(tmp_path, wrap):
    ref = tiny()
    path = tmp_path / "orig.pth"
    torch.save(wrap(ref.state_dict()), path)
    model = tiny(seed=4)
    assert load_weights(model, path).layout == "original"
    assert_same_tensors(model.state_dict(), ref.state_dict())


def test_hf_in_memory_and_folder_both_bias_names(tmp_path):
    ref = tiny()
    for legacy in (False, True):
        model = tiny(seed=2)
        load_weights(model, original_to_hf(ref.state_dict(), legacy_bias_names=legacy))
        assert_same_tensors(model.state_dict(), ref.state_dict())
    convert_checkpoint(ref.state_dict(), tmp_path / "hf", "hf", num_heads=2)
    model = tiny(seed=3)
    assert load_weights(model, tmp_path / "hf").layout == "hf"
    assert_same_tensors(model.state_dict(), ref.state_dict())


# --------------------------------------------------------------------------------- mismatches
def _mm_file(tmp_path, edit) -> str:
    mm = original_to_mmaction2(tiny().state_dict())
    edit(mm)
    path = tmp_path / "bad.pth"
    torch.save(mm, path)
    return str(path)


def test_missing_key_error_names_key_layout_and_path(tmp_path):
    path = _mm_file(tmp_path, lambda mm: mm.pop("backbone.blocks.1.mlp.layers.0.0.weight"))
    with pytest.raises(CheckpointMismatchError) as e:
        load_weights(tiny(), path)
    msg = str(e.value)
    assert "blocks.1.mlp.fc1.weight" in msg
    assert "backbone.blocks.1.mlp.layers.0.0.weight" in msg
    assert "mmaction2" in msg and path in msg and "missing" in msg
    assert e.value.missing == ["blocks.1.mlp.fc1.weight"]
    assert isinstance(e.value, ValueError)


def test_unexpected_key_error(tmp_path):
    path = _mm_file(tmp_path, lambda mm: mm.update({"backbone.extra.weight": torch.zeros(3)}))
    with pytest.raises(CheckpointMismatchError, match=r"unexpected[\s\S]*backbone\.extra\.weight"):
        load_weights(tiny(), path)


def test_wrong_shape_error(tmp_path):
    path = _mm_file(tmp_path, lambda mm: mm.update({"cls_head.fc_cls.bias": torch.zeros(7)}))
    with pytest.raises(CheckpointMismatchError) as e:
        load_weights(tiny(), path)
    assert "head.bias (mmaction2: cls_head.fc_cls.bias): expected (10,), found (7,)" in str(e.value)
    assert e.value.mismatched == [("head.bias", (10,), (7,))]


@pytest.mark.parametrize("layout", ["mmaction2", "original"])
def test_classifier_file_without_head_fails_strict(tmp_path, layout):
    sd = {k: v for k, v in tiny().state_dict().items() if not k.startswith("head.")}
    obj = original_to_mmaction2(sd) if layout == "mmaction2" else {"module": sd}
    torch.save(obj, tmp_path / "nohead.pth")
    with pytest.raises(CheckpointMismatchError, match=r"head\.weight"):
        load_weights(tiny(), tmp_path / "nohead.pth")
    # declaring the head fresh (new label set) makes the intent explicit: then it loads
    model = tiny(seed=1)
    head_before = model.head.weight.clone()
    report = load_weights(model, tmp_path / "nohead.pth", fresh=("head.",))
    assert report.fresh == ["head.weight", "head.bias"] and report.complete
    assert torch.equal(model.head.weight, head_before)


def test_non_strict_reports_and_warns(tmp_path):
    def edit(mm):
        mm.pop("backbone.fc_norm.bias")
        mm["backbone.extra"] = torch.zeros(1)
        mm["cls_head.fc_cls.bias"] = torch.zeros(3)

    path = _mm_file(tmp_path, edit)
    model = tiny(seed=1)
    with pytest.warns(UserWarning, match="1 missing, 1 unexpected, 1 wrong-shape"):
        report = load_weights(model, path, strict=False)
    assert report.missing == ["fc_norm.bias"]
    assert report.unexpected == ["backbone.extra"]  # unknown keys keep their source names
    assert report.mismatched == [("head.bias", (10,), (3,))]
    assert not report.complete
    assert "MISSING" in str(report)
    assert torch.equal(model.blocks[0].attn.q_bias, tiny().blocks[0].attn.q_bias)


def test_fresh_head_for_a_new_label_set(tmp_path):
    src = tiny(num_classes=10)
    model = tiny(seed=1, num_classes=3)
    with pytest.raises(CheckpointMismatchError, match=r"head\.weight"):
        load_weights(model, src.state_dict())
    report = load_weights(model, src.state_dict(), fresh=("head.",))
    assert report.dropped == ["head.weight", "head.bias"]
    assert report.fresh == ["head.weight", "head.bias"]


# ---------------------------------------------------------------------------------- pretraining
@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"model": sd},
        lambda sd: {"model": {f"_orig_mod.{k}": v for k, v in sd.items()}},
        lambda sd: {"module": sd},
        lambda sd: original_pretrain_to_hf(sd, legacy_bias_names=True),
    ],
)
def test_pretraining_file_loads_encoder_strictly(tmp_path, wrap):
    sd = pretrain_state_dict()
    torch.save(wrap(sd), tmp_path / "pt.pth")
    model = tiny(seed=1)
    fresh_head = model.head.weight.clone()
    report = load_weights(model, tmp_path / "pt.pth")  # strict=True by default
    assert report.complete
    assert report.fresh == ["fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"]
    assert {"encoder.norm.weight", "mask_token", "decoder.head.weight"} <= set(report.dropped)
    assert "encoder_to_decoder.weight" in report.dropped
    for k, v in model.state_dict().items():
        if not k.startswith(("head.", "fc_norm.")):
            assert torch.equal(v, sd["encoder." + k]), k
    assert torch.equal(model.head.weight, fresh_head)
    assert "initialised fresh" in str(report)


def test_pretraining_encoder_into_first_token_classifier_keeps_norm():
    sd = pretrain_state_dict()
    model = tiny(use_mean_pooling=False)
    report = load_weights(model, sd)
    assert report.fresh == ["head.weight", "head.bias"]
    assert torch.equal(model.norm.weight, sd["encoder.norm.weight"])


def test_pretraining_file_missing_an_encoder_tensor_fails():
    sd = pretrain_state_dict()
    del sd["encoder.blocks.0.attn.q_bias"]
    with pytest.raises(CheckpointMismatchError) as e:
        load_weights(tiny(), sd)
    assert "blocks.0.attn.q_bias" in str(e.value) and "original-pretrain" in str(e.value)


def test_pretraining_file_into_pretraining_model():
    pretrain = pytest.importorskip("videomae2.models.pretrain")
    cfg = pretrain.PretrainConfig(
        embed_dim=64, depth=2, num_heads=1, decoder_embed_dim=32, decoder_depth=1,
        decoder_num_heads=1, num_frames=4, img_size=32,
    )  # fmt: skip
    model = pretrain.PretrainVisionTransformer(cfg)
    sd = pretrain_state_dict()
    report = load_weights(model, original_pretrain_to_hf(sd))
    assert report.layout == "hf-pretrain" and report.complete
    assert_same_tensors(model.state_dict(), sd)


# ------------------------------------------------------------------------------------ K710 head
@torch.no_grad()
def test_k710_head_mapping(tmp_path):
    big = tiny(num_classes=20)  # stands in for the 710-way head
    index = [13, 2, 19, 0, 7]
    (tmp_path / "label_map.json").write_text(json.dumps(index))
    x = clip(big)
    want = big(x)[:, index]
    for head_index in (index, str(tmp_path / "label_map.json"), tmp_path / "label_map.json"):
        small = tiny(seed=8, num_classes=5)
        report = load_weights(small, big.state_dict(), head_index=head_index)
        assert any("5-entry map" in n for n in report.notes)
        torch.testing.assert_close(small(x), want, rtol=0, atol=0)
    sd = select_head_rows(big.state_dict(), index)
    assert torch.equal(sd["head.weight"], big.head.weight[index])
    assert torch.equal(sd["head.bias"], big.head.bias[index])
    mm = select_head_rows(original_to_mmaction2(big.state_dict()), index, "cls_head.fc_cls.")
    assert torch.equal(mm["cls_head.fc_cls.bias"], big.head.bias[index])
    with pytest.raises(CheckpointError, match="row 20"):
        load_weights(tiny(num_classes=2), big.state_dict(), head_index=[0, 20])
    (tmp_path / "bad.json").write_text('{"a": 1}')
    with pytest.raises(CheckpointError, match="list of ints"):
        load_weights(tiny(num_classes=2), big.state_dict(), head_index=tmp_path / "bad.json")


# ------------------------------------------------------------------------------- files and I/O
def test_save_weights_load_model_exact(tmp_path):
    ref = tiny(init_values=0.1, use_learnable_pos_emb=True)
    randomize(ref)
    save_weights(ref, tmp_path / "m.safetensors")
    model = load_model(tmp_path / "m.safetensors")
    assert model.config == ref.config
    assert not model.training
    assert_same_tensors(model.state_dict(), ref.state_dict())


def test_save_weights_of_a_width_outside_the_registry(tmp_path):
    # width 48: no registry size and not a multiple of 64, so no head count could be guessed from
    # the shapes; the model's own config says 2 heads and must be all save_weights needs
    ref = randomize(tiny(embed_dim=48))
    save_weights(ref, tmp_path / "w48.safetensors")
    model = load_model(tmp_path / "w48.safetensors")
    assert model.config == ref.config and model.config.num_heads == 2
    assert_same_tensors(model.state_dict(), ref.state_dict())


@pytest.mark.parametrize("to", ["safetensors", "mmaction2", "original", "hf"])
def test_convert_round_trip_through_files(tmp_path, to):
    ref = tiny()
    src = tmp_path / "src.safetensors"
    save_weights(ref, src)
    dst = tmp_path / f"out_{to}"
    report = convert_checkpoint(src, dst, to)
    assert report.config["num_heads"] == 2  # from the metadata
    back = tmp_path / "back.safetensors"
    convert_checkpoint(dst, back, "safetensors", num_heads=2, num_frames=4, img_size=32)
    model = load_model(back)
    assert model.config.num_heads == 2 and model.config.num_frames == 4
    assert_same_tensors(model.state_dict(), ref.state_dict())


def test_convert_formats_on_disk(tmp_path):
    ref = tiny()
    convert_checkpoint(ref.state_dict(), tmp_path / "o.pth", "original", num_heads=2)
    obj = torch.load(tmp_path / "o.pth", weights_only=True)
    assert list(obj) == ["module"]
    convert_checkpoint(ref.state_dict(), tmp_path / "m.pth", "mmaction2", num_heads=2)
    mm = torch.load(tmp_path / "m.pth", weights_only=True)
    assert all(k.startswith(("backbone.", "cls_head.fc_cls.")) for k in mm)
    assert "backbone.pos_embed" not in mm
    convert_checkpoint(ref.state_dict(), tmp_path / "hf", "hf", num_heads=2)
    assert sorted(os.listdir(tmp_path / "hf")) == ["config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["layer_norm_eps"] == 1e-6 and cfg["num_labels"] == 10 and cfg["qv_bias"]
    ck = read_checkpoint(tmp_path / "hf")
    assert ck.layout == "hf"


@pytest.mark.parametrize("name", [n for n in videomae2.list_models() if n.startswith("vit_")])
def test_infer_every_registry_size_from_shapes(name):
    """Heads are not in the weights: they come from the registry size of that width/depth."""
    with torch.device("meta"):
        shapes = videomae2.create_model(name, num_classes=7).state_dict()
    sd = {k: torch.zeros(()).expand(v.shape) for k, v in shapes.items()}  # no memory
    inferred, cls = infer_architecture(sd, "original")
    assert cls == "ViTConfig" and inferred.name == name
    ref = SIZES[size_of(name)]
    for k in ("embed_dim", "depth", "num_heads", "patch_size", "mlp_ratio"):
        assert inferred.config[k] == ref[k], k
    assert inferred.config["num_classes"] == 7


def test_convert_reports_what_it_inferred(tmp_path):
    with torch.device("meta"):
        shapes = videomae2.create_model("vit_small_patch16_224", num_classes=7).state_dict()
    sd = {k: torch.zeros(()).expand(v.shape) for k, v in shapes.items()}
    report = convert_checkpoint(
        original_to_mmaction2(sd), tmp_path / "s.safetensors", "safetensors"
    )
    assert report.model_name == "vit_small_patch16_224"
    assert report.config["num_heads"] == 6 and report.config["num_classes"] == 7
    assert any("assumed 16 x 224" in n for n in report.notes)
    assert "vit_small_patch16_224" in str(report)
    with pytest.raises(CheckpointError, match="embed_dim"):
        convert_checkpoint(
            sd, tmp_path / "x.safetensors", "safetensors", model_name="vit_base_patch16_224"
        )


def test_convert_checks_against_the_inferred_model(tmp_path):
    sd = tiny().state_dict()
    sd["blocks.0.attn.stray"] = torch.zeros(2)
    with pytest.raises(CheckpointMismatchError, match="stray"):
        convert_checkpoint(sd, tmp_path / "x.safetensors", "safetensors", num_heads=2)
    assert not (tmp_path / "x.safetensors").exists()


def test_convert_hf_folds_layer_scale_and_says_so(tmp_path):
    ref = tiny(init_values=0.1)
    report = convert_checkpoint(ref.state_dict(), tmp_path / "hf", "hf", num_heads=2)
    assert any("folded" in n for n in report.notes)
    model = tiny(seed=1)
    load_weights(model, tmp_path / "hf")
    x = clip(ref)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=0, atol=1e-5)


def test_pretraining_convert_to_every_format(tmp_path):
    sd = pretrain_state_dict()
    for to in ("safetensors", "original", "hf"):
        convert_checkpoint({"model": sd}, tmp_path / to, to, num_heads=1)
        assert_same_tensors(read_checkpoint(tmp_path / to).state_dict, sd)
    report = convert_checkpoint(sd, tmp_path / "mm.pth", "mmaction2", num_heads=1)
    assert any("headless backbone" in n for n in report.notes)
    mm = torch.load(tmp_path / "mm.pth", weights_only=True)
    assert "backbone.blocks.0.attn.qkv.weight" in mm and not any("decoder" in k for k in mm)
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["architectures"] == ["VideoMAEForPreTraining"] and cfg["use_mean_pooling"] is False
    assert cfg["decoder_hidden_size"] == 32 and cfg["decoder_intermediate_size"] == 128
    if __import__("importlib").util.find_spec("videomae2.models.pretrain"):
        model = load_model(tmp_path / "safetensors")
        assert_same_tensors(model.state_dict(), sd)


class NotAWeight:
    def __init__(self) -> None:
        self.x = 1


def test_refuses_pickled_objects(tmp_path):
    torch.save({"model": tiny().state_dict(), "obj": NotAWeight()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_weights(tiny(), tmp_path / "evil.pth")


def test_training_checkpoint_with_args_namespace(tmp_path):
    import argparse

    ref = tiny()
    ckpt = {"model": ref.state_dict(), "epoch": 3, "args": argparse.Namespace(lr=1e-3)}
    torch.save(ckpt, tmp_path / "checkpoint-3.pth")
    model = tiny(seed=1)
    load_weights(model, tmp_path / "checkpoint-3.pth")
    assert_same_tensors(model.state_dict(), ref.state_dict())


def test_missing_file():
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        load_weights(tiny(), "/nonexistent/nope.pth")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    def boom(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.bin", boom)
    assert os.listdir(tmp_path) == []
    save_safetensors(tmp_path / "ok.safetensors", {"a": torch.zeros(2)})
    assert os.listdir(tmp_path) == ["ok.safetensors"]


def test_wrapped_targets(tmp_path):
    from videomae2.models.recognizer import Recognizer

    ref = tiny()
    rec = Recognizer(tiny(seed=3))
    load_weights(rec, ref.state_dict())
    assert_same_tensors(rec.model.state_dict(), ref.state_dict())

    class Compiled(torch.nn.Module):  # what torch.compile's wrapper exposes
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    wrapped = Compiled(tiny(seed=4))
    load_weights(wrapped, original_to_mmaction2(ref.state_dict()))
    assert_same_tensors(wrapped._orig_mod.state_dict(), ref.state_dict())


def test_encoder_only_pretraining_file():
    """Encoder-only `encoder.*` files (no decoder) still start a classifier strictly."""
    sd = {k: v for k, v in pretrain_state_dict().items() if k.startswith("encoder.")}
    model = tiny(seed=1)
    report = load_weights(model, {"model": sd})
    assert report.complete and report.dropped == ["encoder.norm.weight", "encoder.norm.bias"]
    assert torch.equal(model.blocks[1].mlp.fc2.bias, sd["encoder.blocks.1.mlp.fc2.bias"])
    with pytest.raises(CheckpointError, match="encoder-only"):
        convert_checkpoint(sd, "/nonexistent/x.safetensors", "safetensors", num_heads=1)


def test_bare_hf_base_model_keys():
    """A bare transformers VideoMAEModel saves without the 'videomae.' prefix."""
    ref = tiny(use_mean_pooling=False)
    hf = original_to_hf(ref.state_dict(), legacy_bias_names=True)
    bare = {k.removeprefix("videomae."): v for k, v in hf.items() if k.startswith("videomae.")}
    model = tiny(seed=1, use_mean_pooling=False)
    report = load_weights(model, bare, fresh=("head.",))
    assert report.layout == "hf" and report.fresh == ["head.weight", "head.bias"]
    for k, v in ref.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(model.state_dict()[k], v), k
