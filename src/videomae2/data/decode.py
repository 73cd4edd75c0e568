"""Video decoding: the only module that imports a video decoder.

Everything downstream sees ``uint8`` RGB arrays ``(K, H, W, 3)`` (DESIGN habit 6). The default
backend is PyAV; ``decord`` and ``torchcodec`` can be picked by name and are imported only when
asked for, so neither is a dependency.

Frame counting (why it matters): every sampled index is derived from ``num_frames``; a decoder
that counts one frame more or less than decord shifts every clip (``test-protocol.md`` §4).
decord 0.6.0's ``len(reader)`` is the number of packets of the video stream that its index pass
demuxes (falling back to the container's ``nb_frames`` and then duration x fps only when that
index is empty). For MP4/MOV the container's ``nb_frames`` is the sample count of the stream,
which is the same number, so :func:`open_video` trusts ``stream.frames`` when it is positive
and otherwise (Matroska/WebM and other containers that do not store a count) demuxes the
stream once without decoding and counts its non-empty packets. For H.264 each packet holds one
frame, so this equals the number of frames a full decode returns (tested on generated videos).

Decoding: PyAV decodes sequentially from the start, one thread per decoder (parallelism comes
from DataLoader workers), converts with ``to_ndarray(format='rgb24')`` (bit-identical to decord
on H.264 yuv420p per the spec) and stops after the largest requested index; only the requested
frames are kept.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BACKENDS",
    "FrameCache",
    "VideoDecodeError",
    "VideoInfo",
    "iter_frames",
    "open_video",
    "read_frames",
    "resolve_video_path",
]

BACKENDS = ("pyav", "decord", "torchcodec")


class VideoDecodeError(RuntimeError):
    """A video that cannot be opened or decoded; ``str()`` is ``'path: reason'``.

    One exception type for every per-file failure (missing, empty, truncated, undecodable, no
    frames, index out of range) lets datasets turn a bad file into an error entry without
    swallowing programming errors of other kinds.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """What sampling needs to know about a video before decoding it."""

    num_frames: int
    fps: float
    height: int
    width: int


def resolve_video_path(prefix: str | None, filename: str) -> str:
    """Annotation filename -> path on disk, as mmaction2 builds it.

    ``os.path.join(prefix, filename)`` (an absolute filename overrides the prefix, ``None`` or an
    empty prefix means "relative to the working directory"); then, like mmaction2's
    ``DecordInit``, a name without an extension gets ``.mp4`` appended, so K400 lists may carry
    bare YouTube ids.
    """
    path = os.path.join(prefix, filename) if prefix else filename
    if os.path.splitext(path)[0] == path:
        path += ".mp4"
    return path


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose one of {BACKENDS}")


def _check_file(path: str) -> None:
    # Checked up front so the reason is specific rather than a decoder's generic message.
    if not os.path.exists(path):
        raise VideoDecodeError(path, "file not found")
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")


def _import_optional(name: str):
    try:
        return __import__(name)
    except ImportError as exc:
        raise ImportError(
            f"video backend {name!r} is not installed; install it (pip install {name}) or use "
            "backend='pyav'"
        ) from exc


# ------------------------------------------------------------------------------------- PyAV


def _pyav_open(path: str):
    import av

    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as exc:
        raise VideoDecodeError(path, f"cannot open: {exc}") from exc
    # Like decord's av_find_best_stream, skip cover-art streams (a single attached picture);
    # among real video streams take the first.
    streams = [
        s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic
    ]
    if not streams:
        container.close()
        raise VideoDecodeError(path, "no video stream")
    stream = streams[0]
    stream.codec_context.thread_count = 1
    return container, stream


def _pyav_info(path: str) -> VideoInfo:
    import av

    container, stream = _pyav_open(path)
    try:
        num_frames = int(stream.frames or 0)
        if num_frames <= 0:
            try:
                num_frames = sum(1 for p in container.demux(stream) if p.size > 0)
            except av.FFmpegError as exc:
                raise VideoDecodeError(path, f"cannot demux: {exc}") from exc
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        height, width = int(stream.height or 0), int(stream.width or 0)
    finally:
        container.close()
    if num_frames <= 0:
        raise VideoDecodeError(path, "video stream has no frames")
    return VideoInfo(num_frames=num_frames, fps=fps, height=height, width=width)


