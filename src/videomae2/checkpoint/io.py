"""Safe checkpoint reading and atomic writing.

Reading never executes pickled code: ``torch.load(weights_only=True)`` or safetensors only.
``argparse.Namespace`` is the one class allowed beyond torch's defaults, because the original
training checkpoints store their ``args`` that way and it only carries plain attributes.

Writing goes to a temporary file in the destination folder and is moved into place with
``os.replace``, so an interrupted conversion never leaves a truncated file under the final name.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from videomae2.checkpoint.errors import CheckpointError

HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
HF_INDEX = "model.safetensors.index.json"
HF_TORCH_WEIGHTS = "pytorch_model.bin"

PathLike = str | os.PathLike


@dataclass
class RawCheckpoint:
    """What a path held, before unwrapping: the object and any side information."""

    obj: object
    source: str
    format: str  # "safetensors", "torch" or "hf-folder"
    metadata: dict[str, str] | None = None  # safetensors header metadata
    hf_config: dict | None = None  # config.json of an HF folder


def _torch_load(path: Path) -> object:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to unpickle non-weight objects (weights_only=True): {e}. "
            "Only tensors, containers and plain values are read; re-save the state dict alone."
        ) from e


def _safetensors_load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
    return load_file(str(path), device="cpu"), metadata


def _read_hf_folder(folder: Path) -> RawCheckpoint:
    config = None
    if (folder / HF_CONFIG).is_file():
        config = json.loads((folder / HF_CONFIG).read_text())
    metadata: dict[str, str] | None = None
    if (folder / HF_WEIGHTS).is_file():
        sd, metadata = _safetensors_load(folder / HF_WEIGHTS)
    elif (folder / HF_INDEX).is_file():
        index = json.loads((folder / HF_INDEX).read_text())
        sd = {}
        for shard in sorted(set(index["weight_map"].values())):
            sd.update(_safetensors_load(folder / shard)[0])
    elif (folder / HF_TORCH_WEIGHTS).is_file():
        sd = _torch_load(folder / HF_TORCH_WEIGHTS)
    else:
        raise FileNotFoundError(
            f"{folder}: no {HF_WEIGHTS}, {HF_INDEX} or {HF_TORCH_WEIGHTS} in this folder"
        )
    return RawCheckpoint(sd, str(folder), "hf-folder", metadata, config)


def _looks_like_safetensors(path: Path) -> bool:
    # 8-byte little-endian header length, then the JSON header; torch files are zip ("PK").
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1


def read_checkpoint_file(path: PathLike) -> RawCheckpoint:
    """Read a ``.safetensors`` file, a torch file (``.pth``/``.pt``/``.bin``…) or an HF folder."""
    p = Path(path)
    if p.is_dir():
        return _read_hf_folder(p)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    if p.suffix == ".safetensors" or _looks_like_safetensors(p):
        sd, metadata = _safetensors_load(p)
        return RawCheckpoint(sd, str(p), "safetensors", metadata)
    return RawCheckpoint(_torch_load(p), str(p), "torch")


def atomic_write(path: PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temp file next to `path`, then ``os.replace`` it into place."""
    dst = Path(path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _unshared(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share storage (views); give each its own contiguous copy.
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in sd.items():
        t = value.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if t.numel() and ptr in seen:
            t = t.clone()
            ptr = t.untyped_storage().data_ptr()
        seen.add(ptr)
        out[key] = t
    return out


def save_safetensors(
    path: PathLike, sd: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Write a flat tensor dict as safetensors; `metadata` values must be strings."""
    meta = {"format": "pt", **(metadata or {})}
    tensors = _unshared(sd)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def save_torch(path: PathLike, obj: object) -> None:
    """``torch.save`` atomically (plain containers of tensors only, readable weights_only)."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_hf_folder(folder: PathLike, sd: Mapping[str, torch.Tensor], config: Mapping) -> None:
    """An HF model folder: ``config.json`` + ``model.safetensors`` (as ``save_pretrained``)."""
    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise CheckpointError(f"{d} exists and is not a folder; HF output is a folder")
    d.mkdir(parents=True, exist_ok=True)
    save_safetensors(d / HF_WEIGHTS, sd)
    text = json.dumps(dict(config), indent=2, sort_keys=True) + "\n"
    atomic_write(d / HF_CONFIG, lambda tmp: Path(tmp).write_text(text))
