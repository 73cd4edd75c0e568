"""Training plumbing shared by the training jobs (pretraining, fine-tuning, distillation).

* checkpoints: atomic writes (temp file + `os.replace`), `checkpoint-{step:08d}.pth` names,
  auto-resume from the latest one, loading with `weights_only=True` only (so RNG states are
  tensors and configs are plain dicts / JSON strings);
* RNG state capture / restore;
* CSV logging (the console line is `videomae2.progress.Progress`);
* precision selection and autocast, gradient clipping and accumulation helpers.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videomae2.checkpoint.io import save_torch
from videomae2.data.decode import FrameCache, open_video, read_frames

CKPT_PATTERN = re.compile(r"^checkpoint-(\d+)\.pth$")

# ------------------------------------------------------------------------------- checkpoints


def checkpoint_path(work_dir: str | os.PathLike, step: int) -> Path:
    """`work_dir/checkpoint-{step:08d}.pth` (zero-padded so names sort by step)."""
    return Path(work_dir) / f"checkpoint-{step:08d}.pth"


def list_checkpoints(work_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """`(step, path)` of every `checkpoint-N.pth` in `work_dir`, by ascending step."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return []
    found = []
    for p in work_dir.iterdir():
        m = CKPT_PATTERN.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(work_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(work_dir)
    return found[-1][1] if found else None


def save_checkpoint(obj: dict, path: str | os.PathLike) -> None:
    """`torch.save` to a temporary file in the same folder, then `os.replace`: a crash mid-write
    leaves the previous checkpoint intact and never a truncated file under the final name.

    `obj` must hold only tensors, plain containers and plain values (readable weights_only).
    """
    save_torch(path, obj)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """`torch.load(..., weights_only=True)` on the CPU: no pickled code is ever executed."""
    return torch.load(path, map_location="cpu", weights_only=True)


def prune_checkpoints(
    work_dir: str | os.PathLike, keep_last: int, keep: Iterable[int] = ()
) -> None:
    """Delete all but the newest `keep_last` checkpoints (0 keeps all), except steps in `keep`."""
    if keep_last <= 0:
        return
    protected = set(keep)
    for step, path in list_checkpoints(work_dir)[:-keep_last]:
        if step not in protected:
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------- RNG


def capture_rng_state() -> dict[str, torch.Tensor]:
    """The global torch RNG states (CPU and every CUDA device) as uint8 tensors.

    Data randomness in this project comes from explicit per-item generators and needs no state;
    the global generators still drive drop path and dropout.
    """
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        states = list(state["cuda"])
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


# ------------------------------------------------------------------------------------ logging


class CSVLogger:
    """Append rows to a CSV file with a fixed header.

    On resume (`resume_step` given) rows past that step, written by the interrupted run after
    its last checkpoint, are dropped so the log matches an uninterrupted run.
    """

    def __init__(
        self, path: str | os.PathLike, fields: list[str], resume_step: int | None = None
    ) -> None:
        self.path = Path(path)
        self.fields = list(fields)
        rows: list[dict] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(rows)

    def log(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields).writerow(row)


# ---------------------------------------------------------------------------------- precision

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | bf16 | fp16
    dtype: torch.dtype | None  # autocast dtype, None = no autocast
    use_scaler: bool  # fp16 needs a dynamic loss scaler


def select_precision(requested: str, device: torch.device) -> Precision:
    """'auto': bf16 on a GPU that supports it, fp16 + loss scaler on an older GPU, fp32 on CPU.

    CPU bf16 autocast is available on request ('bf16'); fp16 is CUDA-only.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    cuda = device.type == "cuda"
    if requested == "auto":
        if not cuda:
            requested = "fp32"
        else:
            requested = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested == "fp16" and not cuda:
        raise ValueError("fp16 training needs CUDA; use bf16 or fp32 on the CPU")
    if requested == "bf16":
        return Precision("bf16", torch.bfloat16, False)
    if requested == "fp16":
        return Precision("fp16", torch.float16, True)
    return Precision("fp32", None, False)


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    if precision.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.dtype)


def grad_scaler(device: torch.device, precision: Precision) -> torch.amp.GradScaler:
    """A dynamic loss scaler, disabled (a pass-through) unless the precision needs one."""
    return torch.amp.GradScaler(device.type, enabled=precision.use_scaler)


# ------------------------------------------------------------------------ gradient helpers


def grad_norm_and_clip(params: Iterable[torch.Tensor], max_norm: float | None) -> torch.Tensor:
    """Total L2 norm of the gradients (logged every step); clipped to `max_norm` when set."""
    params = [p for p in params if p.grad is not None]
    if max_norm is not None and max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor
        norm = norm.full_tensor()
    return norm


@contextlib.contextmanager
def maybe_no_sync(model: nn.Module, sync: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on accumulation micro-steps (DDP `no_sync`, FSDP2 flag)."""
    if sync:
        yield
    elif hasattr(model, "no_sync"):  # DDP
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    params: Iterable[torch.Tensor],
    clip_grad: float | None,
) -> float:
    """Unscale -> grad norm (+ clip) -> step -> scaler update -> zero grads; returns the norm.

    With an fp16 scaler a non-finite gradient skips the step (the scaler's normal behaviour) and
    the returned norm is inf/nan.
    """
    scaler.unscale_(optimizer)
    norm = grad_norm_and_clip(params, clip_grad)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def check_finite(loss: float, step: int) -> None:
    """Stop with a clear message instead of training on a non-finite loss."""
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"loss is {loss} at step {step}: stopping. Lower the learning rate, enable gradient "
            "clipping (optim.clip_grad) or use bf16/fp32; the last checkpoint is intact."
        )


def video_readers(
    paths: Iterable[str], cache_mb: int, backend: str = "pyav"
) -> dict[str, Callable[..., Any]]:
    """`info_fn` / `reader` for a training dataset: the decoder, or, when `cache_mb` > 0, a
    `FrameCache` filled here with `paths` (once each, within that budget) so workers read memory."""
    if cache_mb <= 0:
        return dict(
            info_fn=partial(open_video, backend=backend),
            reader=partial(read_frames, backend=backend),
        )
    cache = FrameCache(backend)
    n = cache.fill(list(dict.fromkeys(paths)), cache_mb << 20)
    print(f"frame cache: {n} videos, {cache.nbytes / 2**20:.0f} MiB")
    return dict(info_fn=cache.info, reader=cache.read)
