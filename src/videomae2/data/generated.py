"""A generated video dataset whose classes can only be told apart by temporal modelling.

Why: a CPU demo needs a dataset that is small, has no download, and still exercises what
VideoMAE V2 is for. Something-Something is hard because its classes share appearance and differ
in *time* ("pushing left" vs "pushing right"); a dataset of colour blobs that one frame can
classify would let a per-frame model look as good as a video model. So the classes here come in
temporal pairs, each the other's time reversal:

==========================  ==============================  =====================================
first class of the pair      second class                    what changes over time
==========================  ==============================  =====================================
moving left                  moving right                    centre x (wraps around the frame)
moving up                    moving down                     centre y (wraps around the frame)
rotating clockwise           rotating anticlockwise          orientation (a marker shows it)
approaching                  receding                        size (grows / shrinks)
appearing                    disappearing                    opacity (fades in / out)
==========================  ==============================  =====================================

Construction, and the guarantees it gives:

* :func:`sample_scene` draws everything random about a video (size, duration, background,
  static distractors, the object's shape, colours, size, start state, speed, timing, noise)
  **without knowing the class**, so every class draws from one appearance distribution.
* :func:`render_scene` renders the first class of a pair directly and the second class as the
  exact time reversal of it: ``render_scene(s, "moving right") == render_scene(s,
  "moving left")[::-1]``. Hence the two videos hold the same multiset of frames, and any
  order-blind model (one frame, or an average of frame features) is at chance within a pair.
  For the translation and rotation pairs even the *first* frame has the same distribution in
  both classes: positions live on a torus (the object leaves on one side and re-enters on the
  other) and orientations are uniform, so start and end states are identically distributed.
  For the size and fade pairs the first frame alone does lean one way (small or absent at the
  start of "approaching" / "appearing"), as in real videos; a random frame still does not.
* Durations and aspect ratios vary on purpose (:func:`make_dataset` stratifies them): about half
  the videos are shorter than one 16x4 clip span (61 frames), so sampling has to wrap, and the
  frames are landscape, portrait or square with even sides (libx264 / yuv420p needs them).

Everything is deterministic given the seed: each video has its own generator keyed by
``(seed, class index, video index)``, so a file does not depend on how many classes or workers
were asked for. Drawing is vectorised numpy on the object's bounding box, one frame at a time;
videos are encoded in parallel with a process pool.

Shapes: T frames, H x W pixels; videos are ``(T, H, W, 3)`` uint8 RGB.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from videomae2.data.synthetic import write_video

__all__ = [
    "ASPECT_RATIOS",
    "CLASS_NAMES",
    "CLIP_SPAN",
    "SHAPES",
    "STYLES",
    "TEMPORAL_PAIRS",
    "DatasetInfo",
    "GeneratedVideo",
    "Scene",
    "Style",
    "Track",
    "add_arguments",
    "make_dataset",
    "render_scene",
    "render_video",
    "run",
    "sample_scene",
    "scene_generator",
    "trajectory",
    "video_generator",
]

CLASS_NAMES: tuple[str, ...] = (
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "rotating clockwise",
    "rotating anticlockwise",
    "approaching",
    "receding",
    "appearing",
    "disappearing",
)
TEMPORAL_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (CLASS_NAMES[i], CLASS_NAMES[i + 1]) for i in range(0, len(CLASS_NAMES), 2)
)
# class -> (motion rendered forward in time, whether the class is that motion reversed)
_MOTION: dict[str, tuple[str, bool]] = {}
for _first, _second in TEMPORAL_PAIRS:
    _MOTION[_first] = (_first, False)
    _MOTION[_second] = (_first, True)

SHAPES: tuple[str, ...] = ("disc", "square", "triangle", "cross", "ellipse", "diamond")
# width / height; in turn landscape, portrait, square, so that any 3 consecutive entries (the
# aspect ratios of a class with 3 videos, see make_dataset) include all three orientations
ASPECT_RATIOS: tuple[float, ...] = (4 / 3, 3 / 4, 1.0, 16 / 9, 9 / 16, 1.0)
CLIP_SPAN = 61  # frames covered by one 16-frame clip at stride 4: (16 - 1) * 4 + 1
_EXTENT = 1.15  # every shape fits in a disc of this radius (object units)
_PROFILES = ("linear", "smooth", "ease_in", "ease_out")  # closed under time reversal


@dataclass(frozen=True)
class Style:
    """How hard a video is to read: the ranges behind the class-blind appearance draws.

    Each field is an inclusive ``(min, max)`` range. The default is the full dataset's look
    (small objects among look-alike distractors, grain); :data:`STYLES` names presets.
    """

    radius: tuple[float, float] = (0.10, 0.18)  # object radius, fraction of the short side
    distractors: tuple[int, int] = (0, 2)  # static look-alike shapes painted into the background
    grain: tuple[float, float] = (0.0, 10.0)  # static background grain, std in grey levels
    noise: tuple[int, int] = (0, 6)  # per-frame sensor noise, uniform +-this, grey levels
    contrast: float = 1.0  # background pattern strength: 0 = one flat random colour
    # the motion starts after up to this fraction of the duration and ends up to this fraction
    # before the end (still frames at both ends); 0 = the object moves from first to last frame
    still: float = 0.25
    # True: the background is darkened into [0, 96] and the object lightened into [160, 255]
    # (each channel), so every object is brighter than what it moves over
    light_on_dark: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.contrast <= 1:
            raise ValueError(f"Style.contrast must be in [0, 1], got {self.contrast}")
        if not 0 <= self.still < 0.5:
            raise ValueError(f"Style.still must be in [0, 0.5), got {self.still}")
        for name in ("radius", "distractors", "grain", "noise"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"Style.{name} must be a range 0 <= min <= max, got {(lo, hi)}")


# "standard": the look described above. "clear": the same classes, motions, backgrounds,
# durations and aspect ratios, but a bigger object, no distractors and little grain. "plain":
# also one flat random colour behind a still bigger object. "demo" (what `videomae2 demo` uses):
# "plain" without any grain or noise, the object always lighter than the background, and moving
# from the first frame to the last. The classes, their motions and the time-reversal guarantees
# are the same in every style.
#
# Why "demo" is the one a tiny ViT can learn in minutes (docs/demo.md has the measurements):
# with a light object on a dark background the direction of motion inside one 2-frame tubelet
# is a *linear* function of its pixels (the shift of the brightness centroid), so the linear
# patch embedding sees it directly; with random polarity the sign flips per video and the model
# must first discover a nonlinear motion detector, which a 4-block ViT on 64 tokens does not do
# within thousands of steps. Flat, noise-free patches also make the normalised-pixel MAE target
# exactly zero on the background, so pretraining spends its loss on the moving object.
STYLES: dict[str, Style] = {
    "standard": Style(),
    "clear": Style(radius=(0.16, 0.26), distractors=(0, 0), grain=(0.0, 3.0), noise=(0, 2)),
    "plain": Style(
        radius=(0.2, 0.3), distractors=(0, 0), grain=(0.0, 2.0), noise=(0, 1), contrast=0.0
    ),
    "demo": Style(
        radius=(0.2, 0.3),
        distractors=(0, 0),
        grain=(0.0, 0.0),
        noise=(0, 0),
        contrast=0.0,
        still=0.0,
        light_on_dark=True,
    ),
}


# ----------------------------------------------------------------------------- scene and track


@dataclass(frozen=True, eq=False)
class Scene:
    """Every random choice behind one video; none of them depends on the class.

    Positions are fractions in ``[0, 1)`` mapped to pixels per motion (a torus for translation,
    inside the frame otherwise); ``radius`` is in pixels; angles in radians, clockwise on screen.
    """

    num_frames: int
    height: int
    width: int
    background: np.ndarray = field(repr=False)  # (H, W, 3) float32, static distractors included
    shape: str
    colour: np.ndarray  # (3,) float32 RGB
    marker_colour: np.ndarray  # (3,) float32, the object's "front" (+u side) to show rotation
    radius: float
    orientation: float
    position: tuple[float, float]  # (y, x) fractions at the middle of the motion
    window: tuple[float, float]  # motion happens between these fractions of the duration
    profile: str  # speed profile over the window, one of _PROFILES
    travel: float  # translation distance, fraction of the wrap period
    drift: float  # signed sideways drift of translations, fraction of the perpendicular side
    turn: float  # rotation over the window, radians (> 0)
    zoom: float  # size ratio end / start when approaching (> 1)
    wobble: tuple[float, float]  # (dy, dx) pixels of slow drift for the non-translation motions
    noise_amplitude: int  # per-frame grain (sensor noise): uniform in +-this, grey levels
    noise_seed: int


@dataclass(frozen=True, eq=False)
class Track:
    """The object's per-frame state: centre (pixels, pixel centres at ``i + 0.5``), orientation
    (radians, clockwise on screen), scale (x ``radius``) and opacity; each array is ``(T,)``."""

    cy: np.ndarray
    cx: np.ndarray
    angle: np.ndarray
    scale: np.ndarray
    alpha: np.ndarray

    def reversed(self) -> Track:
        """The same states in the opposite order (what the pair's other class shows)."""
        return Track(
            *(a[::-1].copy() for a in (self.cy, self.cx, self.angle, self.scale, self.alpha))
        )


def _check_class(class_name: str) -> None:
    if class_name not in _MOTION:
        raise ValueError(f"unknown class {class_name!r}; known: {', '.join(CLASS_NAMES)}")


def _even(x: float) -> int:
    return max(2, 2 * round(x / 2))


def _frame_size(short: int, aspect: float) -> tuple[int, int]:
    """(height, width), both even, with the given short side and width/height ratio."""
    if aspect >= 1:
        return short, _even(short * aspect)
    return _even(short / aspect), short


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) bilinear upsampling weights (align-corners off), for smooth noise."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = (pos - i0).astype(np.float32)
    m = np.zeros((n_out, n_in), dtype=np.float32)
    m[np.arange(n_out), i0] += 1 - w
    m[np.arange(n_out), i1] += w
    return m


