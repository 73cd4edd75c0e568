"""Frame-index math: which frames of a video feed which clip.

Everything here is pure: integers in, ``np.ndarray`` of frame indices out, randomness only through
an explicit ``np.random.Generator``. No function opens a file, so the exact rules (rounding modes,
case order, wrap-around) can be tested against the worked examples of the spec without a video.

Two families live side by side, on purpose kept separate (DESIGN habit 5: no mode flags deep
inside shared code):

* :func:`sample_frames` reproduces mmaction2 1.2.0 ``SampleFrames`` with every option
  (spec ``test-protocol.md`` §3). This is the exact-reproduction target.
* ``original_*`` / :func:`pretrain_indices` reproduce the original VideoMAE V2 code: dense
  fine-tuning sampling (``finetune-distill.md`` §4), validation (``test-protocol.md`` §14.2), the
  5x3 test buffer and segment math (§14.1) and pretraining (``pretraining.md`` §7).

The RNG streams of numpy's legacy global generator cannot be reproduced with a ``Generator``;
what *is* reproduced is the distribution, the ranges and the case order.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "original_dense_train_indices",
    "original_sparse_test_indices",
    "original_test_buffer_indices",
    "original_test_frame_indices",
    "original_test_segment_starts",
    "original_val_indices",
    "pretrain_indices",
    "sample_frames",
]


def _require_rng(rng: np.random.Generator | None, why: str) -> np.random.Generator:
    # Explicit generators keep DataLoader workers reproducible; silently falling back to a fresh
    # generator would hide a missing seed, so a random mode without one is an error.
    if rng is None:
        raise ValueError(f"{why} draws random numbers: pass rng=np.random.Generator")
    return rng


def _span(clip_len: int, frame_interval: int, test_mode: bool, target_fps, fps) -> float:
    """Clip span in source frames (mmaction2 ``_get_ori_clip_len``).

    Note the asymmetry: the test span ``(clip_len - 1) * fi + 1`` ends on the last sampled frame,
    the training span ``clip_len * fi`` includes the gap after it. With ``target_fps`` the span is
    rescaled by ``fps / target_fps`` in both modes (and is a float).
    """
    if target_fps is not None:
        ratio = fps / target_fps if fps else 1.0
        return max(1.0, clip_len * frame_interval * ratio)
    if test_mode:
        return (clip_len - 1) * frame_interval + 1
    return clip_len * frame_interval


def _test_offsets(
    n: int, clip_len: int, num_clips: int, span: float, twice_sample: bool, target_fps
) -> np.ndarray:
    if clip_len == 1:
        # 2-D models: centres of num_clips equal segments. Offsets stay fractional here; the
        # final int32 cast (after the modulo) truncates them.
        avg = n / float(num_clips)
        base = np.arange(num_clips) * avg
        offsets = base + avg / 2.0
        if twice_sample:
            offsets = np.concatenate([offsets, base])
        return offsets
    max_offset = max(n - span, 0)
    k = num_clips * (2 if twice_sample else 1)
    if k == 1:
        return np.array([max_offset // 2])
    if num_clips == 1:
        # twice_sample with one clip: mmaction2 divides by num_clips - 1 == 0 and crashes.
        raise ValueError("twice_sample with num_clips=1 divides by zero in mmaction2 SampleFrames")
    # The divisor is the *un-doubled* num_clips - 1 even with twice_sample (mmaction2 quirk), so
    # the second half of the twice-sampled offsets runs past max_offset and wraps later.
    if target_fps is not None:
        return np.arange(k) * np.floor(max_offset / float(num_clips - 1))
    # np.round is round-half-to-even: 94.5 -> 94, 119.5 -> 120 (spec §3.4 table).
    return np.round(np.arange(k) * (max_offset / float(num_clips - 1)))


def _train_offsets(
    n: int, num_clips: int, span: float, keep_tail_frames: bool, rng: np.random.Generator
) -> np.ndarray:
    if keep_tail_frames:
        avg = (n - span + 1) / float(num_clips)
        if n > span - 1:
            base = np.arange(num_clips) * avg
            return (base + rng.uniform(0, avg, num_clips)).astype(np.int32)
        return np.zeros(num_clips, dtype=np.int32)
    avg = (n - span + 1) // num_clips
    # The case order matters: case 2 can only trigger when avg == 0 and the video is still longer
    # than both num_clips and the span; case 3 spreads clips deterministically otherwise.
    if avg > 0:
        return np.arange(num_clips) * avg + rng.integers(int(avg), size=num_clips)
    if n > max(num_clips, span):
        return np.sort(rng.integers(int(n - span + 1), size=num_clips))
    if avg == 0:
        ratio = (n - span + 1.0) / num_clips
        return np.around(np.arange(num_clips) * ratio)  # half-to-even, like np.round
    return np.zeros(num_clips, dtype=np.int32)


def sample_frames(
    total_frames: int,
    clip_len: int,
    frame_interval: int = 1,
    num_clips: int = 1,
    *,
    test_mode: bool = False,
    rng: np.random.Generator | None = None,
    temporal_jitter: bool = False,
    twice_sample: bool = False,
    out_of_bound_opt: str = "loop",
    keep_tail_frames: bool = False,
    start_index: int = 0,
    target_fps: float | None = None,
    fps: float | None = None,
) -> np.ndarray:
    """mmaction2 ``SampleFrames``: frame indices, int32, flattened clip-major.

    Returns ``num_clips * clip_len`` indices (twice as many with ``twice_sample``): clip 0's
    frames first, then clip 1's, ... Each clip is ``offset + k * frame_interval``; indices past
    the end are wrapped (``'loop'``: ``mod total_frames``) or clamped to the largest valid index
    of the same clip (``'repeat_last'``), then ``start_index`` is added (1 for 1-based raw-frame
    folders, 0 for videos). With the K400 test settings (16, 4, 5, test_mode) a 300-frame video
    gives clip starts [0, 60, 120, 179, 239].

    ``total_frames`` must be the decoder's frame count (decord's ``len(reader)``): every index is
    derived from it. ``rng`` is required in training mode and with ``temporal_jitter``.
    ``fps`` is the video's average frame rate, used only with ``target_fps``.
    """
    if total_frames < 1:
        raise ValueError(f"total_frames must be >= 1, got {total_frames}")
    if clip_len < 1 or frame_interval < 1 or num_clips < 1:
        raise ValueError(
            "clip_len, frame_interval and num_clips must be >= 1, got "
            f"{clip_len}, {frame_interval}, {num_clips}"
        )
    if out_of_bound_opt not in ("loop", "repeat_last"):
        raise ValueError(
            f"out_of_bound_opt must be 'loop' or 'repeat_last', got {out_of_bound_opt!r}"
        )
    if target_fps is not None and target_fps <= 0:
        raise ValueError(f"target_fps must be positive, got {target_fps}")

    n = total_frames
    span = _span(clip_len, frame_interval, test_mode, target_fps, fps)
    if test_mode:
        offsets = _test_offsets(n, clip_len, num_clips, span, twice_sample, target_fps)
    else:
        offsets = _train_offsets(
            n, num_clips, span, keep_tail_frames, _require_rng(rng, "training-mode sampling")
        )

    if target_fps is not None:
        # Spread clip_len frames evenly over the rescaled span (PySlowFast-style).
        steps = np.linspace(0, span - 1, clip_len).astype(np.int32)
    else:
        steps = np.arange(clip_len) * frame_interval
    inds = (offsets[:, None] + steps[None, :]).reshape(-1)  # (K*clip_len,) clip-major

    if temporal_jitter:
        jitter_rng = _require_rng(rng, "temporal_jitter")
        inds = inds + jitter_rng.integers(frame_interval, size=inds.shape[0])

    inds = inds.reshape(-1, clip_len)  # (K, clip_len)
    if out_of_bound_opt == "loop":
        inds = np.mod(inds, n)
    else:
        valid = inds < n
        # Largest valid index of each clip (0 when none is valid, as in mmaction2).
        last = np.max(np.where(valid, inds, 0), axis=1)
        inds = np.where(valid, inds, last[:, None])
    # Fractional offsets (clip_len == 1, target_fps) are truncated only here, after the wrap.
    return (inds.reshape(-1) + start_index).astype(np.int32)


# --------------------------------------------------------------------------------------------
# The original VideoMAE V2 code (alternative mode)
# --------------------------------------------------------------------------------------------


def _dense_window(n: int, clip_len: int, frame_sample_rate: int, end: int | None) -> np.ndarray:
    """Shared body of the original dense train / validation sampling (one segment)."""
    span = clip_len * frame_sample_rate
    if n < 1:
        raise ValueError(f"video has no frames (n={n})")
    if n <= span:
        # Short video: n // rate points spread over [0, n] (endpoint included), padded with n, then
        # clipped to the last frame, so the clip ends by repeating frame n - 1.
        m = n // frame_sample_rate
        index = np.linspace(0, n, num=m)
        index = np.concatenate([index, np.full(clip_len - m, float(n))])
        return np.clip(index, 0, n - 1).astype(np.int64)
    assert end is not None
    start = end - span
    # 16 points over [start, end] inclusive: spacing span/(clip_len-1) (64/15 ~ 4.27, not 4).
    index = np.linspace(start, end, num=clip_len)
    return np.clip(index, start, end - 1).astype(np.int64)


def original_dense_train_indices(
    total_frames: int,
    rng: np.random.Generator,
    clip_len: int = 16,
    frame_sample_rate: int = 4,
) -> np.ndarray:
    """Original fine-tuning sampling (``finetune-distill.md`` §4, 'original code (dense)').

    n > 64: ``end`` uniform in [64, n - 1], ``start = end - 64``, ``linspace(start, end, 16)``
    clipped to [start, end - 1] and truncated to int64. n <= 64: ``linspace(0, n, n // 4)``
    padded with n to 16 entries and clipped to [0, n - 1]. Returns ``(clip_len,)`` int64.
    """
    span = clip_len * frame_sample_rate
    end = int(rng.integers(span, total_frames)) if total_frames > span else None
    return _dense_window(total_frames, clip_len, frame_sample_rate, end)


def original_val_indices(
    total_frames: int, clip_len: int = 16, frame_sample_rate: int = 4
) -> np.ndarray:
    """Original single-view validation sampling (``test-protocol.md`` §14.2).

    Same as the dense training sampling with the window centred: ``end = (64 + n) // 2``.
    n = 300 gives 118, 122, 126, 130, 135, ... 181. Returns ``(clip_len,)`` int64.
    """
    span = clip_len * frame_sample_rate
    end = (span + total_frames) // 2 if total_frames > span else None
    return _dense_window(total_frames, clip_len, frame_sample_rate, end)


def original_test_buffer_indices(
    total_frames: int, clip_len: int = 16, frame_sample_rate: int = 4
) -> np.ndarray:
    """Frames the original test mode decodes: ``range(0, n, rate)``, padded to ``clip_len``.

    Padding repeats the last buffered frame (no wrap-around, unlike mmaction2's 'loop'). The
    buffer holds ``max(ceil(n / rate), clip_len)`` frames; segments are windows into it.
    """
    if total_frames < 1:
        raise ValueError(f"video has no frames (n={total_frames})")
    index = list(range(0, total_frames, frame_sample_rate))
    index += [index[-1]] * max(clip_len - len(index), 0)
    return np.asarray(index, dtype=np.int64)


def original_test_segment_starts(
    buffer_len: int, clip_len: int = 16, num_segments: int = 5
) -> list[int]:
    """Start of each test segment inside the buffer (§14.1).

    ``tstep = max((T_buf - clip_len) / (num_segments - 1), 0)``; segment ck starts at
    ``int(ck * tstep)`` (truncation). A 75-frame buffer gives [0, 14, 29, 44, 59].
    """
    if num_segments < 2:
        # The original divides by num_segments - 1 and crashes; say so instead.
        raise ValueError("the original test protocol needs num_segments >= 2 (it divides by n - 1)")
    tstep = max((buffer_len - clip_len) / (num_segments - 1), 0.0)
    return [int(ck * tstep) for ck in range(num_segments)]


def original_test_frame_indices(
    total_frames: int,
    clip_len: int = 16,
    frame_sample_rate: int = 4,
    num_segments: int = 5,
) -> np.ndarray:
    """Video frame indices of every original test segment, ``(num_segments, clip_len)`` int64.

    Composition of :func:`original_test_buffer_indices` and
    :func:`original_test_segment_starts`; n = 300 gives segment starts at frames
    0, 56, 116, 176, 236.
    """
    buffer = original_test_buffer_indices(total_frames, clip_len, frame_sample_rate)
    starts = original_test_segment_starts(len(buffer), clip_len, num_segments)
    return np.stack([buffer[s : s + clip_len] for s in starts])


def original_sparse_test_indices(
    total_frames: int, clip_len: int = 16, num_segments: int = 2
) -> np.ndarray:
    """Original sparse (SSv2-style) test sampling, ``(num_segments, clip_len)`` int64.

    ``tick = n / clip_len``; all indices ``int(s * tick / num_segments + tick * x)`` are sorted
    and view ck takes every ``num_segments``-th of them starting at ck.
    """
    if total_frames < 1:
        raise ValueError(f"video has no frames (n={total_frames})")
    tick = total_frames / float(clip_len)
    index = sorted(
        int(s * tick / num_segments + tick * x)
        for s in range(num_segments)
        for x in range(clip_len)
    )
    arr = np.asarray(index, dtype=np.int64)
    return np.stack([arr[ck::num_segments] for ck in range(num_segments)])


def pretrain_indices(
    total_frames: int,
    rng: np.random.Generator,
    clip_len: int = 16,
    frame_interval: int = 4,
    temporal_jitter: bool = False,
) -> np.ndarray:
    """Original pretraining sampling (``pretraining.md`` §7), ``(clip_len,)`` int64.

    n >= 64: start uniform in [0, n - 64], exact stride. Shorter videos start at 0 and the
    position advances by ``frame_interval`` only while the next position is <= n - 2, so the clip
    ends by repeating a frame (never wraps). With ``temporal_jitter`` each frame gets a shift in
    [0, frame_interval) that is dropped when it would leave the video.
    """
    n = total_frames
    if n < 1:
        raise ValueError(f"video has no frames (n={n})")
    span = clip_len * frame_interval
    avg = n - span + 1
    pos = int(rng.integers(avg)) if avg > 0 else 0
    if temporal_jitter:
        skips = rng.integers(frame_interval, size=clip_len)
    else:
        skips = np.zeros(clip_len, dtype=np.int64)
    out = np.empty(clip_len, dtype=np.int64)
    for i in range(clip_len):
        # The original works 1-based: frame (pos + skip) if pos + skip <= n - 1, else pos.
        out[i] = pos + skips[i] if pos + skips[i] <= n - 1 else pos
        if pos + frame_interval <= n - 2:
            pos += frame_interval
    return out
