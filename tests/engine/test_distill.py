"""Distillation: the loss against an independent computation, the teacher-logit cache (a cached
logit belongs to exactly the clip the student sees), teacher loading from any file, a whole
run with resume, and (slow) a distilled student reaching its teacher where label-only training
of the same student for the same steps does not."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videomae2.cli import main
from videomae2.config import apply_overrides, load_config
from videomae2.engine import train_utils as U
from videomae2.engine.distill import (
    DistillJobConfig,
    DistillStep,
    TeacherCache,
    TeacherConfig,
    load_teacher,
    run_distill,
)
from videomae2.engine.finetune import (
    FinetuneModelConfig,
    build_classifier,
    build_train_dataset,
)
from videomae2.losses import (
    distillation_loss,
    feature_distill_loss,
    kd_kl_loss,
    label_smoothing_cross_entropy,
    soft_target_cross_entropy,
    teacher_soft_targets,
)

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "distill" / "tiny_cpu.py"
TINY_FT = ROOT / "configs" / "finetune" / "tiny_cpu.py"
ARCH = dict(arch="vit_small_patch16_224", embed_dim=32, depth=2, num_heads=2, num_classes=4)


# ------------------------------------------------------------------------------------- losses


def reference_loss(s, t, y, temp, kd_w, ce_w, sf=None, tf=None, feat_w=0.0, kind="smooth_l1"):
    """Written from the formulas with torch's own KL / Huber / cosine, not our helpers."""
    T = temp
    kd = F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean") * T * T
    ce = torch.mean(torch.sum(-y * F.log_softmax(s, -1), -1))
    total = kd_w * kd + ce_w * ce
    if feat_w:
        if kind == "smooth_l1":
            d = (sf - tf).abs()
            feat = torch.where(d < 1, 0.5 * d * d, d - 0.5).mean()
        else:
            feat = (1 - (sf * tf).sum(-1) / (sf.norm(dim=-1) * tf.norm(dim=-1))).mean()
        total = total + feat_w * feat
    return total


@pytest.mark.parametrize("temp", [1.0, 2.0, 4.0])
@pytest.mark.parametrize("kind", ["smooth_l1", "cosine"])
def test_distillation_loss_equals_independent_computation(temp, kind):
    T = temp
    g = torch.Generator().manual_seed(int(T * 10))
    s, t = torch.randn(6, 7, generator=g) * 3, torch.randn(6, 7, generator=g) * 3
    y = torch.softmax(torch.randn(6, 7, generator=g), -1)
    sf, tf = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g) * 2
    loss, parts = distillation_loss(
        s,
        teacher_soft_targets(t, T),
        y,
        temperature=T,
        kd_weight=0.7,
        ce_weight=0.3,
        student_feats=sf,
        teacher_feats=tf,
        feat_weight=0.5,
        feat_loss=kind,
    )
    ref = reference_loss(s, t, y, T, 0.7, 0.3, sf, tf, 0.5, kind)
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    assert set(parts) == {"kd", "ce", "feat"}
    torch.testing.assert_close(
        torch.tensor(parts["kd"]), reference_loss(s, t, y, T, 1.0, 0.0), rtol=1e-5, atol=1e-6
    )


def test_loss_terms_and_gradients():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(4, 5, generator=g, requires_grad=True)
    # KL vanishes when the student equals the teacher; gradient (p_s - p_t) * T / B
    assert kd_kl_loss(s.detach(), teacher_soft_targets(s.detach(), 3.0), 3.0).abs() < 1e-6
    t = torch.randn(4, 5, generator=g)
    kd_kl_loss(s, teacher_soft_targets(t, 2.0), 2.0).backward()
    expected = (torch.softmax(s / 2, -1) - torch.softmax(t / 2, -1)) * 2 / 4
    torch.testing.assert_close(s.grad, expected.detach(), rtol=1e-5, atol=1e-6)
    # zero teacher probabilities are fine (xlogy)
    p = torch.tensor([[1.0, 0.0, 0.0]])
    assert torch.isfinite(kd_kl_loss(torch.zeros(1, 3), p, 1.0))
    # terms with weight 0 are not computed (targets may be None); bf16 logits, float32 loss
    loss, parts = distillation_loss(s.detach().bfloat16(), teacher_soft_targets(t, 1.0), None)
    assert loss.dtype == torch.float32 and set(parts) == {"kd"}
    labels = torch.tensor([0, 2, 1, 4])
    onehot = torch.full((4, 5), 0.1 / 5).scatter_(1, labels[:, None], 0.9 + 0.1 / 5)
    torch.testing.assert_close(
        label_smoothing_cross_entropy(s, labels, 0.1), soft_target_cross_entropy(s, onehot)
    )
    with pytest.raises(ValueError, match="feature shapes"):
        feature_distill_loss(torch.zeros(2, 3), torch.zeros(2, 4))


