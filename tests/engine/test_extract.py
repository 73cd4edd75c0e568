"""`videomae2 extract-features`: windows, the original script's preprocessing (bit-exact), the
standard one, features equal to the model's on each window, and bad videos that never stop a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import videomae2
from videomae2.checkpoint import save_weights
from videomae2.cli import main
from videomae2.data.decode import read_frames
from videomae2.data.synthetic import moving_square_video, write_video
from videomae2.data.transforms import center_crop, normalize, resize_short_side
from videomae2.engine import extract

TINY = dict(embed_dim=48, depth=2, num_heads=2, num_frames=4, img_size=32, patch_size=16)


@pytest.fixture(scope="module")
def tiny_model() -> videomae2.VisionTransformer:
    torch.manual_seed(0)
    model = videomae2.create_model("vit_small_patch16_224", num_classes=5, **TINY).eval()
    with torch.no_grad():  # non-trivial norms and biases
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    paths = {}
    for name, frames, h, w in (
        ("long.clip", 23, 40, 56),
        ("other", 12, 48, 36),
        ("short", 3, 32, 32),
    ):
        paths[name] = root / f"{name}.mp4"
        write_video(paths[name], moving_square_video(frames, h, w, rng))
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (root / "notes.txt").write_text("not a video\n")
    paths["broken"] = root / "broken.mp4"
    return paths


def original_window(frames: np.ndarray, size: int) -> torch.Tensor:
    """The original script's transform of one (T, H, W, 3) window, written from the spec."""
    vid = torch.from_numpy(frames).permute(3, 0, 1, 2).to(torch.float32) / 255  # (3, T, H, W)
    return F.interpolate(vid, size=(size, size), mode="bilinear", align_corners=False)


def test_window_starts_are_the_original_ranges() -> None:
    for n in (0, 15, 16, 17, 19, 20, 100, 101):
        assert list(extract.window_starts(n, 16, 4)) == list(range(0, n - 15, 4))
        assert list(extract.window_starts(n, 16, 16)) == list(range(0, n - 15, 16))
    with pytest.raises(ValueError, match="stride"):
        extract.window_starts(10, 16, 0)


@pytest.mark.parametrize("window,stride", [(4, 1), (4, 3), (4, 4), (3, 7)])
def test_streamed_windows_hold_exactly_their_frames(window: int, stride: int) -> None:
    frames = [np.full((1, 1, 3), i, np.uint8) for i in range(20)]
    prepared = []

    def prepare(f: np.ndarray) -> torch.Tensor:
        prepared.append(int(f[0, 0, 0]))
        return torch.tensor([[float(f[0, 0, 0])]])  # (1 "channel", 1)

    got = list(extract.iter_windows(iter(frames), window, stride, prepare))
    assert [s for s, _ in got] == list(extract.window_starts(20, window, stride))
    for s, frames_of_window in got:
        clip = torch.stack(frames_of_window, dim=1)
        assert clip.shape == (1, window, 1)
        assert clip.flatten().tolist() == list(range(s, s + window))
    # each frame prepared once; frames between windows (stride > window) not at all
    assert prepared == [i for i in range(20) if i % stride < window]


def test_original_preprocessing_is_bit_identical_to_the_whole_window_resize() -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(16, 90, 160, 3), dtype=np.uint8)  # down- and upscaled
    ours = torch.stack([extract.original_frame(f, 224) for f in frames], dim=1)
    assert ours.shape == (3, 16, 224, 224)
    assert torch.equal(ours, original_window(frames, 224))


def test_cli_features_equal_the_model_on_each_window_and_bad_videos_are_listed(
    tiny_model: videomae2.VisionTransformer, videos: dict[str, Path], tmp_path: Path
) -> None:
    ckpt = tmp_path / "tiny.safetensors"
    save_weights(tiny_model, ckpt)
    out = tmp_path / "feats"

    def args(out: Path) -> list[str]:
        argv = ["extract-features", str(videos["long.clip"].parent), "--checkpoint", str(ckpt)]
        return [*argv, "--out", str(out), "--window", "4", "--stride", "3", "--size", "32"]

    argv = [*args(out), "--device", "cpu"]
    assert main(argv) == 1  # two videos failed; the others are written

    frames = read_frames(videos["long.clip"], np.arange(23))
    want = []
    with torch.inference_mode():
        for s in range(0, 23 - 4 + 1, 3):
            x = original_window(frames[s : s + 4], 32)[None]
            want.append(tiny_model.forward_features(x)[0])
    got = np.load(out / "long.clip.npy")  # Path.stem: not cut at the first dot
    assert got.dtype == np.float32 and got.shape == (7, 48)
    np.testing.assert_allclose(got, torch.stack(want).numpy(), rtol=0, atol=1e-5)
    assert np.load(out / "other.npy").shape == (3, 48)

    summary = json.loads((out / "extract_summary.json").read_text())
    assert summary["videos"]["long.clip"]["windows"] == 7
    assert summary["config"]["preprocess"] == "original" and summary["feature_dim"] == 48
    failed = dict(line.split("\t") for line in (out / "failed_videos.txt").read_text().splitlines())
    assert "shorter than one 4-frame window" in failed[str(videos["short"])]
    assert str(videos["broken"]) in failed
    assert not list(out.glob(".*tmp")) and not (out / "short.npy").exists()

    first = {name: np.load(out / name) for name in ("long.clip.npy", "other.npy")}
    # a rerun skips what is there; --overwrite recomputes it with 3 windows per forward
    before = (out / "other.npy").stat().st_mtime_ns
    assert main(argv) == 1
    assert (out / "other.npy").stat().st_mtime_ns == before
    assert main([*argv, "--overwrite", "--batch-size", "3"]) == 1
    np.testing.assert_allclose(np.load(out / "long.clip.npy"), got, rtol=0, atol=1e-5)
    # two decode processes: the same files (bit for bit, same batch), the same failures
    workers = tmp_path / "workers"
    assert main([*args(workers), "--num-workers", "2"]) == 1
    for name, array in first.items():
        np.testing.assert_array_equal(np.load(workers / name), array)
    assert (workers / "failed_videos.txt").read_text().count("\t") == 2


