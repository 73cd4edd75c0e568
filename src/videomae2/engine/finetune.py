"""The fine-tuning job: `videomae2 finetune CONFIG [--cfg-options k=v ...] [--work-dir D]`.

Flow: list file(s) -> FinetuneDataset (decode once, `num_sample` augmented copies: RandAugment,
random-resized crop, flip, cube erasing; in DataLoader workers) -> Mixup/CutMix with label
smoothing on the batch -> classifier -> soft-target cross entropy -> AdamW with layer-wise lr
decay and a per-step cosine schedule. Every `val_every` epochs: single-view validation (the
original's per-epoch protocol); the best weights go to `checkpoint-best.pth`. At the end the final
weights go to `final_model.pth` and through the multi-view test job (`engine.evaluate.run_test`,
the same code as `videomae2 test`), whose metrics land in `work_dir/test/`.

Initialisation (`model.pretrained`): a pretraining checkpoint (its encoder; `fc_norm` and the
head start fresh), a fine-tuned classifier in any layout the loader reads (head kept when it
fits, rows selected with `model.head_index` when it comes from a union label space such as
K710, dropped with a loud note otherwise), or nothing (from scratch).

Union label spaces (post-pretraining): `data.ann_files` may list several datasets, each with a
JSON index list in `data.label_indices` that maps its labels into the model's label space
(`videomae2 make-index-map`).

Resumable to the bit: data order, augmentation and mixing are functions of (seed, epoch, index)
and (seed, step, micro-step, rank); a checkpoint holds model, optimizer, scaler, EMA, best score,
step and every rank's RNG state; a resumed run skips the batches already consumed.

Distributed with torchrun: DDP; each process mixes its own micro-batch (as the original does),
validation and the final test are sharded and gathered by index, so metrics equal a one-process
run's. This module also holds the loop that `engine/distill.py` reuses with another loss.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from videomae2 import distributed as D
from videomae2.augment import (
    ErasingParams,
    MixParams,
    MixSettings,
    mix_batch,
    parse_rand_augment,
)
from videomae2.config import (
    BackboneConfig,
    TestConfig,
    apply_overrides,
    dump_json,
    load_config,
    to_dict,
)
from videomae2.data.datasets import collate_views
from videomae2.data.finetune_datasets import (
    FinetuneDataset,
    LabeledVideo,
    VideoValDataset,
    collate_train,
    load_items,
)
from videomae2.data.train_datasets import epoch_batches
from videomae2.engine import train_utils as U
from videomae2.engine.evaluate import evaluate, gather_results, run_test, shard_indices
from videomae2.losses import soft_target_cross_entropy
from videomae2.metrics import accuracy_metrics
from videomae2.models.recognizer import Recognizer
from videomae2.models.registry import create_model
from videomae2.optim import build_adamw, cosine_schedule, param_groups, scale_lr, set_lr
from videomae2.progress import Progress

CHECKPOINT_FORMAT = "videomae2-finetune-1"
LOG_FIELDS = ["step", "epoch", "lr", "loss", "grad_norm", "time", "data_time"]
VAL_FIELDS = ["step", "epoch", "top1", "top5", "mean1", "best_top1", "ema_top1"]

# ----------------------------------------------------------------------------------- config


@dataclass
class FinetuneModelConfig:
    """The classifier and where its weights start.

    The architecture overrides are the ones the test job's `model.backbone` section has, so the
    final multi-view test rebuilds exactly this model.
    """

    arch: str = "vit_base_patch16_224"
    num_classes: int = 400
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    patch_size: int | None = None
    drop_path_rate: float = 0.1
    head_drop_rate: float = 0.0
    init_scale: float = 0.001  # head weight and bias x this after trunc_normal(0.02)
    grad_checkpointing: bool = False
    pretrained: str = ""  # '' = from scratch; a pretraining or classifier checkpoint
    head_index: str = ""  # JSON index list: this label space's rows of the checkpoint's head
    fresh_head: bool = False  # drop the checkpoint's head even when its shape fits


@dataclass
class FinetuneDataConfig:
    """Training / validation lists (mmaction2 `path label`) and the clip pipeline."""

    ann_files: tuple[str, ...] = ("data/kinetics400/kinetics400_train_list_videos.txt",)
    data_prefixes: tuple[str, ...] = ("data/kinetics400/videos_train",)
    # per training list: JSON index list into the model's label space ('' = labels as written)
    label_indices: tuple[str, ...] = ()
    val_ann_file: str = "data/kinetics400/kinetics400_val_list_videos.txt"
    val_data_prefix: str = "data/kinetics400/videos_val"
    val_label_index: str = ""
    sampling: str = "dense"  # dense (original) | mmaction (SampleFrames train mode) | tsn (SSv2)
    num_frames: int = 16
    frame_interval: int = 4
    input_size: int = 224
    short_side: int = 0  # > 0: resize decoded frames to this short side before augmenting
    val_mode: str = "original"  # original (§14.2) | mmaction | sparse
    val_short_side: int = 0  # 0 = input_size
    num_sample: int = 2  # repeated augmentation: clips per decoded video
    num_workers: int = 8
    decode_backend: str = "pyav"
    max_retries: int = 10
    aug_pool: int = 0  # > 0: each video has this many fixed augmented variants (cache hits)
    # > 0: decode up to this many MiB of training + validation videos once, before training,
    # and read clips from memory (small datasets such as the demo's; workers share it)
    cache_mb: int = 0
    # > 0: write a generated dataset (data/generated.py) to `generated_root` first, if missing
    generated_videos_per_class: int = 0
    generated_root: str = ""
    generated_classes: int = 10
    generated_seed: int = 0
    generated_short_side: tuple[int, int] = (64, 112)


@dataclass
class AugmentConfig:
    rand_augment: str = "rand-m7-n4-mstd0.5-inc1"  # '' = off
    translate_const: int = -1  # pixels at level 10; -1 = int(0.45 · input_size)
    rrc_scale: tuple[float, float] = (0.08, 1.0)
    rrc_ratio: tuple[float, float] = (0.75, 1.3333)
    flip: bool = True  # False for SSv2 (left/right matter)
    erase_prob: float = 0.25
    erase_mode: str = "pixel"
    erase_count: int = 1
    mixup: float = 0.8
    cutmix: float = 1.0
    mix_prob: float = 1.0
    mix_switch_prob: float = 0.5
    label_smoothing: float = 0.1


@dataclass
class FinetuneOptimConfig:
    base_lr: float = 1e-3  # peak lr = base_lr · batch_size · accum · world / 256 (scale_lr)
    min_lr: float = 1e-6  # scaled the same way
    scale_lr: bool = True
    warmup_epochs: int = 5
    warmup_steps: int = -1  # >= 0 overrides warmup_epochs
    weight_decay: float = 0.05
    layer_decay: float = 0.75  # 1.0 = off
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    clip_grad: float | None = None


@dataclass
class FinetuneRunConfig:
    epochs: int = 90
    batch_size: int = 16  # videos per process per micro-step, before num_sample
    accum_steps: int = 1
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    compile: bool = False
    model_ema: bool = False
    ema_decay: float = 0.9999
    val_every: int = 1  # epochs; 0 = no validation
    val_batch_size: int = 8
    save_ckpt_freq: int = 1  # epochs; the last epoch is always saved
    save_every_steps: int = 0
    keep_last: int = 2  # numbered checkpoints kept (0 = all); checkpoint-best.pth is separate
    max_steps: int = 0  # stop (and save) after this global step; the schedule is unchanged
    log_interval_s: float = 10.0
    threads: int = 0
    auto_resume: bool = True
    resume: str = ""


@dataclass
class FinalTestConfig:
    """The multi-view test after training (`videomae2 test`'s mmaction2 protocol)."""

    enabled: bool = True
    weights: str = "last"  # last | best | ema
    ann_file: str = ""  # '' = the validation list
    data_prefix: str = ""  # '' = the validation prefix
    label_index: str = ""  # '' = data.val_label_index when ann_file is ''
    num_clips: int = 5
    crop: str = "three_crop"  # three_crop (x3 views) | center_crop
    batch_size: int = 1
    num_workers: int = 4
    precision: str = "train"  # train (bf16 if training was) | fp32 | bf16


@dataclass
class FinetuneJobConfig:
    model: FinetuneModelConfig = field(default_factory=FinetuneModelConfig)
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    aug: AugmentConfig = field(default_factory=AugmentConfig)
    optim: FinetuneOptimConfig = field(default_factory=FinetuneOptimConfig)
    train: FinetuneRunConfig = field(default_factory=FinetuneRunConfig)
    test: FinalTestConfig = field(default_factory=FinalTestConfig)
    work_dir: str = "work_dirs/finetune"


# ------------------------------------------------------------------------------ building blocks


def build_classifier(mc: FinetuneModelConfig, num_frames: int, img_size: int) -> nn.Module:
    """The registry classifier with the recipe's overrides (not yet loaded)."""
    kw: dict[str, Any] = dict(
        num_classes=mc.num_classes,
        num_frames=num_frames,
        img_size=img_size,
        drop_path_rate=mc.drop_path_rate,
        head_drop_rate=mc.head_drop_rate,
        init_scale=mc.init_scale,
        grad_checkpointing=mc.grad_checkpointing,
    )
    for name in ("embed_dim", "depth", "num_heads", "patch_size"):
        if getattr(mc, name) is not None:
            kw[name] = getattr(mc, name)
    return create_model(mc.arch, **kw)


def read_index(path: str) -> list[int] | None:
    """A JSON index list file, or None for ''."""
    if not path:
        return None
    from videomae2.checkpoint import load_head_index

    return load_head_index(path)


def init_weights(model: nn.Module, mc: FinetuneModelConfig) -> str:
    """Load `mc.pretrained` into `model` (strictly, with intended fresh parts); returns a report.

    Head rules: a pretraining checkpoint has none (fresh); `head_index` selects rows of the
    file's head (union -> target label space); `fresh_head` drops it; a head whose shape does not
    fit is dropped with a note (the original's rule), never silently half-loaded.
    """
    if not mc.pretrained:
        return "no pretrained weights: training from scratch"
    from videomae2.checkpoint.load import load_checkpoint, read_checkpoint

    ck = read_checkpoint(mc.pretrained)
    fresh: tuple[str, ...] = ()
    notes = []
    head_index = read_index(mc.head_index)
    w = ck.state_dict.get("head.weight")
    if mc.fresh_head:
        fresh = ("head.",)
    elif w is not None and head_index is None and tuple(w.shape) != tuple(model.head.weight.shape):
        fresh = ("head.",)
        notes.append(
            f"head {tuple(w.shape)} does not fit {tuple(model.head.weight.shape)}: it starts "
            "fresh (set model.head_index to map rows from a union label space)"
        )
    report = load_checkpoint(model, ck, strict=True, head_index=head_index, fresh=fresh)
    return "\n".join([str(report), *notes])


def build_train_dataset(cfg: Any, num_classes: int) -> FinetuneDataset:
    d, a = cfg.data, cfg.aug
    indices = [read_index(p) for p in d.label_indices]
    items = load_items(d.ann_files, d.data_prefixes, indices, num_classes)
    rand_aug = None
    if a.rand_augment:
        tc = a.translate_const if a.translate_const >= 0 else int(0.45 * d.input_size)
        rand_aug = parse_rand_augment(a.rand_augment, translate_const=tc)
    erasing = None
    if a.erase_prob > 0:
        erasing = ErasingParams(prob=a.erase_prob, mode=a.erase_mode, count=a.erase_count)
    return FinetuneDataset(
        items,
        sampling=d.sampling,
        clip_len=d.num_frames,
        frame_interval=d.frame_interval,
        input_size=d.input_size,
        short_side=d.short_side,
        num_sample=d.num_sample,
        rand_augment=rand_aug,
        rrc_scale=tuple(a.rrc_scale),
        rrc_ratio=tuple(a.rrc_ratio),
        flip=a.flip,
        erasing=erasing,
        seed=cfg.train.seed,
        aug_pool=d.aug_pool,
        max_retries=d.max_retries,
        **U.video_readers((it.path for it in items), d.cache_mb, d.decode_backend),
    )


def build_val_dataset(cfg: Any, num_classes: int) -> VideoValDataset | None:
    d = cfg.data
    if not d.val_ann_file or cfg.train.val_every <= 0:
        return None
    index = read_index(d.val_label_index)
    items = load_items([d.val_ann_file], [d.val_data_prefix], [index], num_classes)
    short = d.val_short_side or d.input_size
    return VideoValDataset(
        items,
        mode=d.val_mode,
        clip_len=d.num_frames,
        frame_interval=d.frame_interval,
        short_side=short,
        crop_size=d.input_size,
        **U.video_readers((it.path for it in items), d.cache_mb, d.decode_backend),
    )


def mix_settings(a: AugmentConfig) -> MixSettings:
    return MixSettings(
        mixup_alpha=a.mixup,
        cutmix_alpha=a.cutmix,
        prob=a.mix_prob,
        switch_prob=a.mix_switch_prob,
        label_smoothing=a.label_smoothing,
    )


def build_param_groups(
    classifier: nn.Module, extra: dict[str, nn.Module], oc: FinetuneOptimConfig
) -> list[dict]:
    """Layer-decayed groups of the classifier (original layer ids) + plain groups for extras
    (a distillation projector: lr scale 1, the usual weight-decay exclusions)."""
    groups = param_groups(
        classifier,
        oc.weight_decay,
        skip_list=classifier.no_weight_decay() | {"cls_token"},
        layer_decay=oc.layer_decay,
    )
    for name, module in extra.items():
        for g in param_groups(module, oc.weight_decay, skip_list=()):
            g["group_name"] = f"{name}_{g['group_name']}"
            groups.append(g)
    return groups


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """`ema = decay · ema + (1 − decay) · model` for parameters; buffers are copied."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _eval_precision(precision: U.Precision) -> str:
    return "bf16" if precision.name == "bf16" else "fp32"


def validate(
    model: nn.Module,
    dataset: VideoValDataset,
    env: D.DistEnv,
    *,
    batch_size: int,
    num_workers: int,
    precision: str = "fp32",
) -> dict[str, float]:
    """Single-view top-1/top-5/mean-class accuracy (fractions), sharded over ranks.

    Reuses the test job's `evaluate` loop and gather; unreadable videos are left out (and
    counted in `num_failed`).
    """
    was_training = model.training
    recognizer = Recognizer(model, average_clips="prob").to(env.device).eval()
    shard = shard_indices(len(dataset), env.world_size, env.rank)
    loader = DataLoader(
        Subset(dataset, shard),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_views,
        # its own generator: creating the loader must not draw from the global RNG (resume)
        generator=torch.Generator(),
    )
    results, _ = evaluate(recognizer, loader, device=env.device, precision=precision)
    results = gather_results(results, len(dataset))
    model.train(was_training)
    ok = [r for r in results if r.score is not None]
    out: dict[str, float] = {"num_failed": float(len(results) - len(ok))}
    if ok:
        out.update(
            accuracy_metrics(np.stack([r.score for r in ok]), np.array([r.label for r in ok]))
        )
    return out


def build_test_config(cfg: Any, env: D.DistEnv, precision: U.Precision) -> TestConfig:
    """The `videomae2 test` config equivalent to this run's model and data."""
    mc, d, t = cfg.model, cfg.data, cfg.test
    tc = TestConfig()
    tc.model.backbone = BackboneConfig(
        arch=mc.arch,
        num_frames=d.num_frames,
        img_size=d.input_size,
        embed_dim=mc.embed_dim,
        depth=mc.depth,
        num_heads=mc.num_heads,
        patch_size=mc.patch_size,
    )
    tc.model.cls_head.num_classes = mc.num_classes
    ds = tc.test_dataloader.dataset
    ds.ann_file = t.ann_file or d.val_ann_file
    ds.data_prefix.video = t.data_prefix or (d.val_data_prefix if not t.ann_file else "")
    ds.decode_backend = d.decode_backend
    sf = ds.pipeline.sample_frames
    sf.clip_len, sf.frame_interval, sf.num_clips = d.num_frames, d.frame_interval, t.num_clips
    ds.pipeline.resize_short = d.input_size
    ds.pipeline.crop_size = d.input_size
    ds.pipeline.crop = t.crop
    tc.test_dataloader.batch_size = t.batch_size
    tc.test_dataloader.num_workers = t.num_workers
    tc.test_cfg.device = env.device.type
    prec = _eval_precision(precision) if t.precision == "train" else t.precision
    tc.test_cfg.precision = prec
    tc.test_cfg.threads = cfg.train.threads
    return tc