# -------------------------------------------------------------------------------------- cache


def test_teacher_cache_roundtrip_and_fingerprint(tmp_path):
    fp = {"seed": 0, "teacher": "a"}
    cache = TeacherCache(tmp_path, fingerprint=fp, shape=(2, 5, 2), num_classes=3, feat_dim=4)
    keys = np.array([[0, 1, 0, 1], [1, 4, 1, 4], [0, 1, 1, 2]])  # (variant, index, repeat, item)
    hit, _ = cache.lookup(keys)
    assert not hit.any()
    logits = np.arange(9, dtype=np.float32).reshape(3, 3)
    cache.store(keys, {"logits": logits, "feats": np.ones((3, 4), np.float32)})
    again = TeacherCache(tmp_path, fingerprint=fp, shape=(2, 5, 2), num_classes=3, feat_dim=4)
    hit, rows = again.lookup(keys[[2, 0]])
    assert hit.all() and np.array_equal(rows["logits"], logits[[2, 0]])
    # a row written for another decoded video (a replaced bad video) is not used
    hit, _ = again.lookup(np.array([[0, 1, 0, 3]]))
    assert not hit.any()
    with pytest.raises(ValueError, match="another setting"):
        TeacherCache(tmp_path, fingerprint={**fp, "seed": 1}, shape=(2, 5, 2), num_classes=3)


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
        "model.depth": 1,
        "model.num_heads": 2,
        "model.num_classes": 4,
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
        "data.aug_pool": 1,
        "aug.translate_const": 8,
        "optim.scale_lr": False,
        "optim.base_lr": 2e-3,
        "optim.warmup_steps": 2,
        "train.batch_size": 2,
        "train.epochs": 2,
        "train.precision": "fp32",
        "train.val_every": 1,
        "train.val_batch_size": 2,
        "train.keep_last": 0,
        "test.num_clips": 2,
        "test.batch_size": 2,
        "test.num_workers": 0,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def make_cfg(work: Path, root: Path, **extra) -> DistillJobConfig:
    cfg = load_config(TINY, DistillJobConfig)
    apply_overrides(cfg, overrides(root, **extra))
    cfg.work_dir = str(work)
    return cfg


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory) -> Path:
    """A random tiny classifier saved the way the training jobs save weights."""
    path = tmp_path_factory.mktemp("teacher") / "teacher.pth"
    torch.manual_seed(1)
    mc = FinetuneModelConfig(**{**ARCH, "embed_dim": 64, "num_heads": 2}, init_scale=1.0)
    model = build_classifier(mc, 4, 32)
    with torch.no_grad():  # confident, input-dependent predictions (a random head is ~uniform)
        model.head.weight.mul_(30.0)
    U.save_checkpoint({"model": model.state_dict(), "model_config": model.config.to_dict()}, path)
    return path


def test_teacher_loads_from_any_file(teacher_file, tmp_path):
    a = load_teacher(TeacherConfig(checkpoint=str(teacher_file)), 4, 4, 32)  # model_config
    b = load_teacher(
        TeacherConfig(
            checkpoint=str(teacher_file),
            arch="vit_small_patch16_224",
            embed_dim=64,
            num_heads=2,
            depth=2,
        ),
        4,
        4,
        32,
    )
    from videomae2.checkpoint import save_weights

    save_weights(a, tmp_path / "t.safetensors")  # layout + config metadata
    c = load_teacher(TeacherConfig(checkpoint=str(tmp_path / "t.safetensors")), 4, 4, 32)
    x = torch.randn(2, 3, 4, 32, 32)
    assert not a.training and not any(p.requires_grad for p in a.parameters())
    torch.testing.assert_close(a(x), b(x))
    torch.testing.assert_close(a(x), c(x))
    (tmp_path / "rows.json").write_text("[3, 1]")
    d = load_teacher(
        TeacherConfig(checkpoint=str(teacher_file), head_index=str(tmp_path / "rows.json")),
        2,
        4,
        32,
    )
    torch.testing.assert_close(d(x), a(x)[:, [3, 1]])
    with pytest.raises(ValueError, match="head_index"):
        load_teacher(TeacherConfig(checkpoint=str(teacher_file)), 10, 4, 32)


