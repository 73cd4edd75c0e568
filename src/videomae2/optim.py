"""Optimizer parameter groups and learning-rate schedules (pretraining.md §8,
finetune-distill.md §2.1-2.3), shared by pretraining and fine-tuning.

* `param_groups`: weight decay 0 for 1-D tensors, `.bias`/`.scale` names and a skip list;
  optional layer-wise lr decay with a per-group `lr_scale`.
* `cosine_schedule`: the per-iteration schedule, linear warmup from 0 then half-cosine to min.
* `scale_lr`: the linear scaling rule (num_sample is not counted).
* `set_lr`: group lr = schedule value × the group's `lr_scale`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

# Prefixes that wrappers/containers add in front of the backbone's own parameter names.
_WRAPPER_PREFIXES = ("_orig_mod.", "module.", "encoder.", "backbone.")
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def _strip_prefixes(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name


def vit_layer_id(name: str, num_layers: int) -> int:
    """Layer id for layer decay (finetune-distill.md §2.1).

    `pos_embed`, `cls_token`, `mask_token`, `patch_embed.*` -> 0; `blocks.i.*` -> i + 1;
    everything else (`fc_norm`, `head`, `norm`, a pretraining decoder) -> `num_layers + 1`.
    Wrapper prefixes (`module.`, `_orig_mod.`, `encoder.`, `backbone.`) are ignored, so
    `decoder.blocks.j` stays in the top group while `encoder.blocks.i` gets i + 1.
    """
    base = _strip_prefixes(name)
    if base in ("pos_embed", "cls_token", "mask_token") or base.startswith("patch_embed."):
        return 0
    match = _BLOCK.match(base)
    if match:
        return int(match.group(1)) + 1
    return num_layers + 1


def no_decay(name: str, param: torch.Tensor, skip_list: Iterable[str] = ()) -> bool:
    """True when the original gives this parameter weight decay 0.

    Every 1-D tensor (norms, biases, q/v biases, layer-scale gammas), names ending `.bias` or
    `.scale`, and skip-list names. A skip-list entry matches the full name or the name without
    wrapper prefixes, so `_orig_mod.mask_token` is still skipped (the original's compiled-model
    quirk of decaying it is deliberately not reproduced).
    """
    skip = set(skip_list)
    return (
        param.ndim <= 1
        or name.endswith(".bias")
        or name.endswith(".scale")
        or name in skip
        or _strip_prefixes(name) in skip
    )


def param_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    skip_list: Iterable[str] | None = None,
    layer_decay: float = 1.0,
    num_layers: int | None = None,
    layer_id: Callable[[str, int], int] = vit_layer_id,
) -> list[dict]:
    """AdamW groups: {params, weight_decay, lr_scale, group_name}.

    `skip_list` defaults to `model.no_weight_decay()` when the model has it. Layer decay applies
    only when `layer_decay < 1`: `lr_scale = layer_decay ** (num_layers + 1 - layer_id)`
    (`num_layers` defaults to `len(model.blocks)` or `len(model.encoder.blocks)`). Frozen
    parameters are left out. Groups come out in first-seen order, so the optimizer state layout
    is deterministic.
    """
    if skip_list is None:
        skip_list = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    skip = set(skip_list)
    use_ld = layer_decay < 1.0
    if use_ld and num_layers is None:
        holder = getattr(model, "encoder", model)
        if not hasattr(holder, "blocks"):
            raise ValueError("layer decay needs num_layers for a model without `.blocks`")
        num_layers = len(holder.blocks)
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = not no_decay(name, param, skip)
        lid = layer_id(name, num_layers) if use_ld else 0
        key = f"layer_{lid}_{'decay' if decay else 'no_decay'}"
        if key not in groups:
            scale = layer_decay ** (num_layers + 1 - lid) if use_ld else 1.0
            groups[key] = dict(
                params=[],
                weight_decay=weight_decay if decay else 0.0,
                lr_scale=scale,
                group_name=key,
            )
        groups[key]["params"].append(param)
    return list(groups.values())


def scale_lr(base_lr: float, batch_size: int, world_size: int = 1, accum_steps: int = 1) -> float:
    """Linear scaling rule: `base · batch_size · accum_steps · world_size / 256`.

    `batch_size` is clips per device before repeated augmentation (num_sample is not counted).
    """
    return base_lr * batch_size * accum_steps * world_size / 256


def cosine_schedule(
    peak: float,
    final: float,
    total_steps: int,
    warmup_steps: int = 0,
    start_warmup: float = 0.0,
) -> np.ndarray:
    """Per-iteration values, `(total_steps,)` float64.

    Warmup `linspace(start_warmup, peak, warmup_steps)` (endpoint included, so the last warmup
    step already equals `peak`), then `final + ½(peak − final)(1 + cos(π·i/I))` for
    i = 0..I−1, I = total_steps − warmup_steps (its first value is `peak` again, as the original).
    """
    if total_steps < 0 or warmup_steps < 0:
        raise ValueError(f"steps must be >= 0, got total {total_steps}, warmup {warmup_steps}")
    warmup_steps = min(warmup_steps, total_steps)
    warm = np.linspace(start_warmup, peak, warmup_steps)
    rest = total_steps - warmup_steps
    i = np.arange(rest)
    cos = np.array([final + 0.5 * (peak - final) * (1 + math.cos(math.pi * k / rest)) for k in i])
    return np.concatenate([warm, cos.astype(np.float64)]) if rest else warm


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr to `lr × lr_scale` (scale 1 for groups without one)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def build_adamw(
    groups: list[dict],
    lr: float,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over `param_groups` output (extra group keys are kept for logging and `set_lr`).

    `fused=None` picks PyTorch's fused kernel when every parameter is a plain floating tensor on
    the CPU or a GPU: one pass per parameter instead of a dozen elementwise ops. Measured on ViT-B
    pretraining's 94 M parameters, 2 CPU threads: 0.073 s per step against 0.24 s for the default
    (for-loop) and 0.33 s for foreach, i.e. 14% of a whole fp32 step and 25% of a bf16 one. The
    update is the same formula; values agree to float rounding (tested). Sharded (DTensor)
    parameters keep PyTorch's default.
    """
    if fused is None:
        fused = _fused_adamw_applies(groups)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)


def _fused_adamw_applies(groups: list[dict]) -> bool:
    from torch.distributed.tensor import DTensor

    params = [p for g in groups for p in g["params"]]
    return bool(params) and all(
        not isinstance(p, DTensor) and p.is_floating_point() and p.device.type in ("cpu", "cuda")
        for p in params
    )