def _pyav_frames(path: str) -> Iterator:
    """The decoded ``av.VideoFrame`` objects in order; FFmpeg errors become
    `VideoDecodeError`; the container is closed when the generator ends or is closed."""
    import av

    container, stream = _pyav_open(path)
    decoded = 0
    try:
        for frame in container.decode(stream):
            yield frame
            decoded += 1
    except av.FFmpegError as exc:
        raise VideoDecodeError(path, f"decoding failed after {decoded} frames: {exc}") from exc
    finally:
        container.close()


def _pyav_read(path: str, indices: np.ndarray) -> np.ndarray:
    # positions[f] = output rows that want frame f (duplicates allowed).
    positions: dict[int, list[int]] = {}
    for row, f in enumerate(indices.tolist()):
        positions.setdefault(f, []).append(row)
    last = int(indices.max())
    out: np.ndarray | None = None
    decoded = 0
    with contextlib.closing(_pyav_frames(path)) as frames:
        for i, frame in enumerate(frames):
            decoded = i + 1
            rows = positions.get(i)
            if rows is not None:  # only the requested frames are converted to RGB
                img = frame.to_ndarray(format="rgb24")
                if out is None:
                    out = np.empty((len(indices), *img.shape), dtype=np.uint8)
                elif img.shape != out.shape[1:]:
                    raise VideoDecodeError(
                        path, f"frame {i} has shape {img.shape}, expected {out.shape[1:]}"
                    )
                out[rows] = img
            if i >= last:
                break  # everything needed is decoded; skip the rest of the file
    if decoded <= last:
        if decoded == 0:
            raise VideoDecodeError(path, "no frame could be decoded")
        raise VideoDecodeError(
            path, f"frame index {last} out of range: only {decoded} frames could be decoded"
        )
    assert out is not None
    return out


# ----------------------------------------------------------------------- optional backends


def _decord_info(path: str) -> VideoInfo:
    decord = _import_optional("decord")
    try:
        reader = decord.VideoReader(path, num_threads=1)
        shape = reader[0].shape if len(reader) else (0, 0, 3)
        info = VideoInfo(len(reader), float(reader.get_avg_fps()), int(shape[0]), int(shape[1]))
    except decord.DECORDError as exc:
        raise VideoDecodeError(path, f"decord: {exc}") from exc
    if info.num_frames <= 0:
        raise VideoDecodeError(path, "video stream has no frames")
    return info


def _decord_read(path: str, indices: np.ndarray) -> np.ndarray:
    decord = _import_optional("decord")
    try:
        reader = decord.VideoReader(path, num_threads=1)
        if int(indices.max()) >= len(reader):
            raise VideoDecodeError(
                path, f"frame index {int(indices.max())} out of range ({len(reader)} frames)"
            )
        return reader.get_batch(indices.tolist()).asnumpy()
    except decord.DECORDError as exc:
        raise VideoDecodeError(path, f"decord: {exc}") from exc


def _torchcodec_decoder(path: str):
    _import_optional("torchcodec")
    from torchcodec.decoders import VideoDecoder

    try:
        return VideoDecoder(path, dimension_order="NHWC", num_ffmpeg_threads=1)
    except (RuntimeError, ValueError) as exc:
        raise VideoDecodeError(path, f"torchcodec: {exc}") from exc


def _torchcodec_info(path: str) -> VideoInfo:
    meta = _torchcodec_decoder(path).metadata
    num_frames = int(meta.num_frames or 0)
    if num_frames <= 0:
        raise VideoDecodeError(path, "video stream has no frames")
    return VideoInfo(num_frames, float(meta.average_fps or 0.0), meta.height, meta.width)


def _torchcodec_read(path: str, indices: np.ndarray) -> np.ndarray:
    decoder = _torchcodec_decoder(path)
    try:
        return decoder.get_frames_at(indices.tolist()).data.numpy()
    except (RuntimeError, IndexError, ValueError) as exc:
        raise VideoDecodeError(path, f"torchcodec: {exc}") from exc


# ------------------------------------------------------------------------------ public API

_INFO = {"pyav": _pyav_info, "decord": _decord_info, "torchcodec": _torchcodec_info}
_READ = {"pyav": _pyav_read, "decord": _decord_read, "torchcodec": _torchcodec_read}