def _background(
    rng: np.random.Generator,
    h: int,
    w: int,
    grain_range: tuple[float, float] = (0.0, 10.0),
    contrast: float = 1.0,
) -> np.ndarray:
    """(H, W, 3) float32: a gradient, smooth colour noise or stripes, plus static grain."""
    ys = np.arange(h, dtype=np.float32)[:, None] / max(h, w)
    xs = np.arange(w, dtype=np.float32)[None, :] / max(h, w)
    kind = int(rng.integers(3))
    c0, c1 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    phi = rng.uniform(0, 2 * np.pi)
    along = np.cos(phi) * xs + np.sin(phi) * ys  # (H, W)
    if kind == 0:  # linear gradient
        g = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    elif kind == 1:  # smooth value noise: a coarse random grid, bilinearly upsampled
        gh, gw = (int(n) for n in rng.integers(2, 7, size=2))
        grid = rng.uniform(0, 1, size=(gh, gw)).astype(np.float32)
        g = _interp_matrix(h, gh) @ grid @ _interp_matrix(w, gw).T
    else:  # soft stripes
        freq = rng.uniform(2, 8)
        g = 0.5 + 0.5 * np.sin(2 * np.pi * freq * along + rng.uniform(0, 2 * np.pi))
    bg = c0 + (c1 - c0) * (contrast * g[..., None])
    grain = rng.uniform(*grain_range)
    bg += rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(grain)
    return bg.astype(np.float32)