def test_torchrun_ranks_split_the_videos_without_talking(
    tiny_model, videos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = tmp_path / "tiny.safetensors"
    save_weights(tiny_model, ckpt)
    out = tmp_path / "feats"
    argv = ["extract-features", str(videos["other"].parent), "--checkpoint", str(ckpt), "--out"]
    argv += [str(out), "--window", "4", "--size", "32", "--device", "cpu"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")  # sorted: broken, long.clip, other, short -> rank 1's share
    assert main(argv) == 1
    assert sorted(p.name for p in out.glob("*.npy")) == ["long.clip.npy"]
    assert "short.mp4" in (out / "failed_videos.rank1.txt").read_text()
    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 1
    assert sorted(p.name for p in out.glob("*.npy")) == ["long.clip.npy", "other.npy"]
    assert "broken.mp4" in (out / "failed_videos.rank0.txt").read_text()
    assert json.loads((out / "extract_summary.rank0.json").read_text())["videos"].keys() == {
        "other"
    }


def test_standard_preprocessing_and_bf16(tiny_model: videomae2.VisionTransformer, videos) -> None:
    path = str(videos["other"])
    cfg = extract.ExtractConfig(window=4, stride=4, preprocess="standard", size=32, prefetch=0)
    feats, starts = extract.FeatureExtractor(tiny_model, cfg, torch.device("cpu")).video(path)
    assert starts == [0, 4, 8]
    frames = center_crop(resize_short_side(read_frames(path, np.arange(12)), 32), 32)  # (T,32,32,3)
    x = normalize(torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2))
    with torch.inference_mode():
        want = torch.stack([tiny_model.forward_features(x[None, :, s : s + 4])[0] for s in starts])
    np.testing.assert_allclose(feats, want.numpy(), rtol=0, atol=1e-5)

    import copy

    bf16 = extract.ExtractConfig(
        window=4, stride=4, preprocess="standard", size=32, precision="bf16"
    )
    half, _ = extract.FeatureExtractor(copy.deepcopy(tiny_model), bf16, torch.device("cpu")).video(
        path
    )
    assert half.dtype == np.float32 and half.shape == feats.shape
    assert 0 < np.abs(half - feats).max() < 0.1 * np.abs(feats).max()


def test_truncated_video_and_a_pretraining_checkpoint_are_refused(
    tiny_model: videomae2.VisionTransformer, tmp_path: Path
) -> None:
    path = tmp_path / "cut.mp4"
    write_video(path, moving_square_video(40, 32, 32, np.random.default_rng(2)), faststart=True)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    cfg = extract.ExtractConfig(window=4, stride=4, size=32)
    fx = extract.FeatureExtractor(tiny_model, cfg, torch.device("cpu"))
    with pytest.raises(extract.VideoDecodeError, match=r"cut\.mp4"):
        fx.video(str(path))

    from videomae2.models.pretrain import PretrainConfig, PretrainVisionTransformer

    with pytest.raises(TypeError, match="classifier checkpoint"):
        extract.FeatureExtractor(
            PretrainVisionTransformer(
                PretrainConfig(**TINY, decoder_embed_dim=16, decoder_num_heads=2)
            ),
            cfg,
            torch.device("cpu"),
        )


def test_list_file_paths_are_relative_to_the_prefix(tmp_path: Path) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text("a.mp4 3\n\n/abs/b.mkv\nsub/c.avi 1\n")
    assert extract.list_videos(lst) == [
        tmp_path / "a.mp4",
        Path("/abs/b.mkv"),
        tmp_path / "sub/c.avi",
    ]
    assert extract.list_videos(lst, "/data")[0] == Path("/data/a.mp4")
    with pytest.raises(FileNotFoundError, match="neither a folder"):
        extract.list_videos(tmp_path / "missing")