def open_video(path: str | os.PathLike, backend: str = "pyav") -> VideoInfo:
    """Frame count (decord-compatible, see module docstring), average fps and frame size.

    Raises :class:`VideoDecodeError` for a missing, empty or unreadable file and for a stream
    without frames.
    """
    _check_backend(backend)
    path = os.fspath(path)
    _check_file(path)
    return _INFO[backend](path)


def read_frames(
    path: str | os.PathLike, indices: Sequence[int] | np.ndarray, backend: str = "pyav"
) -> np.ndarray:
    """Decode the frames at ``indices`` as ``(K, H, W, 3)`` uint8 RGB, in the order given.

    Indices may repeat and need not be sorted (mmaction2's clip-major, wrapped indices are
    neither). Raises :class:`VideoDecodeError` when the file is bad or an index lies past the
    last decodable frame (a truncated file reports more frames than it holds).
    """
    _check_backend(backend)
    path = os.fspath(path)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("read_frames needs at least one index")
    if int(idx.min()) < 0:
        raise VideoDecodeError(path, f"negative frame index {int(idx.min())}")
    _check_file(path)
    return _READ[backend](path, idx)


def _pyav_iter(path: str) -> Iterator[np.ndarray]:
    decoded = 0
    with contextlib.closing(_pyav_frames(path)) as frames:
        for frame in frames:
            yield frame.to_ndarray(format="rgb24")
            decoded += 1
    if decoded == 0:
        raise VideoDecodeError(path, "no frame could be decoded")


def iter_frames(
    path: str | os.PathLike, backend: str = "pyav", chunk: int = 64
) -> Iterator[np.ndarray]:
    """Every frame of the video in order, one ``(H, W, 3)`` uint8 RGB array at a time.

    For long videos (feature extraction over sliding windows): memory stays at one frame, not
    the whole video. PyAV streams the decode; the optional backends read ``chunk`` frames per
    call up to :func:`open_video`'s count. Raises :class:`VideoDecodeError` as `read_frames`
    does, after yielding the frames that did decode.
    """
    _check_backend(backend)
    path = os.fspath(path)
    _check_file(path)
    if backend == "pyav":
        yield from _pyav_iter(path)
        return
    n = open_video(path, backend).num_frames
    for start in range(0, n, chunk):
        yield from read_frames(path, np.arange(start, min(start + chunk, n)), backend)


class FrameCache:
    """Whole decoded videos kept in memory, for small datasets read many times (the demo).

    :meth:`fill` decodes each file once; :meth:`info` and :meth:`read` then stand in for
    :func:`open_video` and :func:`read_frames` (same signatures, same frames: the cache holds what
    ``read_frames`` decodes) and fall back to them for a file that is not cached, e.g. one that
    failed to decode, so errors are reported exactly as without a cache. Fill it in the main
    process before DataLoader workers fork: they then share the arrays copy-on-write.
    """

    def __init__(self, backend: str = "pyav") -> None:
        _check_backend(backend)
        self.backend = backend
        self._videos: dict[str, tuple[VideoInfo, np.ndarray]] = {}
        self.nbytes = 0  # of the cached frames

    def __len__(self) -> int:
        return len(self._videos)

    def fill(self, paths: Sequence[str | os.PathLike], max_bytes: int) -> int:
        """Decode ``paths`` in order until ``max_bytes`` would be exceeded; returns how many are
        cached. Bad files are skipped (left to the fallback)."""
        for path in paths:
            path = os.fspath(path)
            if path in self._videos:
                continue
            try:
                info = open_video(path, self.backend)
                frames = read_frames(path, np.arange(info.num_frames), self.backend)
            except (VideoDecodeError, OSError, ValueError):
                continue
            if self.nbytes + frames.nbytes > max_bytes:
                break
            frames.setflags(write=False)
            self._videos[path] = (info, frames)
            self.nbytes += frames.nbytes
        return len(self._videos)

    def info(self, path: str | os.PathLike) -> VideoInfo:
        hit = self._videos.get(os.fspath(path))
        return hit[0] if hit is not None else open_video(path, self.backend)

    def read(self, path: str | os.PathLike, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        hit = self._videos.get(os.fspath(path))
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if hit is None or idx.size == 0 or int(idx.min()) < 0:
            return read_frames(path, idx, self.backend)
        frames = hit[1]
        if int(idx.max()) >= len(frames):
            return read_frames(path, idx, self.backend)  # raises as without the cache
        return frames[idx]  # fancy indexing: a fresh, writable array