def test_cached_logits_belong_to_the_exact_clip(data, teacher_file, tmp_path, monkeypatch):
    """Epoch 1 fills the cache; epoch 2 (same pool variant) never runs the teacher, and every
    cached row equals the teacher on the clip the dataset rebuilds for that key."""
    calls = []
    real = DistillStep.teacher_forward

    def counting(self, clips):
        calls.append(clips.shape[0])
        return real(self, clips)

    monkeypatch.setattr(DistillStep, "teacher_forward", counting)
    cache_dir = tmp_path / "cache"
    cfg = make_cfg(
        tmp_path / "run",
        data,
        **{
            "teacher.checkpoint": str(teacher_file),
            "teacher.cache_dir": str(cache_dir),
            "teacher.input": "clean",
            "test.enabled": False,
        },
    )
    run_distill(cfg)
    per_epoch = 12 * 2  # 12 videos x num_sample 2
    assert sum(calls) == per_epoch  # epoch 2 was served from the cache
    filled = np.load(cache_dir / "filled.npy")
    assert (filled > 0).all()
    logits = np.load(cache_dir / "logits.npy")
    teacher = load_teacher(cfg.teacher, 4, 4, 32)
    ds = build_train_dataset(cfg, 4)
    for index in (0, 5, 11):
        clips = ds[(1, index)]["clips"]  # epoch 1 -> variant 0 with aug_pool 1
        with torch.inference_mode():
            ref = teacher(clips).numpy()
        np.testing.assert_allclose(logits[0, index], ref, rtol=1e-5, atol=1e-5)
    # a different setting refuses the old cache
    cfg2 = make_cfg(
        tmp_path / "run2",
        data,
        **{
            "teacher.checkpoint": str(teacher_file),
            "teacher.cache_dir": str(cache_dir),
            "teacher.input": "clean",
            "train.seed": 5,
        },
    )
    with pytest.raises(ValueError, match="another setting"):
        run_distill(cfg2)


