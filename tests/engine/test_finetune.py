"""The fine-tuning job end to end on the generated temporal dataset (CPU, tiny model).

Covers: layer-decay groups and scales (the spec's ViT-B example) and weight-decay exclusions;
a whole run (train, per-epoch validation, best/last checkpoints, final multi-view test through
the test job); kill-and-resume is bit-identical (EMA, mixing, RandAugment, erasing, drop path
on); starting from a pretraining checkpoint; union label-space training; 2-process DDP equals
one process; every recipe builds with the spec's learning rates.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_helpers import run_torchrun

from videomae2.cli import main
from videomae2.config import apply_overrides, load_config
from videomae2.engine import train_utils as U
from videomae2.engine.finetune import (
    FinetuneJobConfig,
    FinetuneModelConfig,
    FinetuneOptimConfig,
    build_classifier,
    build_param_groups,
    build_test_config,
    build_train_dataset,
    init_weights,
    run_finetune,
)

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "finetune" / "tiny_cpu.py"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from videomae2.data.generated import make_dataset

    root = tmp_path_factory.mktemp("gen")
    make_dataset(
        root,
        classes=4,
        videos_per_class=4,
        seed=0,
        short_side=(32, 32),
        frame_range=(16, 40),
        workers=0,
    )
    return root


def overrides(root: Path, **extra) -> list[str]:
    base = {
        "model.embed_dim": 32,
        "model.depth": 2,
        "model.num_heads": 2,
        "model.num_classes": 4,
        "model.drop_path_rate": 0.1,
        "data.ann_files": f"['{root}/train_list.txt']",
        "data.data_prefixes": f"['{root}/videos']",
        "data.val_ann_file": f"{root}/val_list.txt",
        "data.val_data_prefix": f"{root}/videos",
        "data.generated_videos_per_class": 0,
        "data.num_frames": 4,
        "data.frame_interval": 2,
        "data.input_size": 32,
        "data.short_side": 0,
        "data.num_sample": 2,
        "data.num_workers": 0,
        "aug.translate_const": 8,
        "optim.scale_lr": False,
        "optim.base_lr": 2e-3,
        "optim.min_lr": 1e-5,
        "optim.warmup_steps": 2,
        "train.batch_size": 2,
        "train.epochs": 2,
        "train.precision": "fp32",
        "train.val_every": 1,
        "train.val_batch_size": 2,
        "train.save_ckpt_freq": 1,
        "train.keep_last": 0,
        "test.num_clips": 2,
        "test.batch_size": 2,
        "test.num_workers": 0,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def make_cfg(work: Path, root: Path, **extra) -> FinetuneJobConfig:
    cfg = load_config(TINY, FinetuneJobConfig)
    apply_overrides(cfg, overrides(root, **extra))
    cfg.work_dir = str(work)
    return cfg


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_layer_decay_groups_vit_b():
    """Spec example, ViT-B ld 0.75: patch_embed 0.0238, block 0 0.0317, block 11 0.75, head 1."""
    with torch.device("meta"):
        model = build_classifier(FinetuneModelConfig(arch="vit_base_patch16_224"), 16, 224)
    groups = build_param_groups(model, {}, FinetuneOptimConfig(layer_decay=0.75))
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())

    def scale(name: str) -> float:
        return by_param[id(named[name])]["lr_scale"]

    assert scale("patch_embed.proj.weight") == pytest.approx(0.0238, abs=5e-5)
    assert scale("blocks.0.attn.qkv.weight") == pytest.approx(0.0317, abs=5e-5)
    assert scale("blocks.11.mlp.fc2.weight") == pytest.approx(0.75)
    assert scale("head.weight") == scale("fc_norm.weight") == 1.0
    for i in range(12):
        assert scale(f"blocks.{i}.norm1.weight") == pytest.approx(0.75 ** (12 - i))
    wd = {n: by_param[id(p)]["weight_decay"] for n, p in named.items()}
    assert wd["blocks.3.attn.qkv.weight"] == wd["head.weight"] == 0.05
    for n in ("blocks.3.attn.q_bias", "blocks.3.norm1.weight", "head.bias", "fc_norm.bias"):
        assert wd[n] == 0.0, n
    assert sum(len(g["params"]) for g in groups) == len(named)
    assert len({g["lr_scale"] for g in groups}) == 14  # L + 2 distinct layer ids
    flat = build_param_groups(model, {}, FinetuneOptimConfig(layer_decay=1.0))
    assert {g["lr_scale"] for g in flat} == {1.0}


def test_whole_run_validates_keeps_best_and_tests(data, tmp_path):
    work = tmp_path / "run"
    args = ["finetune", str(TINY), "--work-dir", str(work), "--cfg-options", *overrides(data)]
    assert main(args) == 0
    result = json.loads((work / "result.json").read_text())
    rows = read_csv(work / "log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 13))  # 12 videos / batch 2 x 2
    assert float(rows[0]["lr"]) == 0.0  # warmup starts at 0
    val = read_csv(work / "val_log.csv")
    assert [int(r["epoch"]) for r in val] == [1, 2]
    assert {p.name for p in work.glob("checkpoint-*.pth")} == {
        "checkpoint-00000006.pth",
        "checkpoint-00000012.pth",
        "checkpoint-best.pth",
    }
    best = U.load_checkpoint(work / "checkpoint-best.pth")
    assert best["epoch"] == result["best_epoch"]
    assert best["metrics"]["acc/top1"] == pytest.approx(result["best_top1"])
    # the final test is the test job's, on the final weights, with the 2x3-view protocol
    metrics = json.loads((work / "test" / "metrics.json").read_text())
    assert metrics["num_videos"] == 4 and result["test"]["acc/top1"] == metrics["acc/top1"]
    test_cfg = json.loads((work / "test" / "config.json").read_text())
    assert test_cfg["test_dataloader"]["dataset"]["pipeline"]["sample_frames"]["num_clips"] == 2
    final = U.load_checkpoint(work / "final_model.pth")
    last = U.load_checkpoint(work / "checkpoint-00000012.pth")
    for k, v in last["model"].items():
        assert torch.equal(final["model"][k], v)
    # the final model loads anywhere through the checkpoint loader (strict)
    from videomae2.checkpoint import load_weights

    model = build_classifier(make_cfg(work, data).model, 4, 32)
    assert load_weights(model, work / "final_model.pth").complete


def test_frame_cache_changes_nothing(data, tmp_path, capsys):
    """data.cache_mb: training and validation read from memory, with the same results."""
    extra = {"train.max_steps": 6, "test.enabled": False, "train.epochs": 1}
    a, b = tmp_path / "cached", tmp_path / "decoded"
    run_finetune(make_cfg(a, data, **extra, **{"data.cache_mb": 64, "data.num_workers": 2}))
    out = capsys.readouterr().out
    assert out.count("frame cache:") == 2  # the training and the validation set
    run_finetune(make_cfg(b, data, **extra))
    ca, cb = (U.load_checkpoint(U.checkpoint_path(w, 6)) for w in (a, b))
    for k, v in cb["model"].items():
        assert torch.equal(ca["model"][k], v), k
    assert read_csv(a / "val_log.csv") == read_csv(b / "val_log.csv")


def test_kill_and_resume_is_bit_identical(data, tmp_path):
    # 12 steps per epoch; stop at 4 (mid-epoch 0), resume to the end of epoch 2 (24 steps)
    extra = {
        "train.model_ema": True,
        "train.ema_decay": 0.9,
        "train.epochs": 2,
        "train.batch_size": 1,
        "test.enabled": False,
        "aug.erase_prob": 0.5,
    }
    a, b = tmp_path / "interrupted", tmp_path / "straight"
    r1 = run_finetune(make_cfg(a, data, **extra, **{"train.max_steps": 4}))
    assert r1["stopped"] and U.latest_checkpoint(a) == U.checkpoint_path(a, 4)
    run_finetune(make_cfg(a, data, **extra))
    run_finetune(make_cfg(b, data, **extra))
    ca, cb = (U.load_checkpoint(U.checkpoint_path(w, 24)) for w in (a, b))
    for key in ("model", "model_ema"):
        for k, v in cb[key].items():
            assert torch.equal(ca[key][k], v), (key, k)
    for pid, state in cb["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(ca["optimizer"]["state"][pid][name], value), (pid, name)
    assert torch.equal(ca["rng"][0]["torch"], cb["rng"][0]["torch"])
    assert ca["best"] == cb["best"]
    strip = lambda rows: [{k: v for k, v in r.items() if "time" not in k} for r in rows]  # noqa: E731
    assert strip(read_csv(a / "log.csv")) == strip(read_csv(b / "log.csv"))
    assert read_csv(a / "val_log.csv") == read_csv(b / "val_log.csv")


def test_starts_from_a_pretraining_checkpoint(tmp_path):
    from videomae2.models.registry import create_model

    pt = create_model(
        "pretrain_videomae_small_patch16_224",
        embed_dim=32,
        depth=2,
        num_heads=2,
        decoder_embed_dim=16,
        decoder_num_heads=2,
        decoder_depth=1,
        num_frames=4,
        img_size=32,
    )
    torch.save({"model": pt.state_dict(), "step": 3}, tmp_path / "pt.pth")
    mc = FinetuneModelConfig(
        arch="vit_small_patch16_224",
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=5,
        pretrained=str(tmp_path / "pt.pth"),
    )
    torch.manual_seed(0)
    model = build_classifier(mc, 4, 32)
    head = model.head.weight.clone()
    report = init_weights(model, mc)
    enc = pt.state_dict()
    assert torch.equal(model.blocks[1].attn.qkv.weight, enc["encoder.blocks.1.attn.qkv.weight"])
    assert torch.equal(model.patch_embed.proj.weight, enc["encoder.patch_embed.proj.weight"])
    assert torch.equal(model.head.weight, head) and "head.weight" in report
    # init_scale 0.001: the fresh head is tiny
    assert model.head.weight.abs().max() < 0.01
    scratch = FinetuneModelConfig(arch="vit_small_patch16_224", embed_dim=32, depth=2, num_heads=2)
    assert "scratch" in init_weights(build_classifier(scratch, 4, 32), scratch)


def test_union_label_space_training_set(data, tmp_path):
    """Two sources, each with an index list into a 6-class union label space."""
    (tmp_path / "a.json").write_text("[0, 2, 4, 5]")
    (tmp_path / "b.json").write_text("[1, 3, 4, 0]")
    train = f"{data}/train_list.txt"
    cfg = make_cfg(
        tmp_path,
        data,
        **{
            "model.num_classes": 6,
            "data.ann_files": f"['{train}', '{train}']",
            "data.data_prefixes": f"['{data}/videos', '{data}/videos']",
            "data.label_indices": f"['{tmp_path}/a.json', '{tmp_path}/b.json']",
        },
    )
    ds = build_train_dataset(cfg, 6)
    raw = [int(line.split()[1]) for line in (data / "train_list.txt").read_text().splitlines()]
    assert ds.labels == [[0, 2, 4, 5][x] for x in raw] + [[1, 3, 4, 0][x] for x in raw]
    bad = make_cfg(tmp_path, data, **{"model.num_classes": 3})
    with pytest.raises(ValueError, match="model has 3 classes"):
        build_train_dataset(bad, 3)


def test_test_config_mirrors_the_run(data, tmp_path):
    from videomae2 import distributed as D

    cfg = make_cfg(tmp_path, data, **{"test.num_clips": 5, "test.crop": "center_crop"})
    env = D.DistEnv(0, 1, 0, torch.device("cpu"))
    tc = build_test_config(cfg, env, U.select_precision("fp32", env.device))
    bb = tc.model.backbone
    assert (bb.arch, bb.embed_dim, bb.depth, bb.num_frames, bb.img_size) == (
        "vit_small_patch16_224",
        32,
        2,
        4,
        32,
    )
    ds = tc.test_dataloader.dataset
    assert ds.ann_file == f"{data}/val_list.txt" and ds.pipeline.crop == "center_crop"
    assert ds.pipeline.sample_frames.num_clips == 5 and ds.pipeline.sample_frames.test_mode


def test_two_processes_match_one(data, tmp_path):
    """torchrun 2 x batch 1 (gloo) == 1 process x batch 2 after 3 steps (no mixing, no drop
    path: the per-process mixing is the only intended difference); validation equal too."""
    extra = {
        "aug.mixup": 0.0,
        "aug.cutmix": 0.0,
        "model.drop_path_rate": 0.0,
        "train.max_steps": 3,
        "train.epochs": 1,
        "test.enabled": False,
    }
    options = overrides(data, **extra, **{"train.batch_size": 1})
    run_torchrun("finetune", TINY, tmp_path / "two", options)
    run_finetune(make_cfg(tmp_path / "one", data, **extra))
    two = U.load_checkpoint(U.checkpoint_path(tmp_path / "two", 3))
    one = U.load_checkpoint(U.checkpoint_path(tmp_path / "one", 3))
    for k, v in one["model"].items():
        torch.testing.assert_close(two["model"][k], v, atol=1e-5, rtol=0, msg=k)
    assert len(two["rng"]) == 2
    l1 = [float(r["loss"]) for r in read_csv(tmp_path / "one" / "log.csv")]
    l2 = [float(r["loss"]) for r in read_csv(tmp_path / "two" / "log.csv")]
    np.testing.assert_allclose(l2, l1, rtol=1e-5)


RECIPES = {
    # name: (gpus, actual lr, layer decay, drop path, head drop, wd, warmup, epochs, clip, classes)
    "vit_b_k400_ft": (32, 1.4e-3, 0.75, 0.1, 0.0, 0.05, 5, 90, None, 400),
    "vit_b_k710_ft": (32, 1.4e-3, 0.75, 0.1, 0.0, 0.05, 5, 90, None, 710),
    "vit_b_ssv2_ft": (16, 2e-3, 0.65, 0.1, 0.0, 0.05, 5, 25, None, 174),
    "vit_l_k400_ft": (32, 1.5e-3, 0.75, 0.2, 0.0, 0.05, 5, 35, None, 400),
    "vit_h_k400_ft": (32, 5e-4, 0.8, 0.2, 0.5, 0.05, 5, 40, None, 400),
    "vit_g_k710_ft": (32, 3.75e-4, 0.9, 0.3, 0.0, 0.1, 5, 35, 5.0, 710),
    "vit_g_k400_ft": (64, 7.5e-4, 0.9, 0.2, 0.0, 0.1, 5, 30, None, 400),
    "vit_g_k710_it_k400_ft": (32, 3.75e-6, 0.9, 0.25, 0.0, 0.1, 1, 3, None, 400),
    "vit_g_ssv2_ft": (32, 1.125e-4, 0.9, 0.25, 0.0, 0.05, 5, 20, None, 174),
    "vit_g_k710_it_k600_ft": (32, 3.75e-6, 0.9, 0.25, 0.0, 0.1, 1, 3, None, 600),
    "vit_g_k710_it_ucf101_ft": (8, 9.375e-5, 0.9, 0.35, 0.5, 0.05, 5, 50, None, 101),
    "vit_g_k710_it_hmdb51_ft": (8, 4.6875e-5, 0.9, 0.35, 0.5, 0.05, 5, 15, None, 51),
}


@pytest.mark.parametrize("name", [*RECIPES, "tiny_cpu"])
def test_recipes_build_with_the_spec_numbers(name):
    from videomae2.optim import scale_lr

    cfg = load_config(ROOT / "configs" / "finetune" / f"{name}.py", FinetuneJobConfig)
    with torch.device("meta"):
        model = build_classifier(cfg.model, cfg.data.num_frames, cfg.data.input_size)
    assert model.config.num_classes == cfg.model.num_classes
    if name == "tiny_cpu":
        return
    gpus, lr, ld, dp, hd, wd, warm, epochs, clip, classes = RECIPES[name]
    o, t = cfg.optim, cfg.train
    assert scale_lr(o.base_lr, t.batch_size, gpus) == pytest.approx(lr)
    assert (o.layer_decay, cfg.model.drop_path_rate, cfg.model.head_drop_rate) == (ld, dp, hd)
    assert (o.weight_decay, o.warmup_epochs, t.epochs, o.clip_grad) == (wd, warm, epochs, clip)
    assert cfg.model.num_classes == classes and cfg.model.init_scale == 0.001
    assert tuple(o.betas) == (0.9, 0.999) and o.min_lr == 1e-6
    assert cfg.data.num_sample == 2 and cfg.data.num_frames == 16
    ssv2 = "ssv2" in name
    assert cfg.data.sampling == ("tsn" if ssv2 else "dense")
    assert cfg.aug.flip == (not ssv2) and cfg.test.num_clips == (2 if ssv2 else 5)
    assert cfg.aug.rand_augment == "rand-m7-n4-mstd0.5-inc1"
    assert (cfg.aug.mixup, cfg.aug.cutmix, cfg.aug.label_smoothing) == (0.8, 1.0, 0.1)
    if "_it_k" in name:  # Kinetics targets: rows of the K710 head
        assert cfg.model.head_index.endswith(f"label_710to{classes}.json")
    elif "_it_" in name:  # other label sets: a new head
        assert cfg.model.fresh_head and not cfg.model.head_index
    assert cfg.data.frame_interval == (2 if "hmdb" in name or ssv2 else 4)


def test_sigkill_then_resume_is_bit_identical(data, tmp_path):
    """A real kill (SIGKILL, at whatever point the run has reached after its 4th-step
    checkpoint), then auto-resume: the final weights equal an uninterrupted run's. All three
    runs are subprocesses with one thread (the float reduction order depends on it)."""
    import signal
    import time

    # 6 epochs (36 steps, a validation each epoch) leave ample time to kill after step 4
    extra = {"train.save_every_steps": 2, "test.enabled": False, "train.epochs": 6}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cmd(work: Path) -> list[str]:
        args = [sys.executable, "-m", "videomae2", "finetune", str(TINY), "--work-dir", str(work)]
        return [*args, "--cfg-options", *overrides(data, **extra), "train.threads=1"]

    work, straight = tmp_path / "killed", tmp_path / "straight"
    proc = subprocess.Popen(
        cmd(work), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while not U.checkpoint_path(work, 4).exists() and proc.poll() is None:
        assert time.time() < deadline, "no checkpoint within 2 minutes"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not U.checkpoint_path(work, 36).exists()  # it really was cut short
    for w in (work, straight):  # auto-resume from the latest checkpoint / a straight run
        done = subprocess.run(cmd(w), env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    a = U.load_checkpoint(U.checkpoint_path(work, 36))
    b = U.load_checkpoint(U.checkpoint_path(straight, 36))
    for k, v in b["model"].items():
        assert torch.equal(a["model"][k], v), k
    for pid, state in b["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(a["optimizer"]["state"][pid][name], value)
