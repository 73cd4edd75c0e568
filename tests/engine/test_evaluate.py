"""The test job end to end on generated H.264 videos with a tiny model."""

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from videomae2.config import TestConfig, apply_overrides
from videomae2.data.synthetic import write_video
from videomae2.engine.evaluate import build_dataset, run_test, shard_indices
from videomae2.models.registry import create_model

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(embed_dim=32, depth=2, num_heads=2, num_frames=4, img_size=32, num_classes=5)


def tiny_config(tmp: Path, **over) -> TestConfig:
    cfg = TestConfig()
    items = {
        "model.backbone.arch": "vit_small_patch16_224",
        "model.backbone.embed_dim": 32,
        "model.backbone.depth": 2,
        "model.backbone.num_heads": 2,
        "model.backbone.num_frames": 4,
        "model.backbone.img_size": 32,
        "model.cls_head.num_classes": 5,
        "test_dataloader.dataset.ann_file": str(tmp / "list.txt"),
        "test_dataloader.dataset.data_prefix.video": str(tmp / "videos"),
        "test_dataloader.dataset.pipeline.sample_frames.clip_len": 4,
        "test_dataloader.dataset.pipeline.sample_frames.frame_interval": 2,
        "test_dataloader.dataset.pipeline.sample_frames.num_clips": 2,
        "test_dataloader.dataset.pipeline.resize_short": 32,
        "test_dataloader.dataset.pipeline.crop_size": 32,
        "test_dataloader.num_workers": 0,
        "test_dataloader.batch_size": 2,
    }
    items.update(over)
    return apply_overrides(cfg, [f"{k}={v}" for k, v in items.items()])


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Six small videos (landscape, portrait, square, short) and a list file with labels."""
    tmp = tmp_path_factory.mktemp("eval")
    (tmp / "videos").mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i, (w, h, n) in enumerate([(48, 32, 20), (32, 48, 9), (32, 32, 12), (64, 36, 30)] * 2):
        if i >= 6:
            break
        frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
        write_video(tmp / "videos" / f"v{i}.mp4", frames, fps=25)
        lines.append(f"v{i}.mp4 {i % 5}")
    (tmp / "list.txt").write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    model = create_model("vit_small_patch16_224", **TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.save(model.state_dict(), tmp / "tiny.pth")
    return tmp


def test_shard_indices_match_default_sampler():
    # 10 items, 4 ranks: padded to 12 by wrapping, rank r takes every 4th
    assert shard_indices(10, 4, 0) == [0, 4, 8]
    assert shard_indices(10, 4, 1) == [1, 5, 9]
    assert shard_indices(10, 4, 2) == [2, 6, 0]
    assert shard_indices(10, 4, 3) == [3, 7, 1]
    for n, w in [(7, 2), (20, 3), (1, 4)]:
        shards = [shard_indices(n, w, r) for r in range(w)]
        assert all(len(s) == math.ceil(n / w) for s in shards)
        assert set().union(*map(set, shards)) == set(range(n))


def test_dump_matches_direct_computation(videos, tmp_path):
    cfg = tiny_config(videos)
    out = run_test(
        cfg, str(videos / "tiny.pth"), work_dir=tmp_path / "wd", dump=str(tmp_path / "r.pkl")
    )
    with open(tmp_path / "r.pkl", "rb") as f:
        dump = pickle.load(f)
    assert len(dump) == 6 and out["num_failed"] == 0
    # independent: the model applied view by view to the dataset's own views, softmax, mean
    model = create_model("vit_small_patch16_224", **TINY)
    model.load_state_dict(torch.load(videos / "tiny.pth", weights_only=True))
    model.eval()
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1, 1)
    dataset = build_dataset(cfg)
    scores, labels = [], []
    for i, entry in enumerate(dump):
        item = dataset[i]
        assert item["inputs"].shape == (6, 3, 4, 32, 32)  # 2 clips x 3 crops
        with torch.no_grad():
            probs = [model(((v.float() - mean) / std)[None]).softmax(-1)[0] for v in item["inputs"]]
        expected = torch.stack(probs).mean(0)
        assert set(entry) == {"gt_label", "pred_score", "pred_label", "num_classes", "img_shape"}
        assert entry["pred_score"].dtype == torch.float32 and entry["pred_score"].shape == (5,)
        assert torch.allclose(entry["pred_score"], expected, atol=1e-6)
        assert entry["gt_label"].tolist() == [i % 5]
        assert entry["pred_label"].tolist() == [int(expected.argmax())]
        assert entry["num_classes"] == 5 and entry["img_shape"] == (32, 32)
        scores.append(entry["pred_score"].numpy())
        labels.append(i % 5)
    metrics = json.loads((tmp_path / "wd" / "metrics.json").read_text())
    top1 = float(np.mean(np.argmax(scores, 1) == np.array(labels)))
    assert metrics["acc/top1"] == pytest.approx(top1)
    assert metrics["acc/top1"] == out["acc/top1"]
    assert (tmp_path / "wd" / "config.json").exists()


def test_bad_videos_are_reported_not_fatal(videos, tmp_path):
    lst = tmp_path / "list.txt"
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    (tmp_path / "empty.mp4").write_bytes(b"")
    good = (videos / "videos" / "v0.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(good[: len(good) // 3])
    (tmp_path / "v0.mp4").write_bytes(good)
    lst.write_text("v0.mp4 0\nbroken.mp4 1\nmissing.mp4 2\nempty.mp4 3\ntruncated.mp4 4\n")
    over = {
        "test_dataloader.dataset.ann_file": str(lst),
        "test_dataloader.dataset.data_prefix.video": str(tmp_path),
    }
    out = run_test(
        tiny_config(videos, **over),
        str(videos / "tiny.pth"),
        work_dir=tmp_path / "wd",
        dump=str(tmp_path / "r.pkl"),
    )
    assert out["num_scored"] >= 1 and out["num_failed"] >= 3
    failed = (tmp_path / "wd" / "failed_videos.txt").read_text()
    for name in ("broken.mp4", "missing.mp4", "empty.mp4"):
        assert name in failed
    with open(tmp_path / "r.pkl", "rb") as f:
        assert len(pickle.load(f)) == out["num_scored"]
    strict = tiny_config(videos, **over, **{"test_cfg.strict": True})
    with pytest.raises(RuntimeError, match=r"broken\.mp4"):
        run_test(strict, str(videos / "tiny.pth"), work_dir=tmp_path / "wd2")


def test_bad_label_and_dump_name(videos, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("v0.mp4 0\nv1.mp4 7\n")
    cfg = tiny_config(videos, **{"test_dataloader.dataset.ann_file": str(lst)})
    with pytest.raises(ValueError, match=r"list.txt: entry 2 .*label 7"):
        run_test(cfg, str(videos / "tiny.pth"), work_dir=tmp_path)
    with pytest.raises(ValueError, match=r"\.pkl"):
        run_test(cfg, str(videos / "tiny.pth"), work_dir=tmp_path, dump="x.json")


def _cli(args: list[str], cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _write_config(videos: Path, path: Path) -> None:
    cfg = tiny_config(videos)
    path.write_text(
        "from videomae2.config import TestConfig, from_dict\n"
        f"config = from_dict(TestConfig, {dict(__import__('dataclasses').asdict(cfg))!r})\n"
    )


def test_tools_test_py_cli_and_torchrun_match(videos, tmp_path):
    """tools/test.py with mmaction2's options; a 2-process torchrun run dumps the same results."""
    cfg_path = tmp_path / "tiny_cfg.py"
    _write_config(videos, cfg_path)
    ckpt = str(videos / "tiny.pth")
    single = _cli(
        [
            sys.executable,
            str(ROOT / "tools" / "test.py"),
            str(cfg_path),
            ckpt,
            "--dump",
            str(tmp_path / "one.pkl"),
            "--work-dir",
            str(tmp_path / "w1"),
            "--cfg-options",
            "test_dataloader.num_workers=1",
            "model.cls_head.average_clips=prob",
        ],
        tmp_path,
    )
    assert single.returncode == 0, single.stderr
    assert "acc/top1" in single.stdout
    multi = _cli(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29617",
            str(ROOT / "tools" / "test.py"),
            str(cfg_path),
            ckpt,
            "--launcher",
            "pytorch",
            "--dump",
            str(tmp_path / "two.pkl"),
            "--work-dir",
            str(tmp_path / "w2"),
        ],
        tmp_path,
        {"OMP_NUM_THREADS": "1"},
    )
    assert multi.returncode == 0, multi.stderr
    with open(tmp_path / "one.pkl", "rb") as f:
        one = pickle.load(f)
    with open(tmp_path / "two.pkl", "rb") as f:
        two = pickle.load(f)
    assert len(one) == len(two) == 6
    for a, b in zip(one, two):
        assert torch.equal(a["gt_label"], b["gt_label"])
        assert torch.allclose(a["pred_score"], b["pred_score"], atol=1e-6)
    m1 = json.loads((tmp_path / "w1" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "w2" / "metrics.json").read_text())
    assert m1["acc/top1"] == m2["acc/top1"] and m2["world_size"] == 2