def test_cache_needs_a_pool_and_clean_input(data, teacher_file, tmp_path):
    base = {"teacher.checkpoint": str(teacher_file), "teacher.cache_dir": str(tmp_path / "c")}
    with pytest.raises(ValueError, match="aug_pool"):
        run_distill(make_cfg(tmp_path / "a", data, **base, **{"data.aug_pool": 0}))
    with pytest.raises(ValueError, match="needs teacher"):
        run_distill(make_cfg(tmp_path / "b", data, **base, **{"teacher.input": "mixed"}))


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_whole_run_with_feature_loss_and_resume(data, teacher_file, tmp_path):
    """CLI run with KD + CE + feature terms (projector 32 -> 64), final test; then a run killed
    at step 3 and resumed equals a straight one bit for bit (projector and optimizer too)."""
    extra = {
        "teacher.checkpoint": str(teacher_file),
        "teacher.input": "mixed",
        "teacher.cache_dir": "",
        "distill.ce_weight": 0.5,
        "distill.feat_weight": 0.3,
        "distill.temperature": 2.0,
        "model.drop_path_rate": 0.1,
    }
    work = tmp_path / "cli"
    args = ["distill", str(TINY), "--work-dir", str(work), "--cfg-options"]
    assert main([*args, *overrides(data, **extra)]) == 0
    result = json.loads((work / "result.json").read_text())
    assert "acc/top1" in result["test"]
    rows = read_csv(work / "log.csv")
    assert len(rows) == 12 and all(float(r["feat"]) > 0 and float(r["kd"]) >= 0 for r in rows)
    ck = U.load_checkpoint(U.checkpoint_path(work, 12))
    assert ck["format"] == "videomae2-distill-1"
    assert ck["extra"]["projector"]["weight"].shape == (64, 32)
    # the student checkpoint is a plain classifier (the projector is not in 'model')
    from videomae2.checkpoint import load_weights

    student = build_classifier(FinetuneModelConfig(**{**ARCH, "depth": 1}), 4, 32)
    assert load_weights(student, work / "final_model.pth").complete

    extra["test.enabled"] = False
    a, b = tmp_path / "interrupted", tmp_path / "straight"
    assert run_distill(make_cfg(a, data, **extra, **{"train.max_steps": 3}))["stopped"]
    run_distill(make_cfg(a, data, **extra))
    run_distill(make_cfg(b, data, **extra))
    ca, cb = (U.load_checkpoint(U.checkpoint_path(w, 12)) for w in (a, b))
    for k, v in cb["model"].items():
        assert torch.equal(ca["model"][k], v), k
    for k, v in cb["extra"]["projector"].items():
        assert torch.equal(ca["extra"]["projector"][k], v), k
    for pid, state in cb["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(ca["optimizer"]["state"][pid][name], value)
    strip = lambda rows: [{k: v for k, v in r.items() if "time" not in k} for r in rows]  # noqa: E731
    assert strip(read_csv(a / "log.csv")) == strip(read_csv(b / "log.csv"))


def test_recipes_build():
    for name in ("vit_g_to_s_k710", "vit_g_to_b_k710", "tiny_cpu"):
        cfg = load_config(ROOT / "configs" / "distill" / f"{name}.py", DistillJobConfig)
        with torch.device("meta"):
            student = build_classifier(cfg.model, cfg.data.num_frames, cfg.data.input_size)
        if name == "tiny_cpu":
            continue
        assert cfg.model.num_classes == 710 and student.config.num_classes == 710
        assert cfg.teacher.arch == "vit_giant_patch14_224" and cfg.teacher.precision == "bf16"
        assert student.embed_dim == (384 if "_s_" in name else 768)


def _kl_to_teacher(student_file: Path, teacher: torch.nn.Module, root: Path) -> float:
    """Mean KL(teacher || student) on every validation view (the job's own val pipeline)."""
    from videomae2.data.finetune_datasets import VideoValDataset, load_items
    from videomae2.models.recognizer import Recognizer
    from videomae2.models.vit import VisionTransformer, ViTConfig

    ck = U.load_checkpoint(student_file)
    student = VisionTransformer(ViTConfig.from_dict(ck["model_config"]))
    student.load_state_dict(ck["model"])
    items = load_items([f"{root}/val_list.txt", f"{root}/train_list.txt"], [f"{root}/videos"] * 2)
    ds = VideoValDataset(items, clip_len=4, frame_interval=2, short_side=32, crop_size=32)
    views = torch.stack([ds[i]["inputs"][0] for i in range(len(ds))])
    with torch.no_grad():
        s = Recognizer(student.eval(), average_clips=None)(views[:, None])[:, 0]
        t = Recognizer(teacher.eval(), average_clips=None)(views[:, None])[:, 0]
    return float(kd_kl_loss(s, teacher_soft_targets(t, 1.0), 1.0))


def test_distillation_moves_the_student_to_the_teacher_fast(data, teacher_file, tmp_path):
    """Fast version of the slow check below: 24 steps of distillation bring the student's
    predictions much closer to an (arbitrary, confident) teacher's than 24 steps of label
    training do, on the job's own validation views of every video."""
    from videomae2.engine.finetune import FinetuneJobConfig, run_finetune

    common = {
        "aug.mixup": 0.0,
        "aug.cutmix": 0.0,
        "aug.rand_augment": "",
        "test.enabled": False,
        "train.val_every": 0,
        "data.aug_pool": 0,
        "train.epochs": 4,
        "optim.base_lr": 5e-3,
    }
    kd = make_cfg(
        tmp_path / "kd",
        data,
        **common,
        **{
            "teacher.checkpoint": str(teacher_file),
            "teacher.cache_dir": "",
            "teacher.input": "mixed",
        },
    )
    run_distill(kd)
    ce = load_config(TINY_FT, FinetuneJobConfig)
    apply_overrides(ce, overrides(data, **common))
    ce.work_dir = str(tmp_path / "ce")
    run_finetune(ce)
    teacher = load_teacher(TeacherConfig(checkpoint=str(teacher_file)), 4, 4, 32)
    kl_kd = _kl_to_teacher(tmp_path / "kd" / "final_model.pth", teacher, data)
    kl_ce = _kl_to_teacher(tmp_path / "ce" / "final_model.pth", teacher, data)
    assert kl_kd < 0.7 * kl_ce, (kl_kd, kl_ce)  # measured: 0.57 vs 1.01
    kd = [float(r["kd"]) for r in read_csv(tmp_path / "kd" / "log.csv")]
    assert np.mean(kd[-6:]) < 0.6 * np.mean(kd[:6]), kd  # measured: 0.47 vs 0.97


# ---------------------------------------------------------------- slow: the student reaches it


def ramp_video(label: int, rng: np.random.Generator, n: int = 24, size: int = 32) -> np.ndarray:
    """Brightness-ramp clips: class = (whole frame | left half vs right half) x (brighter |
    darker); a random periodic texture, base level, rate, ramp offset and noise per video.

    A learnable temporal task at 32 px (a linear function of frame differences), unlike the
    generated dataset's motion classes, which a 32-px model trained for minutes cannot learn.
    """
    k = 4
    ky, kx = rng.integers(-2, 3, size=(2, 3, k))
    amp = rng.uniform(10, 40, size=(3, k))
    phase = rng.uniform(0, 2 * np.pi, size=(3, k))
    base = rng.uniform(70, 180, size=3)
    ys, xs = np.arange(size)[:, None, None], np.arange(size)[None, :, None]
    tex = np.empty((size, size, 3), np.float32)
    for c in range(3):
        arg = 2 * np.pi * (ky[c] * ys / size + kx[c] * xs / size) + phase[c]
        tex[..., c] = base[c] + (amp[c] * np.cos(arg)).sum(-1)
    rate = rng.uniform(1.5, 3.0) * (1 if label % 2 == 0 else -1)  # grey levels per frame
    half = np.where(np.arange(size) < size // 2, 1.0, -1.0)[None, :, None]
    mask = np.ones((1, size, 1)) if label < 2 else half
    t0 = rng.uniform(0, n)
    frames = [tex + rate * (t - t0) * mask + rng.normal(0, 6, tex.shape) for t in range(n)]
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_distilled_student_reaches_the_teacher(tmp_path):
    """A teacher (width 64, 4 blocks) is trained 30 epochs on clean labels. Then a student of the
    same tiny size, from a fresh random init, gets 16 epochs on the same videos whose labels are
    weak (35% wrong, as web-video labels are). Distilled (KL at T = 1 + the pooled-feature term,
    labels unused) it lands within 5 points of the teacher's top-1; trained on the labels for the
    same steps it does not. Measured on CPU (2x3-view test, 100 videos): teacher 77%,
    distilled 78%, labels 47% (about 10 minutes); in calibration runs a width-32 student
    distilled without the feature term reached 76% against an 80% teacher."""
    from videomae2.data.synthetic import write_video
    from videomae2.engine.finetune import FinetuneJobConfig, run_finetune

    root = tmp_path / "ramp"
    (root / "videos").mkdir(parents=True)
    lists: dict[str, list[str]] = {"train": [], "val": []}
    for c in range(4):
        for k in range(85):
            name = f"c{c}_{k:04d}.mp4"
            write_video(root / "videos" / name, ramp_video(c, np.random.default_rng([0, c, k])))
            lists["train" if k < 60 else "val"].append(f"{name} {c}")
    for split, lines in lists.items():
        (root / f"{split}_list.txt").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    noisy = []
    for line in lists["train"]:
        name, y = line.split()
        y = int(y)
        if rng.random() < 0.4:
            y = int((y + rng.integers(1, 4)) % 4)
        noisy.append(f"{name} {y}")
    (root / "train_noisy.txt").write_text("\n".join(noisy) + "\n")

    common = {
        "model.num_classes": 4,
        "data.ann_files": f"['{root}/train_list.txt']",
        "data.data_prefixes": f"['{root}/videos']",
        "data.val_ann_file": f"{root}/val_list.txt",
        "data.val_data_prefix": f"{root}/videos",
        "data.generated_videos_per_class": 0,
        "data.num_frames": 4,
        "data.frame_interval": 2,
        "data.input_size": 32,
        "data.short_side": 0,
        "data.num_workers": 2,
        "data.aug_pool": 0,
        "aug.rand_augment": "",
        "aug.mixup": 0.0,
        "aug.cutmix": 0.0,
        "aug.erase_prob": 0.25,
        "aug.rrc_scale": "(0.4, 1.0)",
        "optim.scale_lr": False,
        "optim.base_lr": 1e-3,
        "optim.min_lr": 1e-5,
        "optim.warmup_steps": 10,
        "optim.layer_decay": 1.0,
        "train.batch_size": 8,
        "train.val_every": 100,
        "train.keep_last": 1,
        "test.num_clips": 2,
        "test.num_workers": 2,
        "test.batch_size": 8,
    }
    teacher_arch = {"model.embed_dim": 64, "model.depth": 4, "model.num_heads": 4}
    student = teacher_arch

    def finetune(work: Path, **extra) -> float:
        cfg = load_config(TINY_FT, FinetuneJobConfig)
        apply_overrides(cfg, [f"{k}={v}" for k, v in {**common, **extra}.items()])
        cfg.work_dir = str(work)
        return run_finetune(cfg)["test"]["acc/top1"]

    teacher_top1 = finetune(
        tmp_path / "teacher",
        **teacher_arch,
        **{"train.epochs": 30, "optim.base_lr": 2e-3, "model.drop_path_rate": 0.1},
        **{"aug.erase_prob": 0.0, "aug.rrc_scale": "(0.6, 1.0)"},
    )
    weak = {"data.ann_files": f"['{root}/train_noisy.txt']", "train.epochs": 16}
    labels_top1 = finetune(tmp_path / "labels", **student, **weak, **{"model.drop_path_rate": 0.0})
    cfg = load_config(TINY, DistillJobConfig)
    kd_extra = {
        "teacher.checkpoint": str(tmp_path / "teacher" / "final_model.pth"),
        "teacher.cache_dir": "",
        "teacher.input": "mixed",
        "distill.ce_weight": 0.0,
        "distill.feat_weight": 1.0,
        "model.drop_path_rate": 0.0,
        "data.aug_pool": 4,  # as calibrated
    }
    apply_overrides(cfg, [f"{k}={v}" for k, v in {**common, **student, **weak, **kd_extra}.items()])
    cfg.work_dir = str(tmp_path / "distilled")
    distilled_top1 = run_distill(cfg)["test"]["acc/top1"]
    print(f"teacher {teacher_top1:.3f} distilled {distilled_top1:.3f} labels {labels_top1:.3f}")
    assert distilled_top1 >= teacher_top1 - 0.05
    assert labels_top1 < teacher_top1 - 0.05


def test_two_processes_match_one(data, teacher_file, tmp_path):
    """torchrun 2 x batch 1 (gloo) == 1 process x batch 2 after 3 steps, with the KD, CE and
    feature terms (the projector is trained and all-reduced like the student)."""
    from engine_helpers import run_torchrun

    extra = {
        "teacher.checkpoint": str(teacher_file),
        "teacher.input": "mixed",
        "teacher.cache_dir": "",
        "teacher.precision": "fp32",
        "distill.ce_weight": 0.5,
        "distill.feat_weight": 0.3,
        "aug.mixup": 0.0,
        "aug.cutmix": 0.0,
        "model.drop_path_rate": 0.0,
        "train.max_steps": 3,
        "train.epochs": 1,
        "test.enabled": False,
    }
    options = overrides(data, **extra, **{"train.batch_size": 1})
    run_torchrun("distill", TINY, tmp_path / "two", options)
    run_distill(make_cfg(tmp_path / "one", data, **extra))
    two = U.load_checkpoint(U.checkpoint_path(tmp_path / "two", 3))
    one = U.load_checkpoint(U.checkpoint_path(tmp_path / "one", 3))
    for k, v in one["model"].items():
        torch.testing.assert_close(two["model"][k], v, atol=1e-5, rtol=0, msg=k)
    for k, v in one["extra"]["projector"].items():
        torch.testing.assert_close(two["extra"]["projector"][k], v, atol=1e-5, rtol=0, msg=k)
    l1 = [float(r["loss"]) for r in read_csv(tmp_path / "one" / "log.csv")]
    l2 = [float(r["loss"]) for r in read_csv(tmp_path / "two" / "log.csv")]
    np.testing.assert_allclose(l2, l1, rtol=1e-5)
