"""Fine-tuning augmentation for video clips: pure functions with explicit generators.

The clip-level rule everywhere: a video clip is ONE sample, so every random decision is drawn once
per clip and applied identically to all its frames (finetune-distill.md §2.4, §3). Each function
below therefore splits into a *draw* (generator in, plain parameters out) and an *apply*
(parameters in, pixels out). Tests compare frames of one clip, and a DataLoader worker needs only
a key-derived generator to reproduce an item.

* RandAugment (``rand-m7-n4-mstd0.5-inc1``): :func:`parse_rand_augment`,
  :func:`sample_rand_augment` -> a list of concrete ops, :func:`apply_rand_augment` on uint8
  frames through PIL (the original works on PIL images too).
* Random-resized crop + flip on a float clip: :func:`resized_crop` (the box comes from
  :func:`videomae2.data.transforms.random_resized_crop_params`).
* Random erasing in cube mode: :func:`sample_erasing_box`, :func:`erase_cube` (same rectangle on
  every frame, fresh per-pixel noise per frame).
* Mixup / CutMix with label smoothing, 'batch' mode (one lambda and one mode per batch):
  :func:`sample_mix`, :func:`apply_mix`, :func:`mix_batch`. The CutMix box cuts the last two
  dimensions of ``(B, C, T, H, W)``, which is the original's ``(B, C·T, H, W)`` view: the same
  box on every frame.

Shape legend: B clips, C=3, T frames, H/W pixels, K classes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageOps

__all__ = [
    "INCREASING_OPS",
    "ErasingParams",
    "MixParams",
    "MixSettings",
    "RandAugmentParams",
    "apply_mix",
    "apply_rand_augment",
    "erase_cube",
    "mix_batch",
    "mixup_targets",
    "parse_rand_augment",
    "resized_crop",
    "sample_erasing_box",
    "sample_mix",
    "sample_rand_augment",
]

MAX_LEVEL = 10.0

# --------------------------------------------------------------------------------- RandAugment

# The "increasing" op set (inc1): for every op with a magnitude, a larger level is a stronger
# change. The magnitude-free ops are always full strength.
INCREASING_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
)
# The classic set (inc0): posterize/solarize/enhance get weaker as the level grows.
CLASSIC_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
)
_ENHANCE_INCREASING = (
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
)
_SIGNED = {
    "Rotate",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
}


@dataclass(frozen=True)
class RandAugmentParams:
    """What a ``rand-m7-n4-mstd0.5-inc1`` string means (plus the geometry constants)."""

    num_ops: int = 4
    magnitude: float = 7.0
    magnitude_std: float = 0.5
    magnitude_max: float = MAX_LEVEL
    prob: float = 0.5  # each drawn op is applied with this probability
    increasing: bool = True
    translate_const: int = 100  # pixels at level 10: int(0.45 · crop size) in the original
    fill: tuple[int, int, int] = (128, 128, 128)


def parse_rand_augment(spec: str, translate_const: int = 100) -> RandAugmentParams:
    """``'rand-m7-n4-mstd0.5-inc1'`` -> :class:`RandAugmentParams`.

    Keys: ``m`` magnitude, ``n`` ops, ``mstd`` magnitude std, ``mmax`` upper clip, ``inc``
    increasing op set (0/1), ``p`` op probability. Unknown keys are an error (a typo must not
    silently mean the default).
    """
    parts = spec.split("-")
    if parts[0] != "rand":
        raise ValueError(f"RandAugment spec must start with 'rand', got {spec!r}")
    kw: dict = {"translate_const": translate_const}
    for part in parts[1:]:
        m = re.fullmatch(r"([a-z]+)([0-9.]+)", part)
        if m is None:
            raise ValueError(f"bad RandAugment field {part!r} in {spec!r}")
        key, value = m.group(1), m.group(2)
        if key == "m":
            kw["magnitude"] = float(value)
        elif key == "n":
            kw["num_ops"] = int(value)
        elif key == "mstd":
            kw["magnitude_std"] = float(value)
        elif key == "mmax":
            kw["magnitude_max"] = float(value)
        elif key == "inc":
            kw["increasing"] = bool(int(value))
        elif key == "p":
            kw["prob"] = float(value)
        else:
            raise ValueError(
                f"unknown RandAugment key {key!r} in {spec!r} (m, n, mstd, mmax, inc, p)"
            )
    return RandAugmentParams(**kw)


def _op_argument(name: str, level: float, translate_const: int) -> float | None:
    """The concrete argument of op `name` at `level` in [0, 10] (sign applied by the caller)."""
    f = level / MAX_LEVEL
    if name in ("AutoContrast", "Equalize", "Invert"):
        return None
    if name == "Rotate":
        return 30.0 * f  # degrees
    if name in ("ShearX", "ShearY"):
        return 0.3 * f
    if name in ("TranslateX", "TranslateY"):
        return float(translate_const) * f  # pixels
    if name == "PosterizeIncreasing":
        return float(4 - int(4 * f))  # bits kept: 4 (level 0) .. 0 (level 10)
    if name == "Posterize":
        return float(int(4 * f) + 4)  # 4 .. 8 bits: weaker as the level grows
    if name == "SolarizeIncreasing":
        return float(256 - int(256 * f))  # threshold 256 (no-op) .. 0 (invert all)
    if name == "Solarize":
        return float(int(256 * f))
    if name == "SolarizeAdd":
        return float(int(110 * f))
    if name.endswith("Increasing"):  # Color/Contrast/Brightness/Sharpness: 1 ± 0.9·f
        return 0.9 * f
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return 1.8 * f + 0.1  # enhancement factor 0.1 .. 1.9
    raise ValueError(f"unknown RandAugment op {name!r}")


def sample_rand_augment(
    params: RandAugmentParams, rng: np.random.Generator
) -> list[tuple[str, float | None]]:
    """Draw one clip's RandAugment plan: the ops that apply, each with its concrete argument.

    ``num_ops`` ops are drawn with replacement; each is kept with probability ``prob``; its
    level is ``N(magnitude, magnitude_std)`` clipped to ``[0, magnitude_max]``; ops with a
    direction get a random sign. Every draw happens here, once, so applying the plan to each
    frame gives the same ops and magnitudes on every frame.
    """
    ops = INCREASING_OPS if params.increasing else CLASSIC_OPS
    plan: list[tuple[str, float | None]] = []
    for _ in range(params.num_ops):
        name = ops[int(rng.integers(len(ops)))]
        apply = rng.random() < params.prob
        level = params.magnitude
        if params.magnitude_std > 0:
            level = float(rng.normal(params.magnitude, params.magnitude_std))
        level = min(max(level, 0.0), params.magnitude_max)
        negate = rng.random() < 0.5
        if not apply:
            continue
        arg = _op_argument(name, level, params.translate_const)
        if name in _SIGNED and negate:
            arg = -arg
        if name in _ENHANCE_INCREASING:
            arg = 1.0 + arg  # an enhancement factor around 1
        plan.append((name, arg))
    return plan


def _solarize_add(img: Image.Image, add: int, thresh: int = 128) -> Image.Image:
    lut = [min(255, i + add) if i < thresh else i for i in range(256)]
    return img.point(lut * len(img.getbands()))


def _apply_op(
    img: Image.Image, name: str, arg: float | None, fill: tuple[int, int, int]
) -> Image.Image:
    affine = dict(resample=Image.BICUBIC, fillcolor=fill)
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Rotate":
        return img.rotate(arg, **affine)
    if name == "ShearX":
        return img.transform(img.size, Image.AFFINE, (1, arg, 0, 0, 1, 0), **affine)
    if name == "ShearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, arg, 1, 0), **affine)
    if name == "TranslateX":
        return img.transform(img.size, Image.AFFINE, (1, 0, arg, 0, 1, 0), **affine)
    if name == "TranslateY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, arg), **affine)
    if name in ("Posterize", "PosterizeIncreasing"):
        bits = int(arg)
        return img if bits >= 8 else ImageOps.posterize(img, bits)
    if name in ("Solarize", "SolarizeIncreasing"):
        return ImageOps.solarize(img, int(arg))
    if name == "SolarizeAdd":
        return _solarize_add(img, int(arg))
    enhancer = {
        "Color": ImageEnhance.Color,
        "Contrast": ImageEnhance.Contrast,
        "Brightness": ImageEnhance.Brightness,
        "Sharpness": ImageEnhance.Sharpness,
    }[name.removesuffix("Increasing")]
    return enhancer(img).enhance(arg)


def apply_rand_augment(
    frames: np.ndarray,
    plan: Sequence[tuple[str, float | None]],
    fill: tuple[int, int, int] = (128, 128, 128),
) -> np.ndarray:
    """Apply a plan from :func:`sample_rand_augment` to every frame: ``(T, H, W, 3)`` uint8."""
    if not plan:
        return frames
    out = np.empty_like(frames)
    for t, frame in enumerate(frames):
        img = Image.fromarray(frame)
        for name, arg in plan:
            img = _apply_op(img, name, arg, fill)
        out[t] = np.asarray(img)
    return out


# ------------------------------------------------------------------------- crop / flip / erase


def resized_crop(
    clip: torch.Tensor, box: tuple[int, int, int, int], size: int, flip: bool = False
) -> torch.Tensor:
    """Crop ``box = (y, x, h, w)`` from every frame, bilinear-resize to ``size``², maybe flip.

    ``clip (C, T, H, W)`` float -> ``(C, T, size, size)``. One box and one flip for all frames.
    """
    y, x, h, w = box
    crop = clip[:, :, y : y + h, x : x + w].transpose(0, 1)  # (T, C, h, w): frames as a batch
    if (h, w) != (size, size):
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)
    crop = crop.transpose(0, 1)  # (C, T, size, size)
    return crop.flip(-1) if flip else crop.contiguous()


@dataclass(frozen=True)
class ErasingParams:
    """Random erasing (original defaults): probability, area fraction and aspect ranges."""

    prob: float = 0.25
    mode: str = "pixel"  # pixel: per-pixel N(0, 1) | rand: one N(0, 1) colour | const: zeros
    count: int = 1
    area: tuple[float, float] = (0.02, 1 / 3)
    aspect: tuple[float, float] = (0.3, 1 / 0.3)
    attempts: int = 10


def sample_erasing_box(
    h: int, w: int, params: ErasingParams, rng: np.random.Generator, count: int = 1
) -> tuple[int, int, int, int] | None:
    """One rectangle ``(y, x, eh, ew)`` or None when no try fits (then nothing is erased).

    Area fraction uniform in ``params.area`` (divided among ``count`` rectangles), aspect
    log-uniform; sides rounded; the rectangle must be strictly smaller than the frame.
    """
    log_lo, log_hi = math.log(params.aspect[0]), math.log(params.aspect[1])
    for _ in range(params.attempts):
        target = float(rng.uniform(*params.area)) * h * w / count
        aspect = math.exp(float(rng.uniform(log_lo, log_hi)))
        eh = round(math.sqrt(target * aspect))
        ew = round(math.sqrt(target / aspect))
        if ew < w and eh < h:
            y = int(rng.integers(0, h - eh + 1))
            x = int(rng.integers(0, w - ew + 1))
            return y, x, eh, ew
    return None


def erase_cube(clip: torch.Tensor, params: ErasingParams, rng: np.random.Generator) -> torch.Tensor:
    """Random erasing, cube mode, on a normalised ``(C, T, H, W)`` clip (a modified copy).

    With probability ``params.prob``: ``count`` rectangles, each the same on every frame, filled
    with fresh noise per frame (mode 'pixel'), one colour per frame ('rand') or zeros.
    """
    if params.prob <= 0 or rng.random() >= params.prob:
        return clip
    out = clip.clone()
    C, T, H, W = clip.shape
    g = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
    for _ in range(params.count):
        box = sample_erasing_box(H, W, params, rng, params.count)
        if box is None:
            continue
        y, x, eh, ew = box
        if params.mode == "pixel":
            noise = torch.randn((C, T, eh, ew), generator=g, dtype=clip.dtype)
        elif params.mode == "rand":
            noise = torch.randn((C, T, 1, 1), generator=g, dtype=clip.dtype).expand(C, T, eh, ew)
        elif params.mode == "const":
            noise = torch.zeros((C, T, eh, ew), dtype=clip.dtype)
        else:
            raise ValueError(f"erasing mode must be pixel, rand or const, got {params.mode!r}")
        out[:, :, y : y + eh, x : x + ew] = noise
    return out


# ------------------------------------------------------------------------------ mixup / cutmix


@dataclass(frozen=True)
class MixSettings:
    """Mixup / CutMix as the original recipes set them (finetune-distill.md §2.4)."""

    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    prob: float = 1.0  # probability that a batch is mixed at all
    switch_prob: float = 0.5  # P(CutMix) when both are enabled
    label_smoothing: float = 0.1
    correct_lam: bool = True  # lambda = the kept area after the box is clipped to the frame

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)


@dataclass(frozen=True)
class MixParams:
    """One batch's mixing: the weight of the original clip and, for CutMix, the box."""

    lam: float
    box: tuple[int, int, int, int] | None = None  # (y0, y1, x0, x1), CutMix only


