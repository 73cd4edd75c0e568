"""Backbone + head + input normalisation + multi-view aggregation (mmaction2's Recognizer3D).

Shape legend: B videos, V views per video (clips x crops), C=3, T frames, H/W pixels, K classes.
`(B, V, 3, T, H, W)` uint8 in, `(B, K)` scores out ('prob' / 'score') or `(B, V, K)` (None).
"""

from __future__ import annotations

import torch
from torch import nn

# mmaction2's ActionDataPreprocessor constants: ImageNet mean/std on the 0-255 scale, RGB.
MMACTION_MEAN = (123.675, 116.28, 103.53)
MMACTION_STD = (58.395, 57.12, 57.375)
AVERAGE_CLIPS = ("prob", "score", None)


def aggregate_views(logits: torch.Tensor, average_clips: str | None) -> torch.Tensor:
    """`(B, V, K)` logits -> `(B, K)`: 'prob' = mean of per-view softmax, 'score' = mean logit."""
    if average_clips == "prob":
        return logits.softmax(dim=-1).mean(dim=1)
    if average_clips == "score":
        return logits.mean(dim=1)
    if average_clips is None:
        return logits
    raise ValueError(f"average_clips must be one of {AVERAGE_CLIPS}, got {average_clips!r}")


def cast_matmul_weights(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Store every Linear and Conv weight and bias in `dtype`, in place; returns `model`.

    For inference under `torch.autocast(..., dtype=dtype)`, which otherwise re-casts the fp32
    weights in every forward (a read and a write of all of them: measured 5-10% of a bf16 ViT-S/B
    forward on a CPU). Results are those of plain autocast, which rounds the weights the same way.
    Norm weights and the q/v biases stay fp32 (tiny; norms take them in fp32 anyway). State-dict
    keys and shapes are unchanged, only these dtypes.
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv3d)):
            module.to(dtype)
    return model


class Recognizer(nn.Module):
    """Wraps a classifier so raw uint8 views go in and aggregated class scores come out.

    `max_views_per_forward` bounds how many views go through the backbone at once (memory);
    results do not depend on it. `autocast_dtype` (e.g. `torch.bfloat16`) runs the backbone under
    autocast to that dtype (opt-in: faster, logits differ at the 1e-2 level); pair it with
    `cast_matmul_weights` to skip the per-forward weight casts.
    """

    def __init__(
        self,
        model: nn.Module,
        mean: tuple[float, float, float] = MMACTION_MEAN,
        std: tuple[float, float, float] = MMACTION_STD,
        average_clips: str | None = "prob",
        max_views_per_forward: int | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if average_clips not in AVERAGE_CLIPS:
            raise ValueError(f"average_clips must be one of {AVERAGE_CLIPS}, got {average_clips!r}")
        self.model = model
        self.average_clips = average_clips
        self.max_views_per_forward = max_views_per_forward
        self.autocast_dtype = autocast_dtype
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1, 1), persistent=False)

    def normalize(self, views: torch.Tensor) -> torch.Tensor:
        """uint8 `(..., 3, T, H, W)` -> float32 `(x - mean) / std`, 0-255 scale (bit-exact)."""
        return (views.float() - self.mean) / self.std

    def view_logits(self, views: torch.Tensor) -> torch.Tensor:
        """`(B, V, 3, T, H, W)` uint8 -> per-view logits `(B, V, K)` in float32."""
        B, V = views.shape[:2]
        flat = views.flatten(0, 1)  # (B*V, 3, T, H, W)
        step = self.max_views_per_forward or flat.shape[0]
        chunks = [
            self.backbone(self.normalize(flat[i : i + step])) for i in range(0, flat.shape[0], step)
        ]
        return torch.cat(chunks).view(B, V, -1)

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised `(N, 3, T, H, W)` -> float32 logits `(N, K)`, under autocast if asked."""
        dtype = self.autocast_dtype
        if dtype is None:  # no context at all: an `enabled=False` one would undo the caller's
            return self.model(x).float()
        with torch.autocast(x.device.type, dtype=dtype):
            return self.model(x).float()

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        return aggregate_views(self.view_logits(views), self.average_clips)
