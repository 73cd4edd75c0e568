"""One registry: model name -> a few dimensions handed to one builder.

`create_model(name, **overrides)` builds any entry; overrides are fields of the family's config
dataclass (unknown names are an error, listing the valid ones).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import nn

from videomae2.models.vit import VisionTransformer, ViTConfig

# Encoder dimensions of each size (spec/model.md §3).
SIZES: dict[str, dict] = {
    "small": dict(patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0),
    "base": dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0),
    "large": dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0),
    "huge": dict(patch_size=16, embed_dim=1280, depth=32, num_heads=16, mlp_ratio=4.0),
    "giant": dict(patch_size=14, embed_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11),
}


def _build_vit(size: str) -> Callable[..., nn.Module]:
    def build(**overrides) -> nn.Module:
        return VisionTransformer(_make_config(ViTConfig, {**SIZES[size], **overrides}))

    return build


def _make_config(cls: type, values: dict):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"unknown model option(s) {unknown}; valid options: {sorted(known)}")
    return cls(**values)


def _build_pretrain(size: str) -> Callable[..., nn.Module]:
    def build(**overrides) -> nn.Module:
        from videomae2.models.pretrain import (
            PretrainConfig,
            PretrainVisionTransformer,
            decoder_dims,
        )

        values = {**SIZES[size], **decoder_dims(size), **overrides}
        return PretrainVisionTransformer(_make_config(PretrainConfig, values))

    return build


_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "vit_small_patch16_224": _build_vit("small"),
    "vit_base_patch16_224": _build_vit("base"),
    "vit_large_patch16_224": _build_vit("large"),
    "vit_huge_patch16_224": _build_vit("huge"),
    "vit_giant_patch14_224": _build_vit("giant"),
    "pretrain_videomae_small_patch16_224": _build_pretrain("small"),
    "pretrain_videomae_base_patch16_224": _build_pretrain("base"),
    "pretrain_videomae_large_patch16_224": _build_pretrain("large"),
    "pretrain_videomae_huge_patch16_224": _build_pretrain("huge"),
    "pretrain_videomae_giant_patch14_224": _build_pretrain("giant"),
}


def list_models(pattern: str = "") -> list[str]:
    """Registered model names containing `pattern`."""
    return sorted(n for n in _REGISTRY if pattern in n)


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered model, e.g. `create_model('vit_base_patch16_224', num_classes=400)`."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[name](**overrides)


def size_of(name: str) -> str:
    """'vit_base_patch16_224' -> 'base'."""
    for size in SIZES:
        if f"_{size}_" in name:
            return size
    raise ValueError(f"cannot tell the size of model {name!r}")