def _far_colour(rng: np.random.Generator, reference: np.ndarray, candidates: int = 4) -> np.ndarray:
    """The candidate colour farthest from ``reference``, so the object stands out."""
    cands = rng.uniform(0, 255, size=(candidates, 3)).astype(np.float32)
    return cands[int(np.argmax(np.linalg.norm(cands - reference, axis=1)))]


def _sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (approximately, in object units; < 0 inside) to a unit-size shape."""
    if shape == "disc":
        return np.hypot(u, v) - 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.8
    if shape == "diamond":
        return (np.abs(u) + np.abs(v) - 1.0) * np.float32(0.7071)
    if shape == "ellipse":
        return (np.hypot(u, v / 0.55) - 1.0) * np.float32(0.55)
    if shape == "triangle":  # equilateral, circumradius 1, a vertex pointing along +u
        d = -u
        for a in (np.pi / 3, -np.pi / 3):
            d = np.maximum(d, u * np.float32(np.cos(a)) + v * np.float32(np.sin(a)))
        return d - 0.5
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return np.minimum(np.maximum(au - 1.0, av - 0.33), np.maximum(au - 0.33, av - 1.0))
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _paint(
    img: np.ndarray,
    shape: str,
    cy: float,
    cx: float,
    rad: float,
    angle: float,
    colour: np.ndarray,
    marker: np.ndarray,
    alpha: float = 1.0,
) -> None:
    """Blend one anti-aliased shape into ``img`` (H, W, 3) float32 in place.

    Only the shape's bounding box is computed, so the cost scales with the object, not the
    frame. The marker (the +u side, ``u > 0.3``) makes orientation, hence rotation, visible for
    every shape, including the disc.
    """
    h, w = img.shape[:2]
    ext = _EXTENT * rad + 2
    y0, y1 = max(int(np.floor(cy - ext)), 0), min(int(np.ceil(cy + ext)) + 1, h)
    x0, x1 = max(int(np.floor(cx - ext)), 0), min(int(np.ceil(cx + ext)) + 1, w)
    if y0 >= y1 or x0 >= x1 or alpha <= 0 or rad <= 0:
        return
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] + np.float32(0.5 - cy)
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] + np.float32(0.5 - cx)
    c, s, r = np.float32(np.cos(angle)), np.float32(np.sin(angle)), np.float32(rad)
    u = (dx * c + dy * s) / r  # object coordinates: rotate the pixel back by `angle`
    v = (dy * c - dx * s) / r
    cover = np.clip(0.5 - _sdf(shape, u, v) * r, 0, 1) * np.float32(alpha)
    front = np.clip(0.5 + (u - 0.3) * r, 0, 1)[..., None]
    fill = colour + (marker - colour) * front
    region = img[y0:y1, x0:x1]
    region += (fill - region) * cover[..., None]


def sample_scene(
    rng: np.random.Generator,
    *,
    num_frames: int | None = None,
    size: tuple[int, int] | None = None,
    frame_range: tuple[int, int] = (32, 144),
    short_side: tuple[int, int] = (64, 112),
    style: Style = Style(),
) -> Scene:
    """Draw one video's random content; the class is *not* an input (see the module docstring).

    ``num_frames`` and ``size`` (height, width; both even) are drawn from ``frame_range`` and
    ``short_side`` x a random aspect ratio when not given (:func:`make_dataset` gives them, to
    stratify). The draw order is fixed, so the same generator state gives the same scene (for a
    given ``style``, which only rescales the draws).
    """
    if num_frames is None:
        num_frames = int(rng.integers(frame_range[0], frame_range[1] + 1))
    if size is None:
        short = _even(rng.uniform(short_side[0], short_side[1]))
        size = _frame_size(short, ASPECT_RATIOS[int(rng.integers(len(ASPECT_RATIOS)))])
    h, w = (int(x) for x in size)
    if num_frames < 2:
        raise ValueError(f"a video needs at least 2 frames, got {num_frames}")
    if h % 2 or w % 2 or min(h, w) < 16:
        raise ValueError(f"frame size must be even and >= 16, got {h}x{w} (h x w)")
    side = min(h, w)
    bg = _background(rng, h, w, style.grain, style.contrast)
    lo, hi = style.distractors
    for _ in range(int(rng.integers(lo, hi + 1))):  # static distractors: the same shape family
        _paint(
            bg,
            SHAPES[int(rng.integers(len(SHAPES)))],
            rng.uniform(0, h),
            rng.uniform(0, w),
            rng.uniform(0.06, 0.14) * side,
            rng.uniform(0, 2 * np.pi),
            rng.uniform(0, 255, size=3).astype(np.float32),
            rng.uniform(0, 255, size=3).astype(np.float32),
        )
    np.clip(bg, 0, 255, out=bg)
    colour = _far_colour(rng, bg.mean(axis=(0, 1)))
    marker = _far_colour(rng, colour)
    if style.light_on_dark:  # a transform of the same draws: the random stream is unchanged
        bg *= np.float32(96 / 255)
        colour = np.float32(160) + colour * np.float32(95 / 255)
        marker = np.float32(160) + marker * np.float32(95 / 255)
    return Scene(
        num_frames=int(num_frames),
        height=h,
        width=w,
        background=bg,
        shape=SHAPES[int(rng.integers(len(SHAPES)))],
        colour=colour,
        marker_colour=marker,
        radius=float(rng.uniform(*style.radius) * side),
        orientation=float(rng.uniform(0, 2 * np.pi)),
        position=(float(rng.uniform()), float(rng.uniform())),
        window=(float(rng.uniform(0, style.still)), float(1 - rng.uniform(0, style.still))),
        profile=_PROFILES[int(rng.integers(len(_PROFILES)))],
        travel=float(rng.uniform(0.5, 1.1)),
        drift=float(rng.uniform(-0.2, 0.2)),
        turn=float(rng.uniform(0.75, 2.0) * np.pi),
        zoom=float(rng.uniform(2.0, 3.5)),
        wobble=(
            float(rng.uniform(-0.08, 0.08) * side),
            float(rng.uniform(-0.08, 0.08) * side),
        ),
        noise_amplitude=int(rng.integers(style.noise[0], style.noise[1] + 1)),
        noise_seed=int(rng.integers(2**63)),
    )


def _progress(scene: Scene) -> np.ndarray:
    """(T,) motion progress in [0, 1]: 0 before the window, 1 after, the profile in between."""
    f = np.arange(scene.num_frames) / (scene.num_frames - 1)
    t0, t1 = scene.window
    p = np.clip((f - t0) / (t1 - t0), 0.0, 1.0)
    if scene.profile == "smooth":
        return p * p * (3 - 2 * p)
    if scene.profile == "ease_in":
        return p * p
    if scene.profile == "ease_out":
        return 1 - (1 - p) ** 2
    return p


def _span(length: float, margin: float, frac: float, shift: float = 0.0) -> float:
    """A centre in ``[margin + |shift|/2, length - margin - |shift|/2]`` (the middle if empty)."""
    lo, hi = margin + abs(shift) / 2, length - margin - abs(shift) / 2
    return lo + frac * (hi - lo) if hi > lo else length / 2


def trajectory(scene: Scene, class_name: str) -> Track:
    """The object's per-frame state for ``class_name``; the pair's second class is reversed.

    Translations live on a torus of period ``side + 2 * extent``: the object fully leaves on one
    side and at once starts entering on the other, so the start (and end) position is uniform
    whatever the direction. The other motions keep the object inside the frame with a small
    random drift (``wobble``) so that nothing is perfectly still.
    """
    _check_class(class_name)
    motion, backwards = _MOTION[class_name]
    n, h, w = scene.num_frames, scene.height, scene.width
    p = _progress(scene)
    fy, fx = scene.position
    ext = _EXTENT * scene.radius + 2
    ones = np.ones(n)
    angle, scale, alpha = scene.orientation * ones, ones.copy(), ones.copy()
    if motion in ("moving left", "moving up"):
        along, across = (w, h) if motion == "moving left" else (h, w)
        f_along, f_across = (fx, fy) if motion == "moving left" else (fy, fx)
        period = along + 2 * ext
        shift = scene.drift * across
        main = f_along * period - ext + scene.travel * period * (0.5 - p)  # decreasing
        main = np.mod(main + ext, period) - ext
        side = _span(across, ext, f_across, shift) + shift * (p - 0.5)
        cy, cx = (side, main) if motion == "moving left" else (main, side)
    else:
        cy = _span(h, ext, fy) + scene.wobble[0] * (p - 0.5)
        cx = _span(w, ext, fx) + scene.wobble[1] * (p - 0.5)
        if motion == "rotating clockwise":  # angle grows = clockwise on a y-down screen
            angle = scene.orientation + scene.turn * p
        elif motion == "approaching":
            scale = scene.zoom ** (p - 0.5)
        else:  # appearing
            alpha = p.copy()
    track = Track(cy, cx, angle, scale, alpha)
    return track.reversed() if backwards else track


def render_scene(scene: Scene, class_name: str) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames of ``scene`` showing ``class_name``.

    The pair's second class is rendered as the first one's frames in reverse order, grain
    included, so the two are exact time reversals of each other.
    """
    _check_class(class_name)
    motion, backwards = _MOTION[class_name]
    track = trajectory(scene, motion)
    n, h, w = scene.num_frames, scene.height, scene.width
    grain = None
    if scene.noise_amplitude > 0:  # grey grain, one draw per pixel and frame (in forward time)
        a = scene.noise_amplitude
        grain = np.random.default_rng(scene.noise_seed).integers(-a, a + 1, (n, h, w, 1), np.int8)
    frames = np.empty((n, h, w, 3), dtype=np.uint8)
    frame = np.empty_like(scene.background)  # one float frame, reused: stays in cache
    for t in range(n):
        np.copyto(frame, scene.background)
        _paint(
            frame,
            scene.shape,
            float(track.cy[t]),
            float(track.cx[t]),
            scene.radius * float(track.scale[t]),
            float(track.angle[t]),
            scene.colour,
            scene.marker_colour,
            float(track.alpha[t]),
        )
        if grain is not None:
            frame += grain[t]
        frame += 0.5  # round to nearest on the truncating cast below
        np.clip(frame, 0, 255, out=frame)
        frames[t] = frame
    return np.ascontiguousarray(frames[::-1]) if backwards else frames