def test_predict_one_video_matches_the_test_job(videos, tmp_path, capsys):
    from videomae2.cli import main

    cfg_path = tmp_path / "tiny_cfg.py"
    _write_config(videos, cfg_path)
    (tmp_path / "names.txt").write_text("a\nb\nc\nd\ne\n")
    video = str(videos / "videos" / "v1.mp4")
    args = ["predict", video, "--checkpoint", str(videos / "tiny.pth"), "--config", str(cfg_path)]
    assert main([*args, "--label-map", str(tmp_path / "names.txt"), "--json", "--topk", "5"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["name"] for r in rows] == ["abcde"[r["class"]] for r in rows]
    run_test(
        tiny_config(videos),
        str(videos / "tiny.pth"),
        work_dir=tmp_path / "w",
        dump=str(tmp_path / "r.pkl"),
    )
    with open(tmp_path / "r.pkl", "rb") as f:
        expected = pickle.load(f)[1]["pred_score"]
    for r in rows:
        assert r["score"] == pytest.approx(float(expected[r["class"]]), abs=1e-6)
    assert rows[0]["class"] == int(expected.argmax())


def tiny_test_config(**head):
    """A TestConfig for a 1-block, 32-wide ViT on 4x32x32 views, 5 classes."""
    from videomae2.config import BackboneConfig, HeadConfig, ModelConfig, TestConfig

    backbone = BackboneConfig(
        arch="vit_small_patch16_224", num_frames=4, img_size=32, embed_dim=32, depth=1, num_heads=2
    )
    return TestConfig(
        model=ModelConfig(backbone=backbone, cls_head=HeadConfig(num_classes=5, **head))
    )


def test_bf16_precision_builds_a_bf16_recognizer(tmp_path):
    """`--bf16` (test_cfg.precision) must change the arithmetic: autocast on, matmul weights
    rounded once, and scores close to (but not equal to) fp32."""
    from videomae2.engine.evaluate import build_recognizer

    def build(precision):
        cfg = tiny_test_config(average_clips=None)  # raw logits
        cfg.test_cfg.precision = precision
        return cfg

    from videomae2.models.registry import create_model

    cfg = build("fp32")
    torch.manual_seed(0)
    model = create_model(
        "vit_small_patch16_224", num_classes=5, **cfg.model.backbone.create_kwargs()
    )
    with torch.no_grad():
        model.head.weight.normal_()  # the fresh head is ~0: logits would be 0 in any precision
    torch.save(model.state_dict(), ckpt := tmp_path / "w.pth")
    fp32, bf16 = build_recognizer(cfg, str(ckpt)), build_recognizer(build("bf16"), str(ckpt))
    assert fp32.autocast_dtype is None and bf16.autocast_dtype == torch.bfloat16
    assert bf16.model.blocks[0].mlp.fc1.weight.dtype == torch.bfloat16
    x = torch.randint(0, 256, (1, 2, 3, 4, 32, 32), dtype=torch.uint8)
    with torch.inference_mode():
        a, b = fp32(x), bf16(x)
    assert not torch.equal(a, b)
    assert torch.allclose(a, b, atol=0.1, rtol=0.02)  # logits of size ~5, bf16 has 8 bits


def test_compile_with_bf16_on_cpu_is_refused_before_any_work(tmp_path):
    """torch 2.13's inductor returns NaN logits for this model under CPU bf16 autocast; the job
    refuses the combination up front instead of writing a result file of NaNs."""
    from videomae2.config import TestConfig
    from videomae2.engine.evaluate import run_test

    cfg = TestConfig()
    cfg.test_cfg.compile = True
    cfg.test_cfg.precision = "bf16"
    cfg.test_cfg.device = "cpu"
    with pytest.raises(ValueError, match=r"compile.*bf16"):
        run_test(cfg, str(tmp_path / "missing.pth"), work_dir=str(tmp_path / "w"))
    assert not (tmp_path / "w" / "metrics.json").exists()


def test_views_per_forward_auto_is_one_on_cpu_and_all_on_gpu():
    """test_cfg.max_views_per_forward=0 means one view per forward on the CPU (cache-resident
    activations, measured faster) and the whole batch on a GPU; explicit values are kept."""
    from videomae2.engine.evaluate import views_per_forward

    assert views_per_forward(0, torch.device("cpu")) == 1
    assert views_per_forward(0, torch.device("cuda")) is None
    assert views_per_forward(4, torch.device("cpu")) == 4
    assert views_per_forward(4, torch.device("cuda")) == 4
    with pytest.raises(ValueError, match="max_views_per_forward must be >= 0"):
        views_per_forward(-1, torch.device("cpu"))


def test_cpu_recognizer_scores_one_view_at_a_time_and_agrees_with_all_at_once():
    from videomae2.engine.evaluate import build_recognizer

    cfg = tiny_test_config()
    torch.manual_seed(0)
    auto = build_recognizer(cfg, None, "cpu")
    assert auto.max_views_per_forward == 1
    calls = []
    auto.model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    x = torch.randint(0, 256, (2, 3, 3, 4, 32, 32), dtype=torch.uint8)
    with torch.inference_mode():
        a = auto(x)
        auto.max_views_per_forward = None
        b = auto(x)
    assert calls == [1] * 6 + [6]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