def final_test(
    cfg: Any, weights: str | Path, env: D.DistEnv, precision: U.Precision
) -> dict[str, Any]:
    """Run the test job on `weights`; a remapped list is written first if the test labels come
    from another label space (`test.label_index`)."""
    work = Path(cfg.work_dir)
    tc = build_test_config(cfg, env, precision)
    t, d = cfg.test, cfg.data
    index_path = t.label_index or (d.val_label_index if not t.ann_file else "")
    if index_path:
        index = read_index(index_path)
        items = load_items(
            [tc.test_dataloader.dataset.ann_file],
            [tc.test_dataloader.dataset.data_prefix.video],
            [index],
            cfg.model.num_classes,
        )
        remapped = work / "test" / "test_list_remapped.txt"
        if env.is_main:
            remapped.parent.mkdir(parents=True, exist_ok=True)
            remapped.write_text("".join(f"{it.path} {it.label}\n" for it in items))
        D.barrier()
        tc.test_dataloader.dataset.ann_file = str(remapped)
        tc.test_dataloader.dataset.data_prefix.video = ""
    launcher = "pytorch" if env.distributed else "none"
    return run_test(tc, str(weights), work_dir=work / "test", launcher=launcher)


def maybe_generate_data(d: FinetuneDataConfig, env: D.DistEnv) -> None:
    """Write the generated dataset once (rank 0) when the recipe asks for it."""
    if d.generated_videos_per_class <= 0:
        return
    root = Path(d.generated_root)
    if env.is_main and not (root / "label_map.txt").is_file():
        from videomae2.data.generated import make_dataset

        print(f"writing the generated dataset to {root} ...", flush=True)
        make_dataset(
            root,
            classes=d.generated_classes,
            videos_per_class=d.generated_videos_per_class,
            seed=d.generated_seed,
            short_side=tuple(d.generated_short_side),
        )
    D.barrier()


