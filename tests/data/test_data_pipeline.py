"""The whole K400 test pipeline on generated H.264 videos, against an independent computation.

The expected views are computed here from first principles (test-protocol.md §3-7, §13): all
frames decoded with PyAV directly, clip starts from the spec formula, cv2.resize to the size of
the §5 rule, crops sliced at the §6 offsets, views ordered crop-major. Equality is bit-exact.
"""

import pickle

import av
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from videomae2.data.annotations import VideoRecord
from videomae2.data.datasets import VideoTestDataset, collate_views
from videomae2.data.decode import VideoInfo, open_video
from videomae2.data.synthetic import moving_square_video, write_video

# (file stem, width, height, frames)
VIDEOS = [
    ("land340x256_n300", 340, 256, 300),  # the §13 example
    ("port256x340_n62", 256, 340, 62),  # portrait, 62 frames: starts 0, 0, 0, 1, 1
    ("square224_n61", 224, 224, 61),  # square: three identical crops, no wrap
    ("land80x60_n30", 80, 60, 30),  # shorter than a clip: wraps
    ("port48x64_n45", 48, 64, 45),  # upscaled portrait
]


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(1234)
    for stem, w, h, n in VIDEOS:
        write_video(root / f"{stem}.mp4", moving_square_video(n, h, w, rng), fps=30)
    # failure cases
    (root / "empty.mp4").write_bytes(b"")
    (root / "garbage.mp4").write_bytes(b"\x00\x01garbage" * 100)
    write_video(root / "fast.mp4", moving_square_video(62, 48, 64, rng), faststart=True)
    data = (root / "fast.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    return root


def expected_views(path, clip_len=16, interval=4, num_clips=5, crop=224):
    """The spec, written out independently of the package."""
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    n = len(frames)
    span = (clip_len - 1) * interval + 1
    max_offset = max(n - span, 0)
    # Python's round() is half-to-even like np.round: 119.5 -> 120, 94.5 -> 94
    starts = [round(c * max_offset / (num_clips - 1)) for c in range(num_clips)]
    h, w = frames[0].shape[:2]
    factor = crop / min(h, w)
    new_w, new_h = int(w * factor + 0.5), int(h * factor + 0.5)
    if new_h == crop:
        step = (new_w - crop) // 2
        offsets = [(0, 0), (0, 2 * step), (0, step)]  # left, right, middle
    else:
        step = (new_h - crop) // 2
        offsets = [(0, 0), (2 * step, 0), (step, 0)]  # top, bottom, middle
    views = []
    for y, x in offsets:
        for s in starts:
            clip = []
            for k in range(clip_len):
                img = frames[(s + k * interval) % n]
                img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
                clip.append(img[y : y + crop, x : x + crop])
            views.append(np.stack(clip).transpose(3, 0, 1, 2))  # (3, T, H, W)
    return torch.from_numpy(np.stack(views)), n, starts, offsets


@pytest.mark.parametrize("video", VIDEOS, ids=[v[0] for v in VIDEOS])
def test_bit_exact_against_independent_pipeline(video_dir, video):
    stem, _, _, n = video
    ds = VideoTestDataset([VideoRecord(f"{stem}.mp4", 7)], str(video_dir))
    item = ds[0]
    assert item["error"] is None
    assert item["index"] == 0 and item["label"] == 7 and item["img_shape"] == (224, 224)
    x = item["inputs"]
    assert x.dtype == torch.uint8 and x.shape == (15, 3, 16, 224, 224)
    expected, decoded_n, _, _ = expected_views(video_dir / f"{stem}.mp4")
    assert decoded_n == n == open_video(video_dir / f"{stem}.mp4").num_frames
    assert torch.equal(x, expected)


def test_section13_example(video_dir):
    # 340x256, n=300: starts [0, 60, 120, 179, 239], resized 298x224, x = 0, 74, 37
    _, n, starts, offsets = expected_views(video_dir / "land340x256_n300.mp4")
    assert n == 300 and starts == [0, 60, 120, 179, 239]
    assert offsets == [(0, 0), (0, 74), (0, 37)]
    _, _, starts, offsets = expected_views(video_dir / "port256x340_n62.mp4")
    assert starts == [0, 0, 0, 1, 1] and offsets == [(0, 0), (74, 0), (37, 0)]


def test_view_order_with_fake_reader():
    """Frames whose pixels encode (frame index, column): check v = crop * 5 + clip exactly."""
    n, h, w = 300, 224, 298

    def reader(path, indices):
        out = np.zeros((len(indices), h, w, 3), dtype=np.uint8)
        out[..., 0] = (np.asarray(indices) % 256)[:, None, None]
        out[..., 1] = (np.arange(w) % 256)[None, None, :]
        out[..., 2] = (np.asarray(indices) // 256)[:, None, None]
        return out

    ds = VideoTestDataset(
        [VideoRecord("fake", 0)],
        None,
        reader=reader,
        info=lambda p: VideoInfo(n, 30.0, h, w),
    )
    x = ds[0]["inputs"]
    starts, xs = [0, 60, 120, 179, 239], [0, 74, 37]
    for v in range(15):
        crop, clip = divmod(v, 5)
        frame_ids = x[v, 0, :, 0, 0].int() + 256 * x[v, 2, :, 0, 0].int()
        assert frame_ids.tolist() == [starts[clip] + 4 * k for k in range(16)]
        assert int(x[v, 1, 0, 0, 0]) == xs[crop]
    assert ds.path(0) == "fake.mp4"  # a bare name gets .mp4, as DecordInit does


def test_center_crop_single_view_mode(video_dir):
    ds = VideoTestDataset(
        [VideoRecord("land340x256_n300.mp4", 1)], str(video_dir), num_clips=1, num_crops=1
    )
    x = ds[0]["inputs"]
    assert x.shape == (1, 3, 16, 224, 224)
    with av.open(str(video_dir / "land340x256_n300.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    start = (300 - 61) // 2  # single test clip: the middle
    for k in (0, 15):
        img = cv2.resize(frames[start + 4 * k], (298, 224), interpolation=cv2.INTER_LINEAR)
        ref = torch.from_numpy(img[:, 37:261].transpose(2, 0, 1).copy())
        assert torch.equal(x[0, :, k], ref)


def test_bad_videos_give_error_entries(video_dir):
    records = [
        VideoRecord("land80x60_n30.mp4", 3),
        VideoRecord("missing.mp4", 4),
        VideoRecord("empty.mp4", 5),
        VideoRecord("garbage.mp4", 6),
        VideoRecord("truncated.mp4", 7),
        VideoRecord("land80x60_n30", 8),  # bare id resolves to .mp4
    ]
    ds = VideoTestDataset(records, str(video_dir))
    items = [ds[i] for i in range(len(ds))]
    assert [it["error"] is None for it in items] == [True, False, False, False, False, True]
    reasons = {
        1: "file not found",
        2: "empty file",
        3: "cannot open",
        4: "out of range|decoding failed",
    }
    for i, reason in reasons.items():
        assert items[i]["inputs"] is None and items[i]["label"] == records[i].label
        assert items[i]["error"].startswith(str(video_dir / records[i].filename) + ": ")
        assert any(r in items[i]["error"] for r in reason.split("|"))
    assert torch.equal(items[0]["inputs"], items[5]["inputs"])

    batch = collate_views(items)
    assert batch["inputs"].shape == (2, 15, 3, 16, 224, 224)
    assert batch["index"] == [0, 5] and batch["label"].tolist() == [3, 8]
    assert [f["index"] for f in batch["failed"]] == [1, 2, 3, 4]
    assert [f["label"] for f in batch["failed"]] == [4, 5, 6, 7]
    assert all(f["error"] for f in batch["failed"])
    assert collate_views(items[1:3])["inputs"] is None


def test_reader_exceptions_do_not_escape():
    def broken_reader(path, indices):
        raise KeyError("boom")

    ds = VideoTestDataset(
        [VideoRecord("a.mp4", 0)],
        "/x",
        reader=broken_reader,
        info=lambda p: VideoInfo(100, 30, 8, 8),
    )
    item = ds[0]
    assert item["inputs"] is None and item["error"] == "/x/a.mp4: KeyError: 'boom'"


def test_dataloader_and_pickling(video_dir):
    records = [VideoRecord("land80x60_n30.mp4", 0), VideoRecord("port48x64_n45.mp4", 1)]
    ds = VideoTestDataset(records, str(video_dir))
    pickle.loads(pickle.dumps(ds))  # workers started with spawn need this
    loader = DataLoader(ds, batch_size=2, collate_fn=collate_views)
    (batch,) = list(loader)
    assert batch["inputs"].shape == (2, 15, 3, 16, 224, 224)
    assert batch["label"].tolist() == [0, 1]


def test_rejects_bad_configuration():
    with pytest.raises(ValueError, match="num_crops"):
        VideoTestDataset([], None, num_crops=2)
    with pytest.raises(ValueError, match="short_side == crop_size"):
        VideoTestDataset([], None, short_side=256, crop_size=224)
