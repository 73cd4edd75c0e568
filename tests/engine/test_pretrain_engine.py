"""The pretraining job end to end on generated videos (CPU, tiny model).

Covers: the loss falls; kill-and-resume is bit-identical; accumulation equals a larger batch;
2-process DDP (torchrun, gloo) and FSDP2 match one process; a bad video is skipped
deterministically; a non-finite loss stops with a clear error; the checkpoint's model entry is
the original layout and loads into a classifier; the data pipeline and its helpers.
"""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_helpers import run_torchrun

from videomae2.config import apply_overrides, load_config
from videomae2.data.train_datasets import (
    PretrainDataset,
    collate_pretrain,
    epoch_batches,
    load_pretrain_records,
    write_synthetic_videos,
)
from videomae2.engine import train_utils as U
from videomae2.engine.pretrain import PretrainJobConfig, run_pretrain

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "pretrain" / "tiny_cpu.py"


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest, and steadiest on a shared host, on one intra-op thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    write_synthetic_videos(folder, 8, num_frames=20, size=(40, 48), seed=1)
    return folder


def overrides(data_root: Path, **extra) -> list[str]:
    base = {
        "model.embed_dim": 32,
        "model.depth": 2,
        "model.num_heads": 2,
        "model.decoder_embed_dim": 32,
        "model.decoder_num_heads": 2,
        "model.decoder_depth": 1,
        "data.data_root": str(data_root),
        "data.synthetic_videos": 0,
        "data.num_frames": 8,  # T' = 4: every clip has the same loss-token count
        "data.input_size": 32,
        "data.num_sample": 2,
        "data.num_workers": 0,
        "optim.scale_lr": False,
        "optim.base_lr": 2e-3,
        "optim.min_lr": 1e-4,
        "optim.warmup_steps": 2,
        "train.batch_size": 2,
        "train.epochs": 4,
        "train.precision": "fp32",
        "train.save_ckpt_freq": 100,
        "train.keep_last": 0,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def make_cfg(work: Path, data_root: Path, **extra) -> PretrainJobConfig:
    cfg = load_config(TINY, PretrainJobConfig)
    apply_overrides(cfg, overrides(data_root, **extra))
    cfg.work_dir = str(work)
    return cfg


def read_log(work: Path) -> list[dict]:
    with open(work / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def ckpt(work: Path, step: int) -> dict:
    return U.load_checkpoint(U.checkpoint_path(work, step))


def assert_states_equal(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if atol == 0.0:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)


def test_loss_falls_over_30_steps(videos, tmp_path):
    cfg = make_cfg(tmp_path, videos, **{"train.epochs": 8, "train.max_steps": 30})
    result = run_pretrain(cfg)
    assert result["step"] == 30
    rows = read_log(tmp_path)
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    losses = [float(r["loss"]) for r in rows]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.05, losses
    assert float(rows[0]["lr"]) == 0.0  # warmup starts at 0
    assert all(float(r["grad_norm"]) > 0 for r in rows)


def test_frame_cache_changes_nothing(videos, tmp_path, capsys):
    """data.cache_mb reads clips from memory (2 workers share it) and trains bit-identically."""
    a, b = tmp_path / "cached", tmp_path / "decoded"
    run_pretrain(make_cfg(a, videos, **{"train.max_steps": 4, "data.num_workers": 2,
                                        "data.cache_mb": 64}))  # fmt: skip
    assert "frame cache: 8 videos" in capsys.readouterr().out
    run_pretrain(make_cfg(b, videos, **{"train.max_steps": 4}))
    assert_states_equal(ckpt(a, 4)["model"], ckpt(b, 4)["model"])


def test_kill_and_resume_is_bit_identical(videos, tmp_path):
    # k = 3 stops mid-epoch (4 steps/epoch); 2k = 6 crosses an epoch boundary after the resume.
    a, b = tmp_path / "interrupted", tmp_path / "straight"
    run_pretrain(make_cfg(a, videos, **{"train.max_steps": 3}))
    assert U.latest_checkpoint(a) == U.checkpoint_path(a, 3)
    run_pretrain(make_cfg(a, videos, **{"train.max_steps": 6}))
    run_pretrain(make_cfg(b, videos, **{"train.max_steps": 6}))
    ca, cb = ckpt(a, 6), ckpt(b, 6)
    assert_states_equal(ca["model"], cb["model"])
    for key, state in cb["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(ca["optimizer"]["state"][key][name], value), (key, name)
    assert torch.equal(ca["rng"][0]["torch"], cb["rng"][0]["torch"])
    assert read_log(a) == [
        {**r, "time": ra["time"], "data_time": ra["data_time"]}
        for r, ra in zip(read_log(b), read_log(a))
    ]
    assert ca["step"] == 6 and ca["epoch"] == 1


def test_checkpoint_contents_and_classifier_load(videos, tmp_path):
    run_pretrain(make_cfg(tmp_path, videos, **{"train.max_steps": 1}))
    c = ckpt(tmp_path, 1)
    assert c["format"] == "videomae2-pretrain-1" and c["config"]["data"]["input_size"] == 32
    keys = set(c["model"])
    assert "mask_token" in keys and "encoder_to_decoder.weight" in keys
    assert all(
        k.startswith(("encoder.", "decoder.", "encoder_to_decoder.", "mask_token")) for k in keys
    )
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in keys)
    from videomae2.models.vit import VisionTransformer, ViTConfig

    vit = VisionTransformer(
        ViTConfig(img_size=32, embed_dim=32, depth=2, num_heads=2, num_frames=8, num_classes=5)
    )
    from videomae2.checkpoint.load import load_weights

    load_weights(vit, U.checkpoint_path(tmp_path, 1))
    assert torch.equal(vit.blocks[1].mlp.fc2.weight, c["model"]["encoder.blocks.1.mlp.fc2.weight"])


def test_accumulation_equals_larger_batch(videos, tmp_path):
    """batch 1 x accum 2 == batch 2: the same items, the same averaged gradient.

    Step 1 has lr 0 (warmup from 0), so step 2's gradients are taken at identical weights and
    Adam's first moments must agree to float rounding. (Weights are not compared bit-for-bit:
    Adam's m/sqrt(v) turns rounding-level differences of near-zero gradients into lr-sized ones.)
    """
    run_pretrain(make_cfg(tmp_path / "big", videos, **{"train.max_steps": 2}))
    extra = {"train.max_steps": 2, "train.batch_size": 1, "train.accum_steps": 2}
    run_pretrain(make_cfg(tmp_path / "accum", videos, **extra))
    big, acc = ckpt(tmp_path / "big", 2), ckpt(tmp_path / "accum", 2)
    for key, state in big["optimizer"]["state"].items():
        m = state["exp_avg"]
        torch.testing.assert_close(
            acc["optimizer"]["state"][key]["exp_avg"], m, atol=1e-8, rtol=1e-4
        )
    assert_states_equal(big["model"], acc["model"], atol=1e-4)


def torchrun(work: Path, data_root: Path, nproc: int, **extra) -> None:
    run_torchrun("pretrain", TINY, work, overrides(data_root, **extra), nproc)


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_process_run_matches_one_process(videos, tmp_path, parallel):
    """2 processes x batch 2 (gloo) == 1 process x batch 4, after 3 steps, to 1e-5."""
    torchrun(tmp_path / "two", videos, 2, **{"train.max_steps": 3, "train.parallel": parallel})
    run_pretrain(
        make_cfg(tmp_path / "one", videos, **{"train.max_steps": 3, "train.batch_size": 4})
    )
    two, one = ckpt(tmp_path / "two", 3), ckpt(tmp_path / "one", 3)
    assert_states_equal(one["model"], two["model"], atol=1e-5)
    assert len(two["rng"]) == 2
    loss_one = [float(r["loss"]) for r in read_log(tmp_path / "one")]
    loss_two = [float(r["loss"]) for r in read_log(tmp_path / "two")]
    np.testing.assert_allclose(loss_two, loss_one, rtol=1e-5)


@pytest.mark.slow
def test_fsdp_resume_matches_straight_run(videos, tmp_path):
    extra = {"train.parallel": "fsdp"}
    torchrun(tmp_path / "a", videos, 2, **{"train.max_steps": 2, **extra})
    torchrun(tmp_path / "a", videos, 2, **{"train.max_steps": 4, **extra})
    torchrun(tmp_path / "b", videos, 2, **{"train.max_steps": 4, **extra})
    assert_states_equal(ckpt(tmp_path / "a", 4)["model"], ckpt(tmp_path / "b", 4)["model"])


def test_non_finite_loss_stops_with_a_clear_error(videos, tmp_path):
    cfg = make_cfg(tmp_path, videos, **{"optim.base_lr": 1e30, "optim.warmup_steps": 0})
    with pytest.raises(FloatingPointError, match=r"loss is (nan|inf) at step"):
        run_pretrain(cfg)


def test_bad_video_is_skipped_deterministically(videos, tmp_path):
    folder = tmp_path / "vids"
    folder.mkdir()
    for p in sorted(videos.iterdir())[:4]:
        (folder / p.name).symlink_to(p)
    (folder / "broken.mp4").write_bytes(b"not a video at all" * 10)
    records = load_pretrain_records("", str(folder))
    bad = next(i for i, r in enumerate(records) if r.path.endswith("broken.mp4"))
    ds = PretrainDataset(records, num_frames=4, input_size=32, num_sample=2, seed=3)
    a, b = ds[(1, bad)], ds[(1, bad)]
    assert a["index"] != bad and a["index"] == b["index"]
    assert len(a["errors"]) >= 1 and "broken.mp4" in a["errors"][0]
    assert torch.equal(a["videos"], b["videos"]) and torch.equal(a["mask"], b["mask"])
    # and the job survives it, listing it in the work dir
    run_pretrain(make_cfg(tmp_path / "w", folder, **{"train.max_steps": 3, "train.batch_size": 1}))
    assert (tmp_path / "w" / "bad_videos.txt").read_text().count("broken.mp4") >= 1


def test_items_do_not_depend_on_workers(videos):
    records = load_pretrain_records("", str(videos))
    ds = PretrainDataset(records, num_frames=4, input_size=32, num_sample=2, seed=0)
    keys = [[(2, 5), (2, 1)], [(2, 7), (2, 0)]]
    outs = []
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(
            ds, batch_sampler=keys, collate_fn=collate_pretrain, num_workers=workers
        )
        outs.append(list(loader))
    for x, y in zip(*outs):
        for k in ("videos", "mask", "decode_mask"):
            assert torch.equal(x[k], y[k])
    first = outs[0][0]
    assert first["videos"].shape == (4, 3, 4, 32, 32)  # 2 videos x num_sample 2
    assert first["mask"].shape == (4, 8) and first["decode_mask"].shape == (4, 8)
    # repeated copies of one video get their own crops and masks
    assert not torch.equal(first["videos"][0], first["videos"][1]) or not torch.equal(
        first["mask"][0], first["mask"][1]
    )
    # another epoch gives other augmentations
    assert not torch.equal(ds[(3, 5)]["videos"], ds[(2, 5)]["videos"])


def test_list_formats_and_folder_agree(videos, tmp_path):
    names = sorted(p.name for p in videos.iterdir())
    (tmp_path / "mm.txt").write_text("".join(f"{n} {i % 3}\n" for i, n in enumerate(names)))
    (tmp_path / "orig.txt").write_text("".join(f"{n} 0 -1\n" for n in names))
    folder = load_pretrain_records("", str(videos))
    mm = load_pretrain_records(str(tmp_path / "mm.txt"), str(videos))
    orig = load_pretrain_records(str(tmp_path / "orig.txt"), str(videos))
    assert folder == mm == orig
    assert all(r.total_frames == -1 for r in folder)
    with pytest.raises(FileNotFoundError):
        load_pretrain_records(str(tmp_path / "missing.txt"), str(videos))


def test_epoch_batches_shard_like_one_big_batch():
    one = epoch_batches(23, 4, epoch=2, seed=5)
    two = [epoch_batches(23, 2, epoch=2, seed=5, rank=r, world_size=2) for r in range(2)]
    assert one.shape == (5, 4) and two[0].shape == two[1].shape == (5, 2)
    for s in range(5):
        assert sorted(one[s]) == sorted(np.concatenate([two[0][s], two[1][s]]))
    assert not np.array_equal(one, epoch_batches(23, 4, epoch=3, seed=5))
    assert np.array_equal(epoch_batches(8, 4, epoch=0, seed=0, shuffle=False).ravel(), np.arange(8))


def test_train_utils_helpers(tmp_path):
    for step in (2, 10, 7):
        U.save_checkpoint({"step": step, "t": torch.ones(2)}, U.checkpoint_path(tmp_path, step))
    assert U.latest_checkpoint(tmp_path) == U.checkpoint_path(tmp_path, 10)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    U.prune_checkpoints(tmp_path, keep_last=2)
    assert [s for s, _ in U.list_checkpoints(tmp_path)] == [7, 10]
    assert U.latest_checkpoint(tmp_path / "nothing") is None

    log = U.CSVLogger(tmp_path / "log.csv", ["step", "loss"])
    for s in range(1, 6):
        log.log({"step": s, "loss": s / 10})
    U.CSVLogger(tmp_path / "log.csv", ["step", "loss"], resume_step=3)
    assert [r["step"] for r in read_log(tmp_path)] == ["1", "2", "3"]

    state = U.capture_rng_state()
    x = torch.rand(3)
    U.restore_rng_state(state)
    assert torch.equal(torch.rand(3), x)

    cpu = torch.device("cpu")
    assert U.select_precision("auto", cpu).name == "fp32"
    bf16 = U.select_precision("bf16", cpu)
    assert bf16.dtype == torch.bfloat16 and not bf16.use_scaler
    with pytest.raises(ValueError, match="fp16 training needs CUDA"):
        U.select_precision("fp16", cpu)
    with pytest.raises(ValueError, match="precision must be"):
        U.select_precision("int8", cpu)
    with pytest.raises(FloatingPointError, match="loss is nan at step 4"):
        U.check_finite(float("nan"), 4)

    lin = torch.nn.Linear(4, 4)
    lin(torch.randn(2, 4)).sum().backward()
    full = float(torch.cat([p.grad.flatten() for p in lin.parameters()]).norm())
    assert U.grad_norm_and_clip(lin.parameters(), None).item() == pytest.approx(full)
    assert U.grad_norm_and_clip(lin.parameters(), full / 2).item() == pytest.approx(full)
    clipped = float(torch.cat([p.grad.flatten() for p in lin.parameters()]).norm())
    assert clipped == pytest.approx(full / 2, rel=1e-4)


def test_cli_parses_and_rejects_unknown_keys(tmp_path):
    from videomae2.cli import build_parser
    from videomae2.engine.pretrain import resolve_config

    args = build_parser().parse_args(
        ["pretrain", str(TINY), "--work-dir", str(tmp_path), "--cfg-options", "train.epochs=3"]
    )
    cfg = resolve_config(args)
    assert cfg.train.epochs == 3 and cfg.work_dir == str(tmp_path)
    args.cfg_options = ["train.epoch=3"]
    with pytest.raises(ValueError, match="unknown config key"):
        resolve_config(args)


class _OracleModel(torch.nn.Module):
    """Predicts the exact normalised targets: a perfect reconstruction must give the input back."""

    def __init__(self) -> None:
        super().__init__()
        from videomae2.models.pretrain import PretrainConfig

        self.config = PretrainConfig(img_size=32, num_frames=4)
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, videos, mask, decode_mask=None):
        from videomae2.losses import pretrain_targets

        decode_vis = mask if decode_mask is None else ~decode_mask
        t = pretrain_targets(videos)
        return t[decode_vis].reshape(videos.shape[0], -1, t.shape[-1])


def test_reconstruction_rows_undo_the_target_normalisation():
    from videomae2.masking import running_cell_mask, tube_mask
    from videomae2.visualize import reconstruct, reconstruction_grid

    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    g = torch.Generator().manual_seed(0)
    mask = tube_mask(1, (2, 2, 2), 0.5, g)
    dmask = running_cell_mask(1, (2, 2, 2), 0.5, g)
    rows = reconstruct(_OracleModel(), clip, mask, dmask)
    assert np.array_equal(rows["input"], clip)
    hidden_decoded = (mask & ~dmask).reshape(2, 2, 2)
    for t in range(4):
        for y in range(2):
            for x in range(2):
                patch = np.s_[t, y * 16 : (y + 1) * 16, x * 16 : (x + 1) * 16]
                if hidden_decoded[t // 2, y, x]:
                    assert np.abs(rows["composite"][patch].astype(int) - clip[patch]).max() <= 1
                elif mask.reshape(2, 2, 2)[t // 2, y, x]:
                    assert (rows["composite"][patch] == 128).all()  # hidden, not decoded: grey
                else:
                    assert np.array_equal(rows["composite"][patch], clip[patch])
    image = reconstruction_grid(_OracleModel(), clip, mask, dmask)
    assert image.size == (130 + 2 * (128 + 2), 4 * (128 + 2))


def test_visualize_cli_on_a_trained_checkpoint(videos, tmp_path):
    from videomae2.cli import main

    run_pretrain(make_cfg(tmp_path, videos, **{"train.max_steps": 1}))
    out = tmp_path / "recon.png"
    video = sorted(videos.iterdir())[0]
    ckpt_path = U.checkpoint_path(tmp_path, 1)
    assert (
        main(["visualize-mae", str(video), "--checkpoint", str(ckpt_path), "--out", str(out)]) == 0
    )
    from PIL import Image

    with Image.open(out) as img:
        assert img.size == (130 + 4 * (128 + 2), 4 * (128 + 2))


@pytest.mark.parametrize("name", ["vit_s", "vit_b", "vit_l", "vit_h", "vit_g", "tiny_cpu"])
def test_recipes_load_and_build_on_meta(name):
    from videomae2.engine.pretrain import build_model
    from videomae2.optim import scale_lr

    cfg = load_config(ROOT / "configs" / "pretrain" / f"{name}.py", PretrainJobConfig)
    with torch.device("meta"):
        model = build_model(cfg)
    assert model.config.num_frames == cfg.data.num_frames
    if name == "tiny_cpu":
        return
    assert model.config.decoder_depth == 4 and cfg.data.num_sample == 4
    assert (cfg.masks.mask_ratio, cfg.masks.decoder_mask_ratio) == (0.9, 0.5)
    assert tuple(cfg.optim.betas) == (0.9, 0.95) and cfg.optim.weight_decay == 0.05
    gpus, peak = {
        "vit_s": (32, 4e-3),
        "vit_b": (32, 4e-3),
        "vit_l": (48, 6e-3),
        "vit_h": (64, 8e-3),
        "vit_g": (64, 4.8e-3),
    }[name]
    assert scale_lr(cfg.optim.base_lr, cfg.train.batch_size, gpus) == pytest.approx(peak)
    assert (cfg.optim.clip_grad is not None) == (name == "vit_g")
    assert cfg.model.grad_checkpointing == (name in ("vit_h", "vit_g"))


def test_raw_frame_folder_list(tmp_path):
    from PIL import Image

    folder = tmp_path / "clip0"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 13):  # 1-based frame files, as the original's raw-frame folders
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
            folder / f"img_{i:05}.jpg"
        )
    (tmp_path / "list.txt").write_text("clip0 1 12\n")
    records = load_pretrain_records(str(tmp_path / "list.txt"), str(tmp_path))
    assert records[0].start_idx == 1 and records[0].total_frames == 12
    ds = PretrainDataset(records, num_frames=4, input_size=32, num_sample=1)
    item = ds[0]
    assert item["videos"].shape == (1, 3, 4, 32, 32) and not item["errors"]


def test_rerun_at_max_steps_does_nothing(videos, tmp_path):
    run_pretrain(make_cfg(tmp_path, videos, **{"train.max_steps": 2}))
    result = run_pretrain(make_cfg(tmp_path, videos, **{"train.max_steps": 2}))
    assert result["step"] == 2 and U.list_checkpoints(tmp_path)[-1][0] == 2