def render_video(
    class_name: str,
    rng: np.random.Generator,
    *,
    num_frames: int | None = None,
    size: tuple[int, int] | None = None,
    frame_range: tuple[int, int] = (32, 144),
    short_side: tuple[int, int] = (64, 112),
    style: Style = Style(),
) -> np.ndarray:
    """``(T, H, W, 3)`` uint8: one random video of ``class_name`` (a pure function of ``rng``).

    Equal generator states give the same scene for every class, so e.g.
    ``render_video("moving right", g1)`` equals ``render_video("moving left", g2)[::-1]`` when
    ``g1`` and ``g2`` start in the same state. Keyword arguments as in :func:`sample_scene`.
    """
    _check_class(class_name)
    scene = sample_scene(
        rng,
        num_frames=num_frames,
        size=size,
        frame_range=frame_range,
        short_side=short_side,
        style=style,
    )
    return render_scene(scene, class_name)


# ----------------------------------------------------------------------------- the dataset


@dataclass(frozen=True)
class GeneratedVideo:
    """One written video: its filename relative to the data prefix, label, split and size."""

    filename: str
    label: int
    class_name: str
    split: str  # "train" | "val" | "unlabeled" (pretraining only)
    num_frames: int
    height: int
    width: int


@dataclass(frozen=True)
class DatasetInfo:
    """Where :func:`make_dataset` wrote things, and what.

    ``video_dir`` is the data prefix the lists are relative to (mmaction2's
    ``data_prefix=dict(video=...)``, the pretraining ``data_root``).
    """

    root: Path
    video_dir: Path
    train_list: Path
    val_list: Path
    pretrain_list: Path
    label_map: Path
    metadata: Path
    class_names: tuple[str, ...]
    videos: tuple[GeneratedVideo, ...]
    seconds: float

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_train(self) -> int:
        return sum(v.split == "train" for v in self.videos)

    @property
    def num_val(self) -> int:
        return sum(v.split == "val" for v in self.videos)

    @property
    def num_unlabeled(self) -> int:
        return sum(v.split == "unlabeled" for v in self.videos)

    @classmethod
    def at(
        cls,
        root: str | os.PathLike,
        class_names: Sequence[str],
        videos: Sequence[GeneratedVideo],
        seconds: float = 0.0,
    ) -> DatasetInfo:
        """The info of a dataset under ``root`` (the file layout :func:`make_dataset` writes)."""
        root = Path(root)
        return cls(
            root=root,
            video_dir=root / "videos",
            train_list=root / "train_list.txt",
            val_list=root / "val_list.txt",
            pretrain_list=root / "pretrain_list.txt",
            label_map=root / "label_map.txt",
            metadata=root / "metadata.tsv",
            class_names=tuple(class_names),
            videos=tuple(videos),
            seconds=seconds,
        )

    @classmethod
    def read(cls, root: str | os.PathLike) -> DatasetInfo:
        """The info of a dataset :func:`make_dataset` wrote earlier, from its label map and
        ``metadata.tsv``."""
        info = cls.at(root, (), ())
        names = info.label_map.read_text(encoding="utf-8").splitlines()
        rows = info.metadata.read_text(encoding="utf-8").splitlines()[1:]
        videos = []
        for row in rows:
            f, label, name, split, t, h, w = row.split("\t")
            videos.append(GeneratedVideo(f, int(label), name, split, int(t), int(h), int(w)))
        return dataclasses.replace(info, class_names=tuple(names), videos=tuple(videos))


