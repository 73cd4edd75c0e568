"""Training losses as pure functions.

`pretrain_loss` is the VideoMAE V2 normalised-pixel reconstruction loss (spec pretraining.md §4).
Shape legend: B batch, C=3, T frames, H/W pixels, p patch, N tokens (t, h, w order),
K = tubelet·p·p pixels per token, P = K·C predicted values per token, N_dec decoded tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# ImageNet statistics on the [0, 1] scale: the pretraining input normalisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def patchify(videos: torch.Tensor, patch_size: int, tubelet_size: int) -> torch.Tensor:
    """`(B, C, T, H, W)` -> `(B, N, K, C)`: pixels of each token ordered (dt, dy, dx)."""
    B, C, T, H, W = videos.shape
    p, u = patch_size, tubelet_size
    x = videos.reshape(B, C, T // u, u, H // p, p, W // p, p)  # (B, C, T', u, H', p, W', p)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # (B, T', H', W', u, p, p, C)
    return x.reshape(B, (T // u) * (H // p) * (W // p), u * p * p, C)  # (B, N, K, C)


@torch.no_grad()
def pretrain_targets(
    videos: torch.Tensor,
    *,
    patch_size: int = 16,
    tubelet_size: int = 2,
    normalize_target: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Regression targets for every token, `(B, N, P)` float32, channel-fastest features.

    Un-normalises the model input back to [0, 1], then (default) standardises each token's
    pixels per channel: `(v − mean) / (sqrt(unbiased var) + 1e-6)`. Feature index
    `((dt·p + dy)·p + dx)·3 + c`. The original hard-codes a temporal extent of 2 here; this takes
    `tubelet_size` (2 for every released model) so the target always matches the head width.
    """
    x = videos.float()
    shape = (1, -1, 1, 1, 1)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(shape)
    x = patchify(x * s + m, patch_size, tubelet_size)  # (B, N, K, C), [0, 1] pixels
    if normalize_target:
        mu = x.mean(dim=-2, keepdim=True)  # (B, N, 1, C)
        sd = x.var(dim=-2, unbiased=True, keepdim=True).sqrt()
        x = (x - mu) / (sd + 1e-6)  # eps on the std, not the variance
    return x.flatten(2)  # (B, N, K·C)


def pretrain_loss(
    videos: torch.Tensor,
    pred: torch.Tensor,
    mask: torch.Tensor,
    decode_mask: torch.Tensor | None = None,
    *,
    patch_size: int = 16,
    tubelet_size: int = 2,
    normalize_target: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Mean squared error over tokens hidden from the encoder AND decoded, batch-pooled.

    `videos (B, 3, T, H, W)` the normalised model input; `pred (B, N_dec, P)` the model output;
    `mask (B, N)` True = hidden from the encoder; `decode_mask (B, N)` True = not decoded
    (None = v1: decode every hidden token). Per token the squared error is averaged over its P
    values; the loss is `Σ(l·lm) / Σ(lm)` over the whole batch (not a mean of per-sample means).
    Computed in float32 whatever the autocast dtype of `pred`.
    """
    mask = mask.to(device=pred.device, dtype=torch.bool)
    decode_vis = mask if decode_mask is None else ~decode_mask.to(pred.device, torch.bool)
    B, n_dec, P = pred.shape
    target = pretrain_targets(
        videos,
        patch_size=patch_size,
        tubelet_size=tubelet_size,
        normalize_target=normalize_target,
        mean=mean,
        std=std,
    )  # (B, N, P)
    if target.shape[-1] != P:
        raise ValueError(f"prediction width {P} != target width {target.shape[-1]}")
    labels = target[decode_vis].reshape(B, n_dec, P)  # same ascending order as the mask tokens
    per_token = (pred.float() - labels).pow(2).mean(dim=-1)  # (B, N_dec)
    in_loss = mask[decode_vis].reshape(B, n_dec).float()  # (B, N_dec) hidden and decoded
    return (per_token * in_loss).sum() / in_loss.sum()
