"""One loader for every layout, plus conversion and self-describing saves.

``load_weights`` reads any supported file (or an in-memory dict), detects the layout, converts it
to the model's own names and loads it strictly by default. Strict means: every model tensor is
either loaded or was declared fresh, nothing in the file is left unused unless it was dropped on
purpose, and every shape matches; anything else raises ``CheckpointMismatchError`` listing the
keys. That is stricter than mmaction2 (non-strict, warnings only), which can silently leave
random weights in a model.

Fresh on purpose:
* a pretraining file (``encoder.*``/``decoder.*``) loaded into a classifier: its encoder is used,
  the decoder, ``encoder_to_decoder``, ``mask_token`` and (for mean pooling) ``encoder.norm`` are
  dropped, and the classifier's ``head``/``fc_norm`` stay at their initialisation. This is the
  normal start of fine-tuning, so it works with strict=True; the report lists both sides.
* keys under prefixes the caller passes as ``fresh=`` (e.g. ``("head.",)`` to fine-tune a
  classifier on a new label set): dropped from the file, left at initialisation in the model.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from videomae2.checkpoint import arch
from videomae2.checkpoint.detect import detect_layout, unwrap
from videomae2.checkpoint.errors import CheckpointError, CheckpointMismatchError
from videomae2.checkpoint.io import (
    RawCheckpoint,
    read_checkpoint_file,
    save_hf_folder,
    save_safetensors,
    save_torch,
)
from videomae2.checkpoint.k710 import HeadIndex, load_head_index, select_head_rows
from videomae2.checkpoint.layouts import (
    LAYOUTS,
    ORIGINAL,
    ORIGINAL_PRETRAIN,
    PRETRAIN_LAYOUTS,
    TO_ORIGINAL,
    StateDict,
    has_layer_scale,
    internal_layout,
    is_sinusoid_table,
    layout_name,
    original_pretrain_to_hf,
    original_to_hf,
    original_to_mmaction2,
    pretrain_encoder,
)
from videomae2.models.layers import sinusoid_table

Source = str | os.PathLike | Mapping
TARGETS = ("safetensors", "mmaction2", "original", "hf")
# The original layout's container: the distilled release's {'module': sd} (spec §6); the
# original fine-tuning loader also looks under 'module', so such files load there unchanged.
ORIGINAL_CONTAINER = "module"


@dataclass
class SourceCheckpoint:
    """A checkpoint read and converted to internal (original-layout) names."""

    state_dict: StateDict
    layout: str  # the detected (or declared) source layout
    source: str
    container: str
    metadata: dict[str, str] | None = None
    hf_config: dict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def is_pretrain(self) -> bool:
        return self.layout in PRETRAIN_LAYOUTS


def read_checkpoint(source: Source, *, layout: str | None = None) -> SourceCheckpoint:
    """Read `source` (path, HF folder or dict), unwrap it and convert it to internal names.

    `layout` overrides detection (one of ``LAYOUTS``); normally leave it None.
    """
    if isinstance(source, Mapping):
        raw = RawCheckpoint(source, "<state dict>", "dict")
    else:
        raw = read_checkpoint_file(source)
    un = unwrap(raw.obj)
    if layout is not None and layout not in LAYOUTS:
        raise CheckpointError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    detected = layout or detect_layout(un.state_dict)
    notes = [f"container {un.container}"]
    if un.stripped_prefixes:
        notes.append(f"stripped key prefixes {', '.join(un.stripped_prefixes)}")
    if un.ignored:
        notes.append(f"ignored non-tensor entries {', '.join(un.ignored)}")
    sd = TO_ORIGINAL[detected](un.state_dict)
    return SourceCheckpoint(
        sd, detected, raw.source, un.container, raw.metadata, raw.hf_config, notes
    )


@dataclass
class LoadReport:
    """What `load_weights` did. Internal (original-layout) key names throughout."""

    source: str
    layout: str
    container: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model keys left at init, NOT intended
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys not used, NOT intended
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)  # model keys left at init on purpose
    dropped: list[str] = field(default_factory=list)  # checkpoint keys not used on purpose
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when nothing unintended happened (what strict=True guarantees)."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [
            f"loaded {len(self.loaded)} tensors from {self.source} (layout {self.layout})",
            *(f"  {n}" for n in self.notes),
        ]
        for title, items in (
            ("initialised fresh", self.fresh),
            ("dropped from the checkpoint", self.dropped),
            ("MISSING (random init)", self.missing),
            ("UNEXPECTED (unused)", self.unexpected),
            ("WRONG SHAPE (not loaded)", [f"{k} {e} vs {g}" for k, e, g in self.mismatched]),
        ):
            if items:
                shown = ", ".join(items[:12]) + (
                    f", ... {len(items) - 12} more" * (len(items) > 12)
                )
                lines.append(f"  {title} ({len(items)}): {shown}")
        return "\n".join(lines)


def _target(model: nn.Module) -> nn.Module:
    """The module whose state dict holds the original names (peel compile/DDP/Recognizer)."""
    from videomae2.models.recognizer import Recognizer

    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(model, Recognizer):
            model = model.model
        else:
            return model


def _check_pos_embed(
    sd: StateDict, keep: set[str], source: str, *, learned_ok: bool = False
) -> tuple[StateDict, list[str]]:
    """Drop stored position tables the model computes itself, after checking they are the table.

    A stored ``pos_embed`` that is NOT the sinusoid table means the file was trained with a
    learned table; silently ignoring it would change the model, so that is an error (or, with
    `learned_ok`, it is kept: conversion then builds a learnable-table config).
    """
    out = dict(sd)
    notes: list[str] = []
    for key in [k for k in sd if (k == "pos_embed" or k.endswith(".pos_embed")) and k not in keep]:
        t = out[key]
        if learned_ok and not is_sinusoid_table(t):
            notes.append(f"{key} {tuple(t.shape)} is a learned table; kept")
            continue
        del out[key]
        if not is_sinusoid_table(t):
            diff = "not a (1, N, D) table"
            if t.ndim == 3 and t.shape[0] == 1:
                ref = sinusoid_table(int(t.shape[1]), int(t.shape[2]))
                diff = f"max abs difference {(t.float() - ref).abs().max().item():.3g}"
            raise CheckpointError(
                f"{source}: {key} {tuple(t.shape)} is not the fixed sinusoid table ({diff}); "
                "the model computes its table and would ignore it. If the checkpoint uses a "
                "learned table, build the model with use_learnable_pos_emb=True."
            )
        notes.append(f"{key} {tuple(t.shape)} equals the sinusoid table; ignored (computed)")
    return out, notes


def _has(sd: Mapping[str, torch.Tensor], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in sd)


def _describe(layout: str, prefix: str):
    def name(key: str) -> str:
        other = layout_name(prefix + key, layout)
        return f"{key} ({layout}: {other})" if other and other != key else key

    return name


def load_weights(
    model: nn.Module,
    source: Source,
    strict: bool = True,
    *,
    head_index: HeadIndex | None = None,
    fresh: Sequence[str] = (),
    layout: str | None = None,
) -> LoadReport:
    """Load a checkpoint of any supported layout into `model`; return what was done.

    Args:
        model: a classifier or pretraining model of this package (also compiled, DDP-wrapped
            or inside a `Recognizer`).
        source: a ``.pth``/``.pt``/``.bin``/``.safetensors`` file, an HF folder
            (``config.json`` + ``model.safetensors``), or an in-memory state dict / container.
        strict: raise `CheckpointMismatchError` on any missing, unexpected or wrong-shape key.
            With False, load what fits, warn, and list the rest in the report.
        head_index: K710 label map (list or JSON file): the file's head becomes ``W[index]``.
        fresh: key prefixes of the model to leave at initialisation on purpose (their tensors
            in the file, if any, are dropped), e.g. ``("head.",)`` for a new label set.
        layout: skip detection (one of ``LAYOUTS``).
    """
    ck = read_checkpoint(source, layout=layout)
    return load_checkpoint(model, ck, strict, head_index=head_index, fresh=fresh)


def load_checkpoint(
    model: nn.Module,
    ck: SourceCheckpoint,
    strict: bool = True,
    *,
    head_index: HeadIndex | None = None,
    fresh: Sequence[str] = (),
) -> LoadReport:
    """`load_weights` for an already-read `SourceCheckpoint`."""
    target = _target(model)
    want = target.state_dict()
    report = LoadReport(ck.source, ck.layout, ck.container, notes=list(ck.notes))
    sd = ck.state_dict
    model_is_pretrain = any(k.startswith("encoder.") for k in want)
    prefix = ""  # how an internal model key is named in the source, for messages
    if ck.is_pretrain and not model_is_pretrain:
        sd, report.dropped = pretrain_encoder(sd, keep_norm="norm.weight" in want)
        # the classifier-only parts the encoder does not supply start fresh by design
        fresh = (*fresh, *(p for p in ("head.", "fc_norm.", "norm.") if not _has(sd, p)))
        prefix = "encoder."
        report.notes.append("pretraining checkpoint: its encoder is loaded into the classifier")
    fresh_prefixes = tuple(fresh)
    if fresh_prefixes:
        report.dropped += [k for k in sd if k.startswith(fresh_prefixes) and k in want]
        sd = {k: v for k, v in sd.items() if not (k.startswith(fresh_prefixes) and k in want)}
        report.fresh = [k for k in want if k.startswith(fresh_prefixes) and k not in sd]
    sd, notes = _check_pos_embed(sd, set(want), ck.source)
    report.notes += notes
    if head_index is not None:
        sd = select_head_rows(sd, head_index)
        report.notes.append(f"head rows selected by a {len(load_head_index(head_index))}-entry map")

    report.missing = [k for k in want if k not in sd and k not in report.fresh]
    report.unexpected = [k for k in sd if k not in want]
    report.mismatched = [
        (k, tuple(want[k].shape), tuple(v.shape))
        for k, v in sd.items()
        if k in want and v.shape != want[k].shape
    ]
    if strict and not report.complete:
        raise CheckpointMismatchError(
            source=ck.source,
            layout=ck.layout,
            missing=report.missing,
            unexpected=report.unexpected,
            mismatched=report.mismatched,
            describe=_describe(ck.layout, prefix),
        )
    bad = {k for k, _, _ in report.mismatched}
    loadable = {k: v for k, v in sd.items() if k in want and k not in bad}
    target.load_state_dict(loadable, strict=False)
    report.loaded = list(loadable)
    if not report.complete:
        warnings.warn(
            f"non-strict load of {ck.source}: {len(report.missing)} missing, "
            f"{len(report.unexpected)} unexpected, {len(report.mismatched)} wrong-shape keys "
            f"(see the returned report): missing {report.missing[:10]}",
            stacklevel=3,
        )
    return report


# -------------------------------------------------------------------------- writing / convert
@dataclass
class ConvertReport:
    """What `convert_checkpoint` read, inferred and wrote."""

    source: str
    layout: str
    to: str
    output: str
    model_name: str | None
    config: dict
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        shown = {
            k: self.config[k]
            for k in (
                "embed_dim",
                "depth",
                "num_heads",
                "patch_size",
                "num_frames",
                "img_size",
                "num_classes",
            )
            if k in self.config
        }
        return "\n".join(
            [
                f"read {self.source} (layout {self.layout})",
                f"architecture: {self.model_name or 'no registry match'} {shown}",
                *(f"  {n}" for n in self.notes),
                f"wrote {self.to}: {self.output}",
            ]
        )


def _metadata(family: str, name: str | None, cfg: Mapping, cfg_class: str) -> dict[str, str]:
    return {
        arch.META_LAYOUT: family,
        arch.META_MODEL: name or "",
        arch.META_CONFIG: json.dumps(dict(cfg), sort_keys=True),
        arch.META_CONFIG_CLASS: cfg_class,
    }


def _write(
    sd: StateDict,
    family: str,
    to: str,
    dst: str | os.PathLike,
    inferred: arch.Inferred,
    cfg_class: str,
) -> list[str]:
    """Write internal-layout `sd` as `to`; return notes about anything lossy."""
    notes: list[str] = []
    pretrain = family == ORIGINAL_PRETRAIN
    if to == "safetensors":
        save_safetensors(dst, sd, _metadata(family, inferred.name, inferred.config, cfg_class))
    elif to == "original":
        save_torch(dst, {ORIGINAL_CONTAINER: sd})
    elif to == "mmaction2":
        if pretrain:
            sd, dropped = pretrain_encoder(sd, keep_norm=False)
            notes.append(
                f"mmaction2 has no pretraining model: wrote the encoder as a headless backbone, "
                f"dropped {len(dropped)} tensors (decoder, encoder_to_decoder, mask_token, "
                "encoder.norm)"
            )
        save_torch(dst, original_to_mmaction2(sd))
    elif to == "hf":
        if has_layer_scale(sd):
            notes.append(
                "HF has no layer scale: gamma_1/gamma_2 were folded into the rows of "
                "attention.output.dense / output.dense (same function; gammas not recoverable)"
            )
        if pretrain:
            save_hf_folder(
                dst,
                original_pretrain_to_hf(sd, legacy_bias_names=True),
                arch.hf_pretrain_config(inferred.config),
            )
        else:
            save_hf_folder(
                dst, original_to_hf(sd, legacy_bias_names=True), arch.hf_config(inferred.config)
            )
        notes.append(
            "HF note: transformers builds fc_norm with eps 1e-5 (not configurable); set it to "
            "1e-6 after loading for exact logits"
        )
    else:
        raise CheckpointError(f"unknown output format {to!r}; choose one of {', '.join(TARGETS)}")
    return notes


def infer_architecture(
    sd: StateDict,
    family: str,
    *,
    metadata: Mapping[str, str] | None = None,
    hf_config: Mapping | None = None,
    model_name: str | None = None,
    num_heads: int | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
) -> tuple[arch.Inferred, str]:
    """(architecture, config class name) of an internal-layout dict of `family`."""
    overrides = model_name or num_heads or num_frames or img_size
    cls = (metadata or {}).get(arch.META_CONFIG_CLASS)
    if cls and arch.META_CONFIG in metadata and not overrides:
        cfg = json.loads(metadata[arch.META_CONFIG])
        note = "architecture from the file's videomae2 config metadata"
        return arch.Inferred(cfg, metadata.get(arch.META_MODEL) or None, [note]), cls
    grid = dict(
        model_name=model_name, num_heads=num_heads, num_frames=num_frames, img_size=img_size
    )
    if family == ORIGINAL_PRETRAIN:
        return arch.pretrain_dims(sd, hf_config=hf_config, **grid), "PretrainConfig"
    return arch.infer_vit_config(sd, hf_config=hf_config, **grid), "ViTConfig"


def convert_checkpoint(
    source: Source,
    dst: str | os.PathLike,
    to: str,
    *,
    model_name: str | None = None,
    head_index: HeadIndex | None = None,
    layout: str | None = None,
    num_heads: int | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
) -> ConvertReport:
    """Convert any supported checkpoint to `to` (one of ``TARGETS``) at `dst`.

    The architecture comes from the file's metadata, an HF config.json, or the tensor shapes
    (heads from the registry size of that width/depth, or `model_name` / `num_heads`). The
    tensors are checked one by one against a model of that config (built on the meta device)
    before anything is written, so the output is known to load strictly.
    """
    if to not in TARGETS:
        raise CheckpointError(f"unknown output format {to!r}; choose one of {', '.join(TARGETS)}")
    ck = read_checkpoint(source, layout=layout)
    family = internal_layout(ck.layout)
    sd, notes = _check_pos_embed(ck.state_dict, set(), ck.source, learned_ok=True)
    notes = ck.notes + notes
    if head_index is not None:
        if family != ORIGINAL:
            raise CheckpointError("--head-map applies to classifiers; this is a pretraining file")
        sd = select_head_rows(sd, head_index)
        notes.append(f"head rows selected by a {len(load_head_index(head_index))}-entry map")
    inferred, cfg_class = infer_architecture(
        sd,
        family,
        metadata=ck.metadata,
        hf_config=ck.hf_config,
        model_name=model_name,
        num_heads=num_heads,
        num_frames=num_frames,
        img_size=img_size,
    )
    if cfg_class == "ViTConfig":  # the head may have been re-mapped
        inferred.config["num_classes"] = (
            int(sd["head.weight"].shape[0]) if "head.weight" in sd else 0
        )
    arch.check_against_config(
        sd, inferred.config, source=ck.source, layout=ck.layout, cfg_class=cfg_class
    )
    notes += inferred.notes
    notes += _write(sd, family, to, dst, inferred, cfg_class)
    return ConvertReport(
        ck.source, ck.layout, to, str(dst), inferred.name, dict(inferred.config), notes
    )


def save_weights(model: nn.Module, path: str | os.PathLike, *, to: str = "safetensors") -> None:
    """Save `model`'s weights as `to` (one of ``TARGETS``; default safetensors + config).

    The safetensors file records the model's config (``model.config.to_dict()``) and registry
    name in its metadata, so `load_model(path)` rebuilds the same model with no other argument.
    """
    target = _target(model)
    sd = {k: v.detach().cpu() for k, v in target.state_dict().items()}
    family = ORIGINAL_PRETRAIN if _has(sd, "encoder.") else ORIGINAL
    config = getattr(target, "config", None)
    grid = {k: getattr(config, k, None) for k in ("num_frames", "img_size")}
    if config is not None and hasattr(config, "to_dict"):
        # The model's own config is the architecture; shapes only name the registry size, and a
        # width outside the registry (no head count to guess) has no name rather than no file.
        try:
            name = infer_architecture(sd, family, **grid)[0].name
        except CheckpointError:
            name = None
        inferred, cfg_class = arch.Inferred(config.to_dict(), name), type(config).__name__
    else:
        inferred, cfg_class = infer_architecture(sd, family, **grid)
    _write(sd, family, to, path, inferred, cfg_class)


def load_model(
    source: str | os.PathLike,
    *,
    model_name: str | None = None,
    strict: bool = True,
    num_heads: int | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
) -> nn.Module:
    """Build the model a checkpoint describes and load it strictly (returned in eval mode).

    A safetensors file written by `save_weights` or ``convert --to safetensors`` needs nothing
    else. Other files: the architecture is inferred as in `convert_checkpoint`.
    """
    ck = read_checkpoint(source)
    sd, _ = _check_pos_embed(ck.state_dict, set(), ck.source, learned_ok=True)
    inferred, cfg_class = infer_architecture(
        sd,
        internal_layout(ck.layout),
        metadata=ck.metadata,
        hf_config=ck.hf_config,
        model_name=model_name,
        num_heads=num_heads,
        num_frames=num_frames,
        img_size=img_size,
    )
    model = arch.build_model(inferred.config, cfg_class)
    load_checkpoint(model, ck, strict)
    return model.eval()


__all__ = [
    "TARGETS",
    "ConvertReport",
    "LoadReport",
    "SourceCheckpoint",
    "convert_checkpoint",
    "infer_architecture",
    "load_checkpoint",
    "load_model",
    "load_weights",
    "read_checkpoint",
    "save_weights",
]
