"""PyAV decoding: frame counts, index order, early stop, errors; synthetic video writing."""

import importlib.util
import os

import av
import numpy as np
import pytest

from videomae2.data.decode import (
    FrameCache,
    VideoDecodeError,
    open_video,
    read_frames,
    resolve_video_path,
)
from videomae2.data.synthetic import moving_square_video, write_video


def decode_all(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("decode")
    rng = np.random.default_rng(0)
    out = {}
    for name, n in [("n30.mp4", 30), ("n61.mp4", 61), ("n62.mp4", 62), ("n40.mkv", 40)]:
        write_video(root / name, moving_square_video(n, 48, 64, rng), fps=25)
        out[name] = root / name
    # index at the front, then cut in half: opens, reports 62 frames, tail undecodable
    write_video(root / "fast.mp4", moving_square_video(62, 48, 64, rng), faststart=True)
    data = (root / "fast.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    out["truncated.mp4"] = root / "truncated.mp4"
    (root / "empty.mp4").write_bytes(b"")
    out["empty.mp4"] = root / "empty.mp4"
    (root / "garbage.mp4").write_bytes(b"not a video at all " * 64)
    out["garbage.mp4"] = root / "garbage.mp4"
    out["missing.mp4"] = root / "missing.mp4"
    return out


@pytest.mark.parametrize(("name", "n"), [("n30.mp4", 30), ("n61.mp4", 61), ("n62.mp4", 62)])
def test_count_equals_decoded_frames_mp4(videos, name, n):
    info = open_video(videos[name])
    assert info.num_frames == n == len(decode_all(videos[name]))
    assert (info.height, info.width) == (48, 64)
    assert info.fps == pytest.approx(25.0)


def test_count_without_container_frame_count(videos):
    # Matroska stores no frame count (stream.frames == 0): packets are counted instead
    with av.open(str(videos["n40.mkv"])) as c:
        assert c.streams.video[0].frames == 0
    assert open_video(videos["n40.mkv"]).num_frames == 40 == len(decode_all(videos["n40.mkv"]))


def test_read_frames_order_and_duplicates(videos):
    ref = decode_all(videos["n62.mp4"])
    idx = [61, 0, 5, 5, 60, 0, 33]
    out = read_frames(videos["n62.mp4"], idx)
    assert out.shape == (7, 48, 64, 3) and out.dtype == np.uint8
    for row, i in enumerate(idx):
        np.testing.assert_array_equal(out[row], ref[i])
    # frames really differ, so the check above can fail on a wrong index
    assert not np.array_equal(ref[5], ref[6])


def test_stops_after_largest_index(videos):
    # the tail of this file cannot be decoded: early frames still read, late ones fail
    path = videos["truncated.mp4"]
    assert open_video(path).num_frames == 62
    out = read_frames(path, [3, 0])
    assert out.shape == (2, 48, 64, 3)
    with pytest.raises(VideoDecodeError) as info:
        read_frames(path, [0, 61])
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("missing.mp4", "file not found"),
        ("empty.mp4", "empty file"),
        ("garbage.mp4", "cannot open"),
    ],
)
def test_bad_files_raise_video_decode_error(videos, name, reason):
    for call in (lambda p: open_video(p), lambda p: read_frames(p, [0])):
        with pytest.raises(VideoDecodeError, match=reason) as info:
            call(videos[name])
        assert isinstance(info.value, RuntimeError)
        assert info.value.path == str(videos[name])
        assert str(info.value) == f"{videos[name]}: {info.value.reason}"


def test_index_out_of_range(videos):
    with pytest.raises(VideoDecodeError, match="out of range: only 30 frames"):
        read_frames(videos["n30.mp4"], [0, 30])
    with pytest.raises(VideoDecodeError, match="negative"):
        read_frames(videos["n30.mp4"], [-1])


def test_backend_selection(videos):
    with pytest.raises(ValueError, match="unknown video backend"):
        open_video(videos["n30.mp4"], backend="opencv")
    for name in ("decord", "torchcodec"):
        if importlib.util.find_spec(name) is None:
            with pytest.raises(ImportError, match=f"{name!r} is not installed"):
                open_video(videos["n30.mp4"], backend=name)


def test_resolve_video_path():
    assert resolve_video_path("data/videos_val", "abseiling/x.mp4") == os.path.join(
        "data/videos_val", "abseiling/x.mp4"
    )
    assert resolve_video_path("data/videos_val", "abc") == os.path.join(
        "data/videos_val", "abc.mp4"
    )
    assert resolve_video_path("data/v", "/abs/x.mkv") == "/abs/x.mkv"  # absolute overrides
    assert resolve_video_path(None, "x.webm") == "x.webm"
    assert resolve_video_path("", "x") == "x.mp4"
    assert resolve_video_path("data.v1", "x") == os.path.join("data.v1", "x.mp4")


def test_write_video_checks(tmp_path):
    frames = np.zeros((3, 47, 64, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="even width and height"):
        write_video(tmp_path / "odd.mp4", frames)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "f.mp4", frames.astype(np.float32))


def test_moving_square_video_is_seeded():
    a = moving_square_video(5, 32, 40, np.random.default_rng(3))
    b = moving_square_video(5, 32, 40, np.random.default_rng(3))
    assert a.shape == (5, 32, 40, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert all(not np.array_equal(a[t], a[t + 1]) for t in range(4))


def test_frame_cache_reads_what_read_frames_decodes(videos):
    cache = FrameCache()
    names = ["n30.mp4", "n61.mp4", "truncated.mp4", "garbage.mp4", "missing.mp4", "n62.mp4"]
    n = cache.fill([videos[k] for k in names], max_bytes=30 * 48 * 64 * 3 + 61 * 48 * 64 * 3)
    assert n == 2 and len(cache) == 2  # the bad files are skipped, then the budget is full
    rng = np.random.default_rng(0)
    for name in ("n30.mp4", "n61.mp4", "n62.mp4"):  # the last one is not cached: a fallback
        info = cache.info(videos[name])
        assert (info.num_frames, info.height, info.width) == (
            open_video(videos[name]).num_frames,
            48,
            64,
        )
        for _ in range(3):  # wrapped, repeated, unsorted indices as the samplers make them
            idx = rng.integers(0, info.num_frames, size=8)
            got = cache.read(videos[name], idx)
            assert np.array_equal(got, read_frames(videos[name], idx))
            got[...] = 0  # a fresh array: writing to it leaves the cache alone
    assert np.array_equal(cache.read(videos["n30.mp4"], [3]), read_frames(videos["n30.mp4"], [3]))
    # errors are exactly those of the uncached calls
    with pytest.raises(VideoDecodeError, match="out of range: only 30 frames"):
        cache.read(videos["n30.mp4"], [0, 30])
    with pytest.raises(VideoDecodeError, match="negative"):
        cache.read(videos["n30.mp4"], [-1])
    with pytest.raises(VideoDecodeError, match="cannot open"):
        cache.info(videos["garbage.mp4"])
