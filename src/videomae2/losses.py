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


# ----------------------------------------------------------------------------------------------
# Classification and distillation (finetune-distill.md §2.4, §8). Shape legend: B clips,
# K classes, Ds / Dt student / teacher feature widths. Everything is computed in float32.


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``mean_b Σ_k −targets[b, k] · log_softmax(logits)[b, k]`` for soft targets ``(B, K)``.

    The loss of mixup/cutmix with label smoothing folded into the targets.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(targets.float() * logp).sum(dim=-1).mean()


def label_smoothing_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.1
) -> torch.Tensor:
    """Cross entropy against ``(1 − s)·onehot + s/K``, batch mean (no mixing)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    nll = -logp.gather(1, labels.view(-1, 1)).squeeze(1)
    return ((1.0 - smoothing) * nll - smoothing * logp.mean(dim=-1)).mean()


def teacher_soft_targets(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(teacher_logits / T)`` in float32: the distribution the student matches."""
    return torch.softmax(teacher_logits.float() / temperature, dim=-1)


def kd_kl_loss(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T² · KL(p_teacher ‖ softmax(student / T))``, summed over classes, batch mean.

    The T² factor keeps the gradient scale independent of T (Hinton et al. 2015), so the weight
    against the label loss means the same thing at any temperature. Zero teacher
    probabilities contribute 0 (``xlogy``).
    """
    p = teacher_probs.float()
    logq = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    kl = (torch.xlogy(p, p) - p * logq).sum(dim=-1)  # (B,)
    return kl.mean() * temperature**2


def feature_distill_loss(
    student_feats: torch.Tensor, teacher_feats: torch.Tensor, kind: str = "smooth_l1"
) -> torch.Tensor:
    """Student features (already projected to the teacher width) vs teacher features ``(B, Dt)``.

    ``smooth_l1``: element mean of the Huber loss (beta 1); ``cosine``: mean of ``1 − cos``.
    """
    s, t = student_feats.float(), teacher_feats.float()
    if s.shape != t.shape:
        raise ValueError(
            f"feature shapes differ: student {tuple(s.shape)}, teacher {tuple(t.shape)}"
        )
    if kind == "smooth_l1":
        return torch.nn.functional.smooth_l1_loss(s, t, beta=1.0)
    if kind == "cosine":
        return (1.0 - torch.nn.functional.cosine_similarity(s, t, dim=-1)).mean()
    raise ValueError(f"feature loss must be smooth_l1 or cosine, got {kind!r}")


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    kd_weight: float = 1.0,
    ce_weight: float = 0.0,
    student_feats: torch.Tensor | None = None,
    teacher_feats: torch.Tensor | None = None,
    feat_weight: float = 0.0,
    feat_loss: str = "smooth_l1",
) -> tuple[torch.Tensor, dict[str, float]]:
    """``kd_weight · T²·KL + ce_weight · CE(targets) + feat_weight · feature loss``.

    ``teacher_probs (B, K)`` is :func:`teacher_soft_targets` of the teacher's logits (or a
    mixture of such distributions); ``targets (B, K)`` soft labels (smoothed / mixed one-hots).
    Terms with weight 0 are skipped. Returns the loss and each term's value for logging.
    """
    total = student_logits.new_zeros((), dtype=torch.float32)
    parts: dict[str, float] = {}
    if kd_weight:
        kd = kd_kl_loss(student_logits, teacher_probs, temperature)
        total = total + kd_weight * kd
        parts["kd"] = float(kd.detach())
    if ce_weight:
        ce = soft_target_cross_entropy(student_logits, targets)
        total = total + ce_weight * ce
        parts["ce"] = float(ce.detach())
    if feat_weight:
        if student_feats is None or teacher_feats is None:
            raise ValueError("feat_weight > 0 needs student_feats and teacher_feats")
        feat = feature_distill_loss(student_feats, teacher_feats, feat_loss)
        total = total + feat_weight * feat
        parts["feat"] = float(feat.detach())
    return total, parts