def _resolve_classes(classes: int | Sequence[str] | None) -> tuple[str, ...]:
    if classes is None:
        return CLASS_NAMES
    if isinstance(classes, (int, np.integer)):
        if not 1 <= int(classes) <= len(CLASS_NAMES):
            raise ValueError(f"classes must be in 1..{len(CLASS_NAMES)}, got {classes}")
        return CLASS_NAMES[: int(classes)]
    names = tuple(classes)
    for name in names:
        _check_class(name)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"classes must be distinct and non-empty, got {names}")
    return names


def _durations(u: np.ndarray, frame_range: tuple[int, int]) -> np.ndarray:
    """Quantiles ``u`` in [0, 1) -> frame counts: the lower half below :data:`CLIP_SPAN`, the
    upper half from it up, when ``frame_range`` straddles it (uniform over the range otherwise).
    """
    lo, hi = frame_range
    if lo < CLIP_SPAN <= hi:
        short = lo + (u / 0.5) * (CLIP_SPAN - lo)  # [lo, CLIP_SPAN)
        long = CLIP_SPAN + ((u - 0.5) / 0.5) * (hi + 1 - CLIP_SPAN)  # [CLIP_SPAN, hi]
        t = np.where(u < 0.5, short, long)
    else:
        t = lo + u * (hi + 1 - lo)
    return np.clip(np.floor(t), lo, hi).astype(np.int64)


