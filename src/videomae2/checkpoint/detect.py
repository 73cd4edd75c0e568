"""Container unwrapping and layout detection (spec/model.md §6, loader rules 1-3).

Checkpoints in the wild nest the tensors under ``state_dict`` (mmaction2), ``model`` (original
native saves, training checkpoints) or ``module`` (DeepSpeed, the distilled release) and prefix
keys with ``module.`` (DDP) or ``_orig_mod.`` (torch.compile). These are wrappers, not layouts:
they are peeled off here so the layout tables only deal with real parameter names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from videomae2.checkpoint.errors import CheckpointError
from videomae2.checkpoint.layouts import (
    HF,
    HF_PRETRAIN,
    MMACTION2,
    ORIGINAL,
    ORIGINAL_PRETRAIN,
)

CONTAINER_KEYS = ("state_dict", "model", "module")
KEY_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class Unwrapped:
    """A flat tensor dict plus how it was found (for reports and error messages)."""

    state_dict: dict[str, torch.Tensor]
    container: str = "flat"  # e.g. "['model']" or "['model']['module']"
    stripped_prefixes: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # non-tensor entries left out


def _strip(key: str, stripped: set[str]) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in KEY_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                stripped.add(prefix)
                changed = True
    return key


def unwrap(obj: object) -> Unwrapped:
    """Peel containers and wrapper prefixes off a loaded checkpoint object.

    Rule: take the first present of ``state_dict``, ``model``, ``module`` whose value is a dict,
    repeatedly (a training checkpoint's ``model`` may itself hold ``module``); then strip leading
    ``module.`` / ``_orig_mod.`` from every key. Non-tensor entries (e.g. an mmaction2 ``meta``)
    are left out and listed. A ``model.`` prefix on EVERY key (OpenGVLab's remote-code files) is
    stripped too, since no layout has a top-level module named ``model``.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"expected a dict of tensors, got {type(obj).__name__}")
    path = ""
    while True:
        inner = next((k for k in CONTAINER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            break
        path += f"[{inner!r}]"
        obj = obj[inner]
    stripped: set[str] = set()
    sd: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            ignored.append(str(key))
            continue
        new = _strip(str(key), stripped)
        if new in sd:
            raise CheckpointError(f"key {new!r} appears twice after stripping wrapper prefixes")
        sd[new] = value
    if sd and all(k.startswith("model.") for k in sd):
        sd = {k[len("model.") :]: v for k, v in sd.items()}
        stripped.add("model.")
    if not sd:
        raise CheckpointError(f"no tensors found in the checkpoint container {path or 'flat'}")
    return Unwrapped(sd, path or "flat", sorted(stripped), ignored)


def detect_layout(keys: object) -> str:
    """Name the layout of a flat state dict from its key names (loader rule 3)."""
    keys = list(keys)
    has = lambda *prefixes: any(k.startswith(prefixes) for k in keys)  # noqa: E731
    if has("backbone.", "cls_head."):
        return MMACTION2
    if has("videomae."):
        if has("decoder.decoder_layers.", "encoder_to_decoder.") or "mask_token" in keys:
            return HF_PRETRAIN
        return HF
    if has("embeddings.patch_embeddings.", "encoder.layer."):
        return HF  # a bare VideoMAEModel: the converter adds the "videomae." prefix
    if has("encoder.blocks.", "encoder.patch_embed.", "decoder.blocks."):
        return ORIGINAL_PRETRAIN
    if has("blocks.", "patch_embed.", "fc_norm.", "head."):
        return ORIGINAL
    if has("classifier."):
        return HF
    sample = ", ".join(sorted(keys)[:8])
    raise CheckpointError(
        "cannot tell the checkpoint layout (expected mmaction2 'backbone.'/'cls_head.', "
        f"HF 'videomae.', or original 'blocks.'/'encoder.blocks.' keys); first keys: {sample}"
    )
