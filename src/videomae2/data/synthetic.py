"""Small generated videos for tests and demos (no dataset download needed).

:func:`write_video` encodes uint8 RGB frames with PyAV (H.264 / yuv420p by default, the
format of the Kinetics files and the one the spec checked PyAV against decord on).
:func:`moving_square_video` makes content whose every frame and every region differs, so a
wrong frame index or a wrong crop offset changes the pixels.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["moving_square_video", "write_video"]


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: int = 30,
    codec: str = "libx264",
    crf: int = 18,
    faststart: bool = False,
    preset: str = "veryfast",
) -> None:
    """Encode ``frames`` ``(T, H, W, 3)`` uint8 RGB into ``path`` (container from the suffix).

    yuv420p subsamples chroma 2x2, so libx264 (and most H.264/H.265 encoders) refuse odd widths
    or heights: both must be even, checked here with a clear message. ``crf`` is x264's constant
    quality (0 lossless, 18 visually lossless, 23 default); it is passed only to x264/x265.
    ``faststart`` moves the MP4 index to the front, so a file cut short still opens and reports
    its full frame count but cannot decode the tail (a realistic "truncated download").

    x264 runs reproducibly: one thread and MB-tree rate control off (with MB-tree on, the same
    frames encoded to different bytes from run to run with this PyAV build, decoded pixels off by
    up to 53 levels). ``preset`` veryfast keeps B-frames and encodes ~3x faster than medium.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if t == 0:
        raise ValueError("cannot write a video without frames")
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs even width and height, got {w}x{h} (w x h)")
    options = {}
    if codec in ("libx264", "libx265"):
        options = {"crf": str(crf), "preset": preset, "threads": "1"}
    if codec == "libx264":
        options["x264-params"] = "no-mbtree=1"
    container_options = {"movflags": "+faststart"} if faststart else {}
    with av.open(os.fspath(path), mode="w", options=container_options) as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())  # flush delayed (B-)frames


def moving_square_video(
    num_frames: int, height: int, width: int, rng: np.random.Generator
) -> np.ndarray:
    """``(T, H, W, 3)`` uint8: a colour gradient drifting over time plus a bouncing square.

    The gradient makes columns and rows distinguishable (crop offsets), its drift and the square
    make frames distinguishable (frame indices); ``rng`` picks colours and the square's path.
    """
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xs = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    colour = rng.uniform(40, 215, size=3).astype(np.float32)
    square_colour = rng.integers(0, 256, size=3).astype(np.uint8)
    side = max(2, min(height, width) // 4)
    pos = rng.uniform([0, 0], [height - side, width - side])
    vel = rng.uniform(-3, 3, size=2) + 1.0
    out = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        phase = 2 * np.pi * t / 50.0
        for c in range(3):
            wave = 40 * np.sin(phase + 6 * xs + 3 * ys + c)
            out[t, :, :, c] = np.clip(colour[c] * (0.5 + 0.5 * xs + 0.3 * ys) + wave, 0, 255)
        pos = pos + vel
        for k, limit in enumerate((height - side, width - side)):
            if pos[k] < 0 or pos[k] > limit:
                vel[k] = -vel[k]
                pos[k] = np.clip(pos[k], 0, limit)
        y, x = int(pos[0]), int(pos[1])
        out[t, y : y + side, x : x + side] = square_colour
    return out