def _slug(name: str) -> str:
    return name.replace(" ", "_")


def video_generator(seed: int, class_name: str, index: int) -> np.random.Generator:
    """The generator behind video ``index`` of ``class_name`` in a dataset made with ``seed``.

    Keyed by the class's position in :data:`CLASS_NAMES` (not its label), so a video does not
    change when other classes are added or removed; public so a test or a notebook can
    re-render any file of a dataset: ``render_video(name, video_generator(seed, name, k),
    num_frames=..., size=...)`` with the frame count and size from ``metadata.tsv``.
    """
    _check_class(class_name)
    return np.random.default_rng([seed, 1, CLASS_NAMES.index(class_name), index])


def scene_generator(seed: int, index: int) -> np.random.Generator:
    """The generator behind scene ``index`` of a ``shared_scenes`` dataset: one for all classes,
    so video ``index`` of every class shows the same scene (see :func:`make_dataset`)."""
    return np.random.default_rng([seed, 3, index])


def _write_one(job: tuple) -> None:
    """Render and encode one video (module level so a process pool can pickle it)."""
    path, class_name, seed, k, num_frames, size, fps, style, shared = job
    rng = scene_generator(seed, k) if shared else video_generator(seed, class_name, k)
    frames = render_video(class_name, rng, num_frames=num_frames, size=size, style=style)
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".partial.mp4")
    write_video(tmp, frames, fps)
    os.replace(tmp, path)  # a half-written file never carries the final name


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork avoids re-importing the package (and torch) in every worker; the workers only run
    # numpy and PyAV. Elsewhere (macOS, Windows) spawn is the safe choice.
    if "fork" in multiprocessing.get_all_start_methods() and sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def make_dataset(
    out_dir: str | os.PathLike,
    classes: int | Sequence[str] | None = None,
    videos_per_class: int = 20,
    seed: int = 0,
    val_fraction: float = 0.2,
    *,
    short_side: tuple[int, int] = (64, 112),
    frame_range: tuple[int, int] = (32, 144),
    fps: int = 30,
    workers: int | None = None,
    style: Style | str = "standard",
    unlabeled_per_class: int = 0,
    shared_scenes: bool = False,
) -> DatasetInfo:
    """Write a generated dataset under ``out_dir``; returns what was written.

    Layout: ``videos/<class>/<class>_<k>.mp4`` (H.264), ``train_list.txt`` / ``val_list.txt``
    (mmaction2 ``path label``, relative to ``videos/``), ``pretrain_list.txt`` (the original
    ``path 0 -1`` form, train videos only, as pretraining must not see the val split),
    ``label_map.txt`` (one class name per line) and ``metadata.tsv`` (frames and size per video).

    ``classes``: a count (the first K of :data:`CLASS_NAMES`, so pairs stay together for even
    K) or class names (labels follow their order). Per class, durations and aspect ratios are
    stratified (Latin hypercube over duration quantiles, aspect ratios in turn), so with >= 2
    videos per class each class has one video shorter than :data:`CLIP_SPAN` frames and one
    longer, and with >= 3 a landscape, a portrait and a square one. ``val_fraction`` of each
    class (rounded, at least one when it is > 0 and the class has >= 2 videos, never all) goes
    to val. ``workers`` processes encode in parallel (default: the CPU count; 0 or 1 = in this
    process). The output depends on neither ``workers`` nor which other classes were asked for.

    ``unlabeled_per_class`` more videos per class (``..._u<k>.mp4``, split ``unlabeled``, their own
    stratification, so the labeled videos do not change) join ``pretrain_list.txt`` only: the
    semi-supervised setting in which self-supervised pretraining pays, many unlabeled videos and
    few labeled ones. ``style``: a :class:`Style` or a name in :data:`STYLES`.

    ``shared_scenes``: video ``k`` of every class shows the same scene (background, object,
    size, duration, speed; :func:`scene_generator`), only the motion differs, and the val split
    takes the same ``k`` in every class. A small training set then cannot be memorised by
    appearance (every training scene comes with every label), and val scenes are unseen ones:
    what a model learns must be the motion. Without it each video has its own scene.
    """
    names = _resolve_classes(classes)
    if videos_per_class < 1:
        raise ValueError(f"videos_per_class must be >= 1, got {videos_per_class}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    lo, hi = (int(x) for x in frame_range)
    if not 2 <= lo <= hi:
        raise ValueError(f"frame_range must satisfy 2 <= min <= max, got {frame_range}")
    s_lo, s_hi = (int(x) for x in short_side)
    if not 16 <= s_lo <= s_hi:
        raise ValueError(f"short_side must satisfy 16 <= min <= max, got {short_side}")
    if isinstance(style, str):
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}; known: {', '.join(STYLES)}")
        style = STYLES[style]
    if unlabeled_per_class < 0:
        raise ValueError(f"unlabeled_per_class must be >= 0, got {unlabeled_per_class}")

    start = time.perf_counter()
    root = Path(out_dir)
    video_dir = root / "videos"
    n = videos_per_class
    videos: list[GeneratedVideo] = []
    jobs = []
    for label, name in enumerate(names):
        c = CLASS_NAMES.index(name)  # content is keyed by the global class index, not the label
        (video_dir / _slug(name)).mkdir(parents=True, exist_ok=True)
        for part, count in ((0, n), (2, unlabeled_per_class)):
            if count == 0:
                continue
            # shared scenes: one plan (durations, sizes, split) for every class
            plan = np.random.default_rng([seed, part, len(CLASS_NAMES) if shared_scenes else c])
            u = (plan.permutation(count) + plan.uniform(size=count)) / count
            frames = _durations(u, (lo, hi))
            aspects = plan.permutation(count) + plan.integers(len(ASPECT_RATIOS))
            aspects %= len(ASPECT_RATIOS)
            shorts = [_even(x) for x in plan.uniform(s_lo, s_hi, size=count)]
            if part == 0:
                n_val = round(count * val_fraction)
                if val_fraction > 0 and count >= 2:
                    n_val = max(n_val, 1)
                n_val = min(n_val, count - 1) if count >= 2 else 0
                val = set(plan.permutation(count)[:n_val].tolist())
            for i in range(count):
                # unlabeled videos take indices after the labeled ones: distinct content
                k, tag = (i, "") if part == 0 else (n + i, "u")
                split = ("val" if i in val else "train") if part == 0 else "unlabeled"
                filename = f"{_slug(name)}/{_slug(name)}_{tag}{i:04d}.mp4"
                short = min(max(shorts[i], s_lo), s_hi)
                h, w = _frame_size(short, ASPECT_RATIOS[int(aspects[i])])
                video = GeneratedVideo(filename, label, name, split, int(frames[i]), h, w)
                videos.append(video)
                path = str(video_dir / filename)
                job = (path, name, seed, k, video.num_frames, (h, w), fps, style, shared_scenes)
                jobs.append(job)

    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    workers = min(workers, len(jobs))
    if workers <= 1:
        for job in jobs:
            _write_one(job)
    else:
        # longest first so the pool does not end waiting on one long video
        order = sorted(jobs, key=lambda j: -j[4] * j[5][0] * j[5][1])
        with _pool_context().Pool(workers) as pool:
            for _ in pool.imap_unordered(_write_one, order, chunksize=1):
                pass

    from videomae2.data.annotations import VideoRecord, write_video_list

    train = [v for v in videos if v.split == "train"]
    write_video_list((VideoRecord(v.filename, v.label) for v in train), root / "train_list.txt")
    write_video_list(
        (VideoRecord(v.filename, v.label) for v in videos if v.split == "val"),
        root / "val_list.txt",
    )
    unlabeled = [v for v in videos if v.split == "unlabeled"]
    (root / "pretrain_list.txt").write_text(
        "".join(f"{v.filename} 0 -1\n" for v in train + unlabeled), encoding="utf-8"
    )
    (root / "label_map.txt").write_text("".join(f"{x}\n" for x in names), encoding="utf-8")
    (root / "metadata.tsv").write_text(
        "filename\tlabel\tclass\tsplit\tnum_frames\theight\twidth\n"
        + "".join(
            f"{v.filename}\t{v.label}\t{v.class_name}\t{v.split}\t{v.num_frames}\t{v.height}\t"
            f"{v.width}\n"
            for v in videos
        ),
        encoding="utf-8",
    )
    return DatasetInfo.at(root, names, videos, time.perf_counter() - start)