def sample_mix(
    settings: MixSettings, height: int, width: int, rng: np.random.Generator
) -> MixParams:
    """Draw one batch's mixing ('batch' mode: one lambda, one mode for the whole batch)."""
    if not settings.enabled:
        return MixParams(1.0)
    use_cutmix = settings.cutmix_alpha > 0 and (
        settings.mixup_alpha <= 0 or rng.random() < settings.switch_prob
    )
    alpha = settings.cutmix_alpha if use_cutmix else settings.mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    if rng.random() >= settings.prob:
        return MixParams(1.0)
    if not use_cutmix:
        return MixParams(lam)
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    y0, y1 = int(np.clip(cy - ch // 2, 0, height)), int(np.clip(cy + ch // 2, 0, height))
    x0, x1 = int(np.clip(cx - cw // 2, 0, width)), int(np.clip(cx + cw // 2, 0, width))
    if settings.correct_lam:
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
    return MixParams(lam, (y0, y1, x0, x1))


def mixup_targets(
    labels: torch.Tensor, num_classes: int, lam: float, smoothing: float
) -> torch.Tensor:
    """Soft targets ``(B, K)``: ``lam · smooth(y) + (1 − lam) · smooth(flip(y))``.

    ``smooth`` puts ``1 − s + s/K`` on the label and ``s/K`` elsewhere. Also the plain
    label-smoothing target when ``lam == 1``.
    """
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    y = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    y.scatter_(1, labels.view(-1, 1), on)
    return y * lam + y.flip(0) * (1.0 - lam)


def apply_mix(
    clips: torch.Tensor, labels: torch.Tensor, params: MixParams, num_classes: int, smoothing: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix ``clips (B, C, T, H, W)`` with the batch reversed; returns (clips, soft targets).

    Mixup blends whole clips; CutMix pastes the box of clip ``B−1−i`` into clip ``i`` on every
    frame (the box spans the last two dimensions only).
    """
    if params.box is not None:
        y0, y1, x0, x1 = params.box
        clips = clips.clone()
        clips[..., y0:y1, x0:x1] = clips.flip(0)[..., y0:y1, x0:x1]
    elif params.lam != 1.0:
        clips = clips * params.lam + clips.flip(0) * (1.0 - params.lam)
    return clips, mixup_targets(labels, num_classes, params.lam, smoothing)


def mix_batch(
    clips: torch.Tensor,
    labels: torch.Tensor,
    settings: MixSettings,
    num_classes: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, MixParams]:
    """Draw + apply for one batch. Needs an even batch when mixing (pairs i and B−1−i)."""
    if settings.enabled and clips.shape[0] % 2:
        raise ValueError(f"mixup/cutmix need an even batch, got {clips.shape[0]} clips")
    params = sample_mix(settings, clips.shape[-2], clips.shape[-1], rng)
    mixed, targets = apply_mix(clips, labels, params, num_classes, settings.label_smoothing)
    return mixed, targets, params