# ----------------------------------------------------------------------------- the shared loop


@dataclass
class Trainee:
    """What the loop trains.

    `classifier` is validated, tested and saved as the checkpoint's 'model' (original layout);
    `trainable` is what runs forward/backward (the classifier, or a wrapper adding extra heads);
    `extra` modules (e.g. a distillation projector) are trained and saved under 'extra'.
    """

    classifier: nn.Module
    trainable: nn.Module
    extra: dict[str, nn.Module] = field(default_factory=dict)


# (model, mixed clips, soft targets, batch, clean clips, mix params) -> (loss, logged parts)
LossStep = Callable[
    [nn.Module, torch.Tensor, torch.Tensor, dict, torch.Tensor, MixParams],
    tuple[torch.Tensor, dict[str, float]],
]


def classification_step(
    model: nn.Module,
    clips: torch.Tensor,
    targets: torch.Tensor,
    batch: dict,
    clean: torch.Tensor,
    mix: MixParams,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Fine-tuning's loss: soft-target cross entropy (smoothing / mixing are in the targets)."""
    return soft_target_cross_entropy(model(clips), targets), {}


def _gather_rng(env: D.DistEnv) -> list[dict[str, torch.Tensor]]:
    state = U.capture_rng_state()
    if not env.distributed:
        return [state]
    states: list[Any] = [None] * env.world_size
    torch.distributed.all_gather_object(states, state)
    return states


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


@dataclass
class Run:
    """Everything the loop mutates, built once by :func:`setup_run` (or restored on resume)."""

    cfg: Any
    env: D.DistEnv
    trainee: Trainee
    model: nn.Module  # the trainable module, DDP-wrapped when distributed
    dataset: FinetuneDataset
    val_dataset: VideoValDataset | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    params: list[torch.Tensor]
    precision: U.Precision
    schedule: np.ndarray
    steps_per_epoch: int
    mix: MixSettings
    ema: nn.Module | None
    checkpoint_format: str
    log_fields: tuple[str, ...]
    step: int = 0
    best: dict = field(default_factory=lambda: {"top1": -1.0, "epoch": -1})
    resumed_from: str = ""

    @property
    def work(self) -> Path:
        return Path(self.cfg.work_dir)

    @property
    def total_steps(self) -> int:
        return len(self.schedule)


def setup_run(
    cfg: Any,
    env: D.DistEnv,
    trainee: Trainee,
    *,
    checkpoint_format: str = CHECKPOINT_FORMAT,
    log_fields: tuple[str, ...] = (),
) -> Run:
    """Datasets, DDP, schedule, optimizer, EMA; then the latest checkpoint's state if any."""
    tc, oc, dc = cfg.train, cfg.optim, cfg.data
    dataset = build_train_dataset(cfg, cfg.model.num_classes)
    precision = U.select_precision(tc.precision, env.device)
    trainee.trainable.to(env.device)
    model = D.wrap_ddp(trainee.trainable, env)
    if tc.compile:
        trainee.trainable.compile()  # in place: parameter names stay unchanged
    clips_per_micro = tc.batch_size * dc.num_sample
    mix = mix_settings(cfg.aug)
    if mix.enabled and clips_per_micro % 2:
        raise ValueError(f"mixup/cutmix pair clips: batch_size x num_sample = {clips_per_micro}")
    steps_per_epoch = len(dataset) // (tc.batch_size * env.world_size) // tc.accum_steps
    if steps_per_epoch < 1:
        raise ValueError(
            f"{len(dataset)} videos give no full step of batch_size {tc.batch_size} x "
            f"{env.world_size} processes x accum_steps {tc.accum_steps}"
        )
    total_steps = tc.epochs * steps_per_epoch
    factor = dict(batch_size=tc.batch_size, world_size=env.world_size, accum_steps=tc.accum_steps)
    peak = scale_lr(oc.base_lr, **factor) if oc.scale_lr else oc.base_lr
    min_lr = scale_lr(oc.min_lr, **factor) if oc.scale_lr else oc.min_lr
    warmup = oc.warmup_steps if oc.warmup_steps >= 0 else oc.warmup_epochs * steps_per_epoch
    groups = build_param_groups(trainee.classifier, trainee.extra, oc)
    run = Run(
        cfg=cfg,
        env=env,
        trainee=trainee,
        model=model,
        dataset=dataset,
        val_dataset=build_val_dataset(cfg, cfg.model.num_classes),
        optimizer=build_adamw(groups, peak, tuple(oc.betas), oc.eps),
        scaler=U.grad_scaler(env.device, precision),
        params=[p for g in groups for p in g["params"]],
        precision=precision,
        schedule=cosine_schedule(peak, min_lr, total_steps, warmup),
        steps_per_epoch=steps_per_epoch,
        mix=mix,
        ema=copy.deepcopy(trainee.classifier).eval().requires_grad_(False)
        if tc.model_ema
        else None,
        checkpoint_format=checkpoint_format,
        log_fields=tuple(log_fields),
    )
    resume = tc.resume or (str(U.latest_checkpoint(run.work) or "") if tc.auto_resume else "")
    if resume:
        restore_run(run, resume)
    D.rank_print(
        env,
        f"{cfg.model.arch}: {len(dataset)} videos, {steps_per_epoch} steps/epoch x {tc.epochs} "
        f"epochs, {clips_per_micro} clips/process/micro-step, {env.world_size} process(es), "
        f"peak lr {peak:.3g}, layer decay {oc.layer_decay}, precision {precision.name}, "
        f"device {env.device}",
    )
    return run


def restore_run(run: Run, path: str) -> None:
    """Load a training checkpoint of this job into `run` (weights, optimizer, RNG, counters)."""
    ckpt = U.load_checkpoint(path)
    if ckpt.get("format") != run.checkpoint_format:
        raise ValueError(
            f"{path} is a {ckpt.get('format')!r} checkpoint, not {run.checkpoint_format!r}: "
            "use model.pretrained to start from it instead of resuming"
        )
    run.trainee.classifier.load_state_dict(ckpt["model"])
    for name, module in run.trainee.extra.items():
        module.load_state_dict(ckpt["extra"][name])
    if run.ema is not None:
        run.ema.load_state_dict(ckpt["model_ema"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    run.step, run.best = int(ckpt["step"]), dict(ckpt["best"])
    rng = ckpt["rng"]
    if len(rng) == run.env.world_size:
        U.restore_rng_state(rng[run.env.rank])
    else:
        D.rank_print(run.env, f"world size changed ({len(rng)} -> {run.env.world_size}): reseeded")
        torch.manual_seed(run.cfg.train.seed + run.env.rank + run.step)
    run.resumed_from = path
    D.rank_print(run.env, f"resumed from {path} at step {run.step}")


def save_run(run: Run, epoch: int) -> str:
    """Atomic `checkpoint-{step}.pth` with everything a bit-exact resume needs."""
    path = U.checkpoint_path(run.work, run.step)
    rng = _gather_rng(run.env)
    if run.env.is_main:
        obj: dict[str, Any] = {
            "model": _cpu_state(run.trainee.classifier),
            "extra": {n: _cpu_state(m) for n, m in run.trainee.extra.items()},
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict(),
            "step": run.step,
            "epoch": epoch,
            "best": run.best,
            "rng": rng,
            "config": to_dict(run.cfg),
            "model_config": run.trainee.classifier.config.to_dict(),
            "format": run.checkpoint_format,
        }
        if run.ema is not None:
            obj["model_ema"] = _cpu_state(run.ema)
        U.save_checkpoint(obj, path)
        U.prune_checkpoints(run.work, run.cfg.train.keep_last)
    D.barrier()
    return str(path)


def _save_weights(run: Run, state: dict[str, torch.Tensor], path: Path, **info: Any) -> None:
    """A weights-only file (`{'model': sd, ...}`) that `load_weights` / `videomae2 test` read."""
    U.save_checkpoint(
        {
            "model": state,
            "model_config": run.trainee.classifier.config.to_dict(),
            "config": to_dict(run.cfg),
            "format": run.checkpoint_format + "-weights",
            **info,
        },
        path,
    )


def validate_run(run: Run, epoch: int, val_logger: U.CSVLogger) -> None:
    """Single-view validation; a new best top-1 writes `checkpoint-best.pth`."""
    tc = run.cfg.train
    kw = dict(
        batch_size=tc.val_batch_size,
        num_workers=run.cfg.data.num_workers,
        precision=_eval_precision(run.precision),
    )
    metrics = validate(run.trainee.classifier, run.val_dataset, run.env, **kw)
    ema_top1 = validate(run.ema, run.val_dataset, run.env, **kw)["acc/top1"] if run.ema else ""
    top1 = metrics.get("acc/top1", 0.0)
    if top1 > run.best["top1"]:
        run.best.update(top1=top1, epoch=epoch)
        if run.env.is_main:
            state = _cpu_state(run.trainee.classifier)
            best_path = run.work / "checkpoint-best.pth"
            _save_weights(run, state, best_path, epoch=epoch, step=run.step, metrics=metrics)
    if run.env.is_main:
        row = dict(step=run.step, epoch=epoch, top1=top1, best_top1=run.best["top1"])
        row.update(top5=metrics.get("acc/top5", 0.0), mean1=metrics.get("acc/mean1", 0.0))
        val_logger.log({**row, "ema_top1": ema_top1})
    D.rank_print(
        run.env,
        f"epoch {epoch}: val top1 {100 * top1:.2f}% (best {100 * run.best['top1']:.2f}% at "
        f"epoch {run.best['epoch']})" + (f", EMA {100 * ema_top1:.2f}%" if ema_top1 != "" else ""),
    )


def train_step(run: Run, batches: Any, loss_step: LossStep) -> dict[str, Any]:
    """One optimizer step over `accum_steps` micro-batches from the iterator `batches`."""
    tc, env, device = run.cfg.train, run.env, run.env.device
    t0 = time.perf_counter()
    lr = float(run.schedule[run.step])
    set_lr(run.optimizer, lr)
    data_time, losses, parts_sum = 0.0, [], {}
    for micro in range(tc.accum_steps):
        t_data = time.perf_counter()
        batch = next(batches)
        data_time += time.perf_counter() - t_data
        if batch["errors"]:
            with open(run.work / "bad_videos.txt", "a") as f:
                f.writelines(f"step {run.step} rank {env.rank}: {e}\n" for e in batch["errors"])
            print(f"[rank {env.rank}] " + "\n".join(batch["errors"]), flush=True)
        clean = batch["clips"].to(device, non_blocking=True)
        labels = batch["labels"].to(device, non_blocking=True)
        # One mixing draw per (step, micro-step, rank): reproducible after a resume.
        mix_rng = np.random.default_rng([tc.seed, run.step, micro, env.rank, 11])
        clips, targets, mixp = mix_batch(clean, labels, run.mix, run.cfg.model.num_classes, mix_rng)
        with U.maybe_no_sync(run.model, micro == tc.accum_steps - 1):
            with U.autocast(device, run.precision):
                loss, parts = loss_step(run.model, clips, targets, batch, clean, mixp)
            # reduced before backward so every rank sees the same value and stops together
            value = float(D.all_reduce_mean(loss.detach().float()))
            U.check_finite(value, run.step + 1)
            run.scaler.scale(loss / tc.accum_steps).backward()
        losses.append(value)
        for k, v in parts.items():
            parts_sum[k] = parts_sum.get(k, 0.0) + v / tc.accum_steps
    grad_norm = U.optimizer_step(run.optimizer, run.scaler, run.params, run.cfg.optim.clip_grad)
    if run.ema is not None:
        ema_update(run.ema, run.trainee.classifier, tc.ema_decay)
    run.step += 1
    row = dict(step=run.step, lr=lr, loss=sum(losses) / len(losses), grad_norm=grad_norm)
    row.update(time=round(time.perf_counter() - t0, 4), data_time=round(data_time, 4))
    row.update({k: parts_sum.get(k, "") for k in run.log_fields})
    return row


def epoch_loader(run: Run, epoch: int) -> DataLoader:
    """This rank's remaining batches of `epoch` (those a resumed run has not consumed yet)."""
    tc = run.cfg.train
    batches = epoch_batches(
        len(run.dataset),
        tc.batch_size,
        epoch=epoch,
        seed=tc.seed,
        rank=run.env.rank,
        world_size=run.env.world_size,
    )[: run.steps_per_epoch * tc.accum_steps]
    done = (run.step - epoch * run.steps_per_epoch) * tc.accum_steps
    return DataLoader(
        run.dataset,
        batch_sampler=[[(epoch, int(i)) for i in b] for b in batches[done:]],
        collate_fn=collate_train,
        num_workers=run.cfg.data.num_workers,
        pin_memory=run.env.device.type == "cuda",
        # its own generator: creating the loader must not draw from the global RNG
        generator=torch.Generator().manual_seed(tc.seed + epoch),
    )


def fit(
    cfg: Any,
    env: D.DistEnv,
    trainee: Trainee,
    loss_step: LossStep,
    *,
    checkpoint_format: str = CHECKPOINT_FORMAT,
    log_fields: tuple[str, ...] = (),
    on_setup: Callable[[Run], None] | None = None,
) -> dict[str, Any]:
    """Train `trainee` per `cfg` (a FinetuneJobConfig-shaped config), validate, test.

    Returns {'step', 'loss', 'best_top1', 'best_epoch', 'checkpoint', 'final_model', 'test'}
    ('stopped': True and no test when `train.max_steps` ended the run early). `log_fields` are
    extra per-step values the loss step reports (e.g. 'kd', 'ce'); `on_setup(run)` runs once the
    datasets exist (distillation opens its teacher-logit cache there).
    """
    run = setup_run(cfg, env, trainee, checkpoint_format=checkpoint_format, log_fields=log_fields)
    if on_setup is not None:
        on_setup(run)
    tc, spe = cfg.train, run.steps_per_epoch
    resume_step = run.step if run.resumed_from else None
    logger = U.CSVLogger(run.work / "log.csv", [*LOG_FIELDS, *log_fields], resume_step)
    val_logger = U.CSVLogger(run.work / "val_log.csv", VAL_FIELDS, resume_step)
    progress = Progress(
        run.total_steps - run.step, "step", every=tc.log_interval_s, enabled=env.is_main
    )
    loss, saved = float("nan"), None
    run.model.train()
    for epoch in range(run.step // spe, tc.epochs):
        loader = epoch_loader(run, epoch)
        batches = iter(loader)
        for _ in range(run.step - epoch * spe, spe):
            row = train_step(run, batches, loss_step)
            loss = row["loss"]
            if env.is_main:
                logger.log({**row, "epoch": epoch})
            progress.update(
                1,
                f"epoch {epoch + 1}/{tc.epochs} step {run.step}/{run.total_steps} "
                f"lr {row['lr']:.3g} loss {loss:.4f} grad_norm {row['grad_norm']:.3g}",
            )
            stop = tc.max_steps > 0 and run.step >= tc.max_steps
            epoch_end = run.step % spe == 0
            last = epoch + 1 == tc.epochs
            if (
                epoch_end
                and run.val_dataset is not None
                and ((epoch + 1) % tc.val_every == 0 or last)
            ):
                validate_run(run, epoch + 1, val_logger)
            if (
                stop
                or (tc.save_every_steps > 0 and run.step % tc.save_every_steps == 0)
                or (epoch_end and ((epoch + 1) % tc.save_ckpt_freq == 0 or last))
            ):
                saved = save_run(run, epoch + 1 if epoch_end else epoch)
            if stop:
                D.rank_print(env, f"stopped at max_steps={tc.max_steps}; checkpoint {saved}")
                return dict(step=run.step, loss=loss, checkpoint=saved, stopped=True, **_best(run))
        del batches, loader
    return finish(run, loss, saved)


def finish(run: Run, loss: float, saved: str | None) -> dict[str, Any]:
    """Write `final_model.pth` (last / best / EMA weights) and run the multi-view test on it."""
    cfg, env, work = run.cfg, run.env, run.work
    weights = cfg.test.weights
    if weights not in ("last", "best", "ema"):
        raise ValueError(f"test.weights must be last, best or ema, got {weights!r}")
    if weights == "ema" and run.ema is None:
        raise ValueError("test.weights='ema' needs train.model_ema=True")
    final_model = work / "final_model.pth"
    if env.is_main:
        state = _cpu_state(run.ema if weights == "ema" else run.trainee.classifier)
        if weights == "best" and (work / "checkpoint-best.pth").is_file():
            state = U.load_checkpoint(work / "checkpoint-best.pth")["model"]
        _save_weights(run, state, final_model, weights=weights, step=run.step)
    D.barrier()
    result: dict[str, Any] = dict(
        step=run.step,
        loss=loss,
        checkpoint=saved or str(U.latest_checkpoint(work) or ""),
        final_model=str(final_model),
        **_best(run),
    )
    if cfg.test.enabled:
        D.rank_print(env, f"multi-view test of {final_model} ({weights} weights)")
        summary = final_test(cfg, final_model, env, run.precision)
        result["test"] = {k: v for k, v in summary.items() if k.startswith("acc/")}
    if env.is_main:
        (work / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    D.rank_print(env, f"done: {run.step} steps, last loss {loss:.4f}, {_best(run)}")
    return result


def _best(run: Run) -> dict[str, Any]:
    return {"best_top1": run.best["top1"], "best_epoch": run.best["epoch"]}


# ---------------------------------------------------------------------------------------- job


def prepare(cfg: Any, env: D.DistEnv) -> None:
    """Work dir, resolved config, threads, generated data: the part every training job shares."""
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    if env.is_main:
        Path(cfg.work_dir).mkdir(parents=True, exist_ok=True)
        dump_json(cfg, Path(cfg.work_dir) / "config.json")
    maybe_generate_data(cfg.data, env)
    D.barrier()


def run_finetune(cfg: FinetuneJobConfig) -> dict[str, Any]:
    """Fine-tune (or resume) per `cfg`; see the module docstring."""
    env = D.init_distributed(cfg.train.device)
    try:
        prepare(cfg, env)
        # Same init on every rank, then seed + rank for per-rank randomness (drop path).
        torch.manual_seed(cfg.train.seed)
        classifier = build_classifier(cfg.model, cfg.data.num_frames, cfg.data.input_size)
        report = init_weights(classifier, cfg.model)
        D.rank_print(env, report)
        torch.manual_seed(cfg.train.seed + env.rank)
        return fit(cfg, env, Trainee(classifier, classifier), classification_step)
    finally:
        D.shutdown()


# ---------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a configs/finetune/*.py recipe")
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config fields, e.g. train.batch_size=8 model.pretrained=pt.pth",
    )
    parser.add_argument("--work-dir", default=None, help="output folder (overrides work_dir)")


def resolve_config(args: argparse.Namespace, cls: type = FinetuneJobConfig) -> Any:
    cfg = load_config(args.config, cls)
    apply_overrides(cfg, args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    return cfg


def run(args: argparse.Namespace) -> int:
    result = run_finetune(resolve_config(args))
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(result))
    return 0


__all__ = [
    "AugmentConfig",
    "FinalTestConfig",
    "FinetuneDataConfig",
    "FinetuneJobConfig",
    "FinetuneModelConfig",
    "FinetuneOptimConfig",
    "FinetuneRunConfig",
    "LabeledVideo",
    "Run",
    "Trainee",
    "add_arguments",
    "build_classifier",
    "build_param_groups",
    "build_train_dataset",
    "build_val_dataset",
    "classification_step",
    "ema_update",
    "final_test",
    "fit",
    "init_weights",
    "restore_run",
    "run",
    "run_finetune",
    "save_run",
    "setup_run",
    "train_step",
    "validate",
]