# ----------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``videomae2 make-dataset OUT --classes K --videos-per-class N ...``."""
    parser.add_argument("out", help="output folder (videos/, *_list.txt, label_map.txt)")
    parser.add_argument(
        "--classes",
        type=int,
        default=len(CLASS_NAMES),
        help=f"use the first K classes (default {len(CLASS_NAMES)}): {', '.join(CLASS_NAMES)}",
    )
    parser.add_argument("--videos-per-class", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument(
        "--size",
        type=int,
        nargs="+",
        default=[64, 112],
        metavar="SHORT",
        help="short side in pixels, one value or a MIN MAX range (default 64 112)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        nargs=2,
        default=[32, 144],
        metavar=("MIN", "MAX"),
        help="frame count range; half the videos fall below 61 when it straddles 61",
    )
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--workers", type=int, default=None, help="default: CPU count")
    parser.add_argument(
        "--style",
        choices=sorted(STYLES),
        default="standard",
        help="standard (small objects, distractors, grain), clear (bigger object, no distractors, "
        "little grain), plain (also flat backgrounds) or demo (plain without noise, a light "
        "object on a dark background, moving the whole video)",
    )
    parser.add_argument(
        "--shared-scenes",
        action="store_true",
        help="video k of every class shows the same scene; only the motion differs",
    )
    parser.add_argument(
        "--unlabeled-per-class",
        type=int,
        default=0,
        help="extra videos per class for pretraining only (pretrain_list.txt)",
    )


def run(args: argparse.Namespace) -> int:
    """Write the dataset and print where it is."""
    if len(args.size) not in (1, 2):
        raise SystemExit("--size takes one value or a MIN MAX range")
    short = (args.size[0], args.size[-1])
    try:
        info = make_dataset(
            args.out,
            classes=args.classes,
            videos_per_class=args.videos_per_class,
            seed=args.seed,
            val_fraction=args.val_fraction,
            short_side=short,
            frame_range=(args.frames[0], args.frames[1]),
            fps=args.fps,
            workers=args.workers,
            style=args.style,
            unlabeled_per_class=args.unlabeled_per_class,
            shared_scenes=args.shared_scenes,
        )
    except ValueError as e:
        raise SystemExit(f"make-dataset: {e}") from None
    print(
        f"wrote {len(info.videos)} videos ({info.num_train} train, {info.num_val} val, "
        f"{info.num_unlabeled} unlabeled, "
        f"{info.num_classes} classes) to {info.video_dir} in {info.seconds:.1f} s"
    )
    for what in ("train_list", "val_list", "pretrain_list", "label_map"):
        print(f"  {what}: {getattr(info, what)}")
    return 0
