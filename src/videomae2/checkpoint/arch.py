"""Architecture from a checkpoint: config metadata, HF ``config.json``, or tensor shapes.

Files written by this package carry the model config as safetensors metadata, so they load with
no flags. Other files only have tensors: width, patch, tubelet, depth, MLP width, qkv bias, layer
scale, pooling and class count are read off the shapes, but the head count is not in the weights;
it comes from the registry size with the same width and depth (or ``--model NAME``). Frame count
and image size are not in the weights either (the position table is computed, not stored): they
default to 16 x 224 unless a stored table, HF config or explicit argument says otherwise.

Also the reverse direction: the HF ``config.json`` for a model, with every LayerNorm eps at 1e-6.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from videomae2.checkpoint.errors import CheckpointError, CheckpointMismatchError
from videomae2.models.registry import SIZES, create_model, list_models, size_of
from videomae2.models.vit import VisionTransformer, ViTConfig

META_LAYOUT = "videomae2.layout"
META_MODEL = "videomae2.model"
META_CONFIG = "videomae2.config"
META_CONFIG_CLASS = "videomae2.config_class"

DEFAULT_FRAMES = 16
DEFAULT_IMG = 224
# Any positive value: it only builds gamma_1/gamma_2, whose loaded values then replace it.
LAYER_SCALE_PLACEHOLDER = 0.1


@dataclass
class Inferred:
    """An architecture and how it was found (printed by ``convert``)."""

    config: dict  # ViTConfig fields (classifier) or `pretrain_dims` fields (pretraining)
    name: str | None  # matching registry name, if any
    notes: list[str] = field(default_factory=list)


def _block_ids(sd: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    pat = re.compile(rf"{re.escape(prefix)}(\d+)\.")
    return sorted({int(m.group(1)) for k in sd if (m := pat.match(k))})


def _stack_dims(sd: Mapping[str, torch.Tensor], prefix: str) -> dict:
    """Shape facts of an encoder stored under `prefix` ('' or 'encoder.')."""
    w = sd.get(f"{prefix}patch_embed.proj.weight")
    if w is None or w.ndim != 5:
        raise CheckpointError(
            f"cannot infer the architecture: no 5-D {prefix}patch_embed.proj.weight"
        )
    D, C, tt, p, p2 = (int(s) for s in w.shape)
    if p != p2:
        raise CheckpointError(f"non-square patch {tuple(w.shape)} is not supported")
    ids = _block_ids(sd, f"{prefix}blocks.")
    if not ids or ids != list(range(len(ids))):
        raise CheckpointError(f"cannot infer depth: block indices {ids[:5]}... not 0..n-1")
    fc1 = sd.get(f"{prefix}blocks.0.mlp.fc1.weight")
    if fc1 is None:
        raise CheckpointError(f"cannot infer the MLP width: no {prefix}blocks.0.mlp.fc1.weight")
    hidden = int(fc1.shape[0])
    return dict(
        embed_dim=D,
        in_chans=C,
        tubelet_size=tt,
        patch_size=p,
        depth=len(ids),
        mlp_hidden=hidden,
        qkv_bias=f"{prefix}blocks.0.attn.q_bias" in sd,
        layer_scale=f"{prefix}blocks.0.gamma_1" in sd,
    )


def _mlp_ratio(dim: int, hidden: int) -> float:
    ratio = hidden / dim
    if int(dim * ratio) != hidden:  # float round-off must not change int(dim * ratio)
        raise CheckpointError(f"MLP width {hidden} is not representable as int({dim} * ratio)")
    return ratio


def _match_size(dims: dict) -> str | None:
    for size, s in SIZES.items():
        if (s["embed_dim"], s["depth"], s["patch_size"]) == (
            dims["embed_dim"],
            dims["depth"],
            dims["patch_size"],
        ) and int(s["embed_dim"] * s["mlp_ratio"]) == dims["mlp_hidden"]:
            return size
    return None


def _registry_name(size: str, prefix: str) -> str | None:
    names = [n for n in list_models(prefix) if n.startswith(prefix) and size_of(n) == size]
    return names[0] if names else None


def _heads(dims: dict, notes: list[str], explicit: int | None, what: str) -> int:
    if explicit:
        return explicit
    D = dims["embed_dim"]
    for s in SIZES.values():
        if s["embed_dim"] == D:
            notes.append(f"{what}heads {s['num_heads']}: registry size with width {D}")
            return s["num_heads"]
    if D % 64 == 0:
        notes.append(f"{what}heads {D // 64}: no registry size of width {D}; head width 64 assumed")
        return D // 64
    raise CheckpointError(f"cannot guess the head count for width {D}; pass --model NAME")


def _grid_from_tokens(
    n: int, p: int, tt: int, frames: int | None, img: int | None
) -> tuple[int, int]:
    img = img or DEFAULT_IMG
    per_slot = (img // p) ** 2
    if frames is None and n % per_slot == 0:
        frames = n // per_slot * tt
    frames = frames or DEFAULT_FRAMES
    if (frames // tt) * (img // p) ** 2 != n:
        raise CheckpointError(
            f"stored pos_embed has {n} tokens, which {frames} frames x {img} px do not give; "
            "pass --num-frames / --img-size"
        )
    return frames, img


def vit_fields_from_hf(hf: Mapping) -> dict:
    """ViTConfig fields an HF VideoMAE ``config.json`` determines (heads, frames, size...)."""
    img = hf.get("image_size", DEFAULT_IMG)
    if isinstance(img, (list, tuple)):
        if len(set(img)) != 1:
            raise CheckpointError(f"non-square image_size {img} is not supported")
        img = img[0]
    patch = hf.get("patch_size", 16)
    patch = patch[0] if isinstance(patch, (list, tuple)) else patch
    out = dict(
        embed_dim=hf.get("hidden_size", 768),
        depth=hf.get("num_hidden_layers", 12),
        num_heads=hf.get("num_attention_heads", 12),
        patch_size=patch,
        img_size=img,
        num_frames=hf.get("num_frames", DEFAULT_FRAMES),
        tubelet_size=hf.get("tubelet_size", 2),
        in_chans=hf.get("num_channels", 3),
        use_mean_pooling=hf.get("use_mean_pooling", True),
        qkv_bias=hf.get("qv_bias", hf.get("qkv_bias", True)),
    )
    if "intermediate_size" in hf:
        out["mlp_ratio"] = _mlp_ratio(out["embed_dim"], hf["intermediate_size"])
    return out


def infer_vit_config(
    sd: Mapping[str, torch.Tensor],
    *,
    hf_config: Mapping | None = None,
    model_name: str | None = None,
    num_heads: int | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
) -> Inferred:
    """The ViTConfig of an original-layout classifier dict.

    Head count: `num_heads`, `model_name`, the HF config, the registry size of the same width.
    Frames/size: the arguments, the HF config, a stored learned table, then 16 x 224. Everything
    else is read off the tensor shapes. (Files with videomae2 config metadata skip this: see
    `load.infer_architecture`.)
    """
    notes: list[str] = []
    dims = _stack_dims(sd, "")
    size = _match_size(dims)
    name = _registry_name(size, "vit_") if size else None
    explicit_heads = None
    known: dict = {}
    if model_name:
        if not model_name.startswith("vit_"):
            raise CheckpointError(f"--model {model_name}: a classifier needs a vit_* model name")
        ref = SIZES[size_of(model_name)]
        for k in ("embed_dim", "depth", "patch_size"):
            if ref[k] != dims[k]:
                raise CheckpointError(
                    f"--model {model_name} has {k}={ref[k]} but the weights have {dims[k]}"
                )
        explicit_heads, name = ref["num_heads"], model_name
        notes.append(f"heads {explicit_heads} from --model {model_name}")
    elif hf_config:
        known = vit_fields_from_hf(hf_config)
        explicit_heads = known["num_heads"]
        notes.append("heads, frames and image size from the HF config.json")
    elif name:
        notes.append(f"shapes match registry model {name}")
    if num_heads:
        explicit_heads = num_heads
        notes.append(f"heads {num_heads} given explicitly")

    cfg = dict(
        embed_dim=dims["embed_dim"],
        depth=dims["depth"],
        patch_size=dims["patch_size"],
        tubelet_size=dims["tubelet_size"],
        in_chans=dims["in_chans"],
        mlp_ratio=_mlp_ratio(dims["embed_dim"], dims["mlp_hidden"]),
        qkv_bias=dims["qkv_bias"],
        num_heads=_heads(dims, notes, explicit_heads, ""),
        use_mean_pooling="norm.weight" not in sd,
        num_classes=int(sd["head.weight"].shape[0]) if "head.weight" in sd else 0,
        init_values=LAYER_SCALE_PLACEHOLDER if dims["layer_scale"] else 0.0,
        use_learnable_pos_emb="pos_embed" in sd,
    )
    if size and dims["embed_dim"] == SIZES[size]["embed_dim"]:
        cfg["mlp_ratio"] = SIZES[size]["mlp_ratio"]  # the registry's exact value (48/11 for g)
    frames = num_frames or known.get("num_frames")
    img = img_size or known.get("img_size")
    if "pos_embed" in sd:
        frames, img = _grid_from_tokens(
            int(sd["pos_embed"].shape[1]), cfg["patch_size"], cfg["tubelet_size"], frames, img
        )
        notes.append("learned pos_embed: frames/size from its token count")
    cfg["num_frames"] = frames or DEFAULT_FRAMES
    cfg["img_size"] = img or DEFAULT_IMG
    if not (num_frames or known or "pos_embed" in sd):
        notes.append(
            f"frames x size not stored in the weights: assumed {cfg['num_frames']} x "
            f"{cfg['img_size']} (override with --num-frames/--img-size)"
        )
    if dims["layer_scale"]:
        notes.append("layer scale present (gamma_1/gamma_2)")
    ViTConfig.from_dict(cfg)  # validates (e.g. width divisible by heads)
    return Inferred(cfg, name, notes)


def pretrain_dims(
    sd: Mapping[str, torch.Tensor],
    *,
    hf_config: Mapping | None = None,
    model_name: str | None = None,
    num_heads: int | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
) -> Inferred:
    """`PretrainConfig` fields of an original-layout pretraining dict (shapes first).

    Decoder heads are not in the weights either: the HF config's, else decoder width / 64, which
    is what every released size uses (pretraining.md §6: 192/3, 384/6, 512/8).
    """
    notes: list[str] = []
    enc = _stack_dims(sd, "encoder.")
    if "mask_token" not in sd or not _block_ids(sd, "decoder.blocks."):
        raise CheckpointError(
            "encoder-only pretraining checkpoint (no mask_token / decoder blocks): there is no "
            "pretraining model to build from it; load its encoder into a classifier with "
            "load_weights (head and fc_norm start fresh)"
        )
    dec_dim = int(sd["mask_token"].shape[-1])
    dec_hidden = int(sd["decoder.blocks.0.mlp.fc1.weight"].shape[0])
    size = _match_size(enc)
    name = model_name or (_registry_name(size, "pretrain_") if size else None)
    known = vit_fields_from_hf(hf_config) if hf_config else {}
    heads = (
        num_heads or known.get("num_heads") or (SIZES[size_of(name)]["num_heads"] if name else None)
    )
    ratio = SIZES[size]["mlp_ratio"] if size else _mlp_ratio(enc["embed_dim"], enc["mlp_hidden"])
    if int(dec_dim * ratio) != dec_hidden:
        raise CheckpointError(
            f"decoder MLP width {dec_hidden} != int({dec_dim} * encoder mlp_ratio {ratio:.4g}); "
            "the pretraining model shares one mlp_ratio between encoder and decoder"
        )
    dec_heads = (hf_config or {}).get("decoder_num_attention_heads") or max(dec_dim // 64, 1)
    cfg = dict(
        embed_dim=enc["embed_dim"],
        depth=enc["depth"],
        num_heads=_heads(enc, notes, heads, "encoder "),
        mlp_ratio=ratio,
        patch_size=enc["patch_size"],
        tubelet_size=enc["tubelet_size"],
        in_chans=enc["in_chans"],
        qkv_bias=enc["qkv_bias"],
        init_values=LAYER_SCALE_PLACEHOLDER if enc["layer_scale"] else 0.0,
        decoder_embed_dim=dec_dim,
        decoder_depth=len(_block_ids(sd, "decoder.blocks.")),
        decoder_num_heads=dec_heads,
        num_frames=num_frames or known.get("num_frames") or DEFAULT_FRAMES,
        img_size=img_size or known.get("img_size") or DEFAULT_IMG,
    )
    if not hf_config:
        notes.append(f"decoder heads {dec_heads}: decoder width / 64 (spec pretraining §6)")
    if name:
        notes.append(f"shapes match registry model {name}")
    return Inferred(cfg, name, notes)


def build_model(cfg: Mapping, cfg_class: str) -> torch.nn.Module:
    """A classifier (``ViTConfig``) or pretraining model (``PretrainConfig``) from config fields."""
    if cfg_class == "ViTConfig":
        return VisionTransformer(ViTConfig.from_dict(dict(cfg)))
    if cfg_class == "PretrainConfig":
        from videomae2.models import pretrain  # imported only when a pretraining file needs it

        return pretrain.PretrainVisionTransformer(pretrain.PretrainConfig(**dict(cfg)))
    raise CheckpointError(f"unknown config class {cfg_class!r} in the checkpoint metadata")


def expected_shapes(cfg: Mapping, cfg_class: str = "ViTConfig") -> dict[str, tuple[int, ...]]:
    """State-dict shapes of the model `cfg` describes (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = build_model(cfg, cfg_class)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_against_config(
    sd: Mapping[str, torch.Tensor],
    cfg: Mapping,
    *,
    source: str,
    layout: str,
    cfg_class: str = "ViTConfig",
) -> None:
    """Raise CheckpointMismatchError unless `sd` fits the model `cfg` describes exactly."""
    want = expected_shapes(cfg, cfg_class)
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    mismatched = [
        (k, want[k], tuple(sd[k].shape)) for k in sd if k in want and tuple(sd[k].shape) != want[k]
    ]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(
            source=source,
            layout=layout,
            missing=missing,
            unexpected=unexpected,
            mismatched=mismatched,
        )


def hf_config(cfg: Mapping) -> dict:
    """HF ``VideoMAEForVideoClassification`` config.json for a classifier ViTConfig dict.

    ``layer_norm_eps`` is 1e-6 as in VideoMAE V2 (HF defaults to 1e-12); HF hard-codes fc_norm's
    eps to 1e-5, which no config field reaches, so HF logits differ by ~1e-5 unless that module's
    eps is set by hand after loading (spec §5.2). Both ``qv_bias`` (5.x) and ``qkv_bias`` (4.x)
    are written so either major version reads the bias flag.
    """
    c = ViTConfig.from_dict(dict(cfg))
    return {
        "architectures": ["VideoMAEForVideoClassification"],
        "model_type": "videomae",
        "hidden_size": c.embed_dim,
        "num_hidden_layers": c.depth,
        "num_attention_heads": c.num_heads,
        "intermediate_size": c.mlp_hidden,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": c.norm_eps,
        "image_size": c.img_size,
        "patch_size": c.patch_size,
        "num_channels": c.in_chans,
        "num_frames": c.num_frames,
        "tubelet_size": c.tubelet_size,
        "qv_bias": c.qkv_bias,
        "qkv_bias": c.qkv_bias,
        "use_mean_pooling": c.use_mean_pooling,
        "num_labels": c.num_classes,
    }


def hf_pretrain_config(cfg: Mapping) -> dict:
    """HF ``VideoMAEForPreTraining`` config.json for `PretrainConfig` fields.

    ``use_mean_pooling`` is False because only then does HF build ``videomae.layernorm``, the
    home of the original ``encoder.norm``.
    """
    D, Dd, ratio = cfg["embed_dim"], cfg["decoder_embed_dim"], cfg.get("mlp_ratio", 4.0)
    return {
        "architectures": ["VideoMAEForPreTraining"],
        "model_type": "videomae",
        "hidden_size": D,
        "num_hidden_layers": cfg["depth"],
        "num_attention_heads": cfg["num_heads"],
        "intermediate_size": int(D * ratio),
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": cfg.get("norm_eps", 1e-6),
        "image_size": cfg.get("img_size", DEFAULT_IMG),
        "patch_size": cfg["patch_size"],
        "num_channels": cfg.get("in_chans", 3),
        "num_frames": cfg.get("num_frames", DEFAULT_FRAMES),
        "tubelet_size": cfg.get("tubelet_size", 2),
        "qv_bias": cfg.get("qkv_bias", True),
        "qkv_bias": cfg.get("qkv_bias", True),
        "use_mean_pooling": False,
        "decoder_hidden_size": Dd,
        "decoder_num_hidden_layers": cfg["decoder_depth"],
        "decoder_num_attention_heads": cfg["decoder_num_heads"],
        "decoder_intermediate_size": int(Dd * ratio),
        "norm_pix_loss": True,
    }


def build_from_metadata(metadata: Mapping[str, str]) -> torch.nn.Module | None:
    """The model a videomae2 safetensors file describes, or None if it carries no config."""
    cls = metadata.get(META_CONFIG_CLASS)
    raw = metadata.get(META_CONFIG)
    if cls and raw:
        return build_model(json.loads(raw), cls)
    name = metadata.get(META_MODEL)
    return create_model(name) if name else None
