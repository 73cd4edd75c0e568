"""The pretraining job: `videomae2 pretrain CONFIG [--cfg-options k=v ...] [--work-dir D]`.

Flow: video list / folder -> PretrainDataset (decode once, `num_sample` augmented copies with
their own dual masks, in DataLoader workers) -> PretrainVisionTransformer -> pretrain_loss ->
AdamW with a per-step cosine schedule. One flat loop: set lr, forward under autocast, check the
loss is finite, backward (accumulating), unscale, clip, step, log, checkpoint.

Resumable to the bit: the data order and every augmentation/mask are functions of
`(seed, epoch, index)`, the checkpoint holds model, optimizer, scaler, step and every rank's RNG
state, and a resumed run skips the batches already consumed in its epoch.

Gradient accumulation and DDP average per-micro-batch / per-rank losses, each the batch-pooled
`Σ(l·lm)/Σ(lm)` of its own clips (as the original's DDP). That equals one big batch exactly when
every clip has the same number of loss tokens, which holds for the released settings (tube +
running cell with T' a multiple of 4, and v1 decoding always); otherwise it is a weighted mean.

Distributed with torchrun: DDP (default) or FSDP2 (`train.parallel=fsdp`, `fully_shard` per
block). Checkpoints always hold the plain original-layout state dict (`encoder.*`, ...), gathered
from the shards and without wrapper prefixes, so they load into `vit_*` classifiers directly.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from videomae2 import distributed as D
from videomae2.config import apply_overrides, dump_json, load_config, to_dict
from videomae2.data.train_datasets import (
    PretrainDataset,
    collate_pretrain,
    epoch_batches,
    load_pretrain_records,
    write_synthetic_videos,
)
from videomae2.engine import train_utils as U
from videomae2.losses import pretrain_loss
from videomae2.models.layers import Block
from videomae2.models.registry import create_model
from videomae2.optim import build_adamw, cosine_schedule, param_groups, scale_lr, set_lr
from videomae2.progress import Progress

CHECKPOINT_FORMAT = "videomae2-pretrain-1"
LOG_FIELDS = ["step", "epoch", "lr", "loss", "grad_norm", "time", "data_time"]

# ----------------------------------------------------------------------------------- config


@dataclass
class PretrainModelConfig:
    """A registry name plus the architecture overrides a recipe needs (None = the size's)."""

    arch: str = "pretrain_videomae_base_patch16_224"
    decoder_depth: int = 4
    drop_path_rate: float = 0.0
    grad_checkpointing: bool = False
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float | None = None
    patch_size: int | None = None
    decoder_embed_dim: int | None = None
    decoder_num_heads: int | None = None


@dataclass
class MaskConfig:
    mask_type: str = "tube"  # tube | random
    mask_ratio: float = 0.9
    decoder_mask_type: str = "run_cell"  # run_cell | none (v1: decode every hidden token)
    decoder_mask_ratio: float = 0.5


@dataclass
class PretrainDataConfig:
    """`ann_file=''` trains on every video under `data_root`."""

    ann_file: str = ""
    data_root: str = ""
    num_frames: int = 16
    sampling_rate: int = 4
    input_size: int = 224
    num_sample: int = 4  # repeated augmentation: clips per decoded video
    num_workers: int = 8
    max_retries: int = 10  # bad videos replaced in a row before giving up
    synthetic_videos: int = 0  # > 0: first fill data_root with this many generated videos
    synthetic_frames: int = 48
    synthetic_size: tuple[int, int] = (96, 128)  # (h, w) of generated videos
    # > 0: decode up to this many MiB of videos once, before training, and read clips from
    # memory (small datasets such as the demo's; the workers share it copy-on-write)
    cache_mb: int = 0


@dataclass
class PretrainOptimConfig:
    base_lr: float = 1e-3  # peak lr = base_lr · batch_size · accum · world / 256 (scale_lr)
    min_lr: float = 1e-5  # scaled the same way
    scale_lr: bool = True  # False: base_lr / min_lr are used as given
    warmup_epochs: int = 40
    warmup_steps: int = -1  # >= 0 overrides warmup_epochs
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    clip_grad: float | None = None


@dataclass
class PretrainRunConfig:
    epochs: int = 200
    batch_size: int = 32  # videos per process per micro-step, before num_sample
    accum_steps: int = 1
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    parallel: str = "ddp"  # ddp | fsdp (multi-process only)
    compile: bool = False
    normalize_target: bool = True
    save_ckpt_freq: int = 20  # epochs; the last epoch is always saved
    save_every_steps: int = 0  # 0 = only at epoch boundaries
    keep_last: int = 0  # keep the newest N checkpoints (0 = all)
    max_steps: int = 0  # stop (and save) after this global step; the schedule is unchanged
    log_interval_s: float = 10.0  # console line period when not on a terminal
    threads: int = 0  # torch intra-op threads; 0 = leave the default
    auto_resume: bool = True
    resume: str = ""  # explicit checkpoint path (overrides auto-resume)


@dataclass
class PretrainJobConfig:
    model: PretrainModelConfig = field(default_factory=PretrainModelConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    optim: PretrainOptimConfig = field(default_factory=PretrainOptimConfig)
    train: PretrainRunConfig = field(default_factory=PretrainRunConfig)
    work_dir: str = "work_dirs/pretrain"


# ------------------------------------------------------------------------------ building blocks


def build_model(cfg: PretrainJobConfig) -> nn.Module:
    """The registry model with the recipe's overrides and the data's clip size."""
    m = cfg.model
    overrides: dict[str, Any] = dict(
        num_frames=cfg.data.num_frames,
        img_size=cfg.data.input_size,
        decoder_depth=m.decoder_depth,
        drop_path_rate=m.drop_path_rate,
        grad_checkpointing=m.grad_checkpointing,
    )
    for name in ("embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size"):
        if getattr(m, name) is not None:
            overrides[name] = getattr(m, name)
    for name in ("decoder_embed_dim", "decoder_num_heads"):
        if getattr(m, name) is not None:
            overrides[name] = getattr(m, name)
    return create_model(m.arch, **overrides)


def build_dataset(cfg: PretrainJobConfig, patch_size: int, tubelet_size: int) -> PretrainDataset:
    d, k = cfg.data, cfg.masks
    records = load_pretrain_records(d.ann_file, d.data_root)
    videos = [r.path for r in records if r.total_frames < 0]  # frame folders are not cached
    readers = U.video_readers(videos, d.cache_mb)
    return PretrainDataset(
        records,
        num_frames=d.num_frames,
        sampling_rate=d.sampling_rate,
        input_size=d.input_size,
        num_sample=d.num_sample,
        patch_size=patch_size,
        tubelet_size=tubelet_size,
        mask_type=k.mask_type,
        mask_ratio=k.mask_ratio,
        decoder_mask_type=k.decoder_mask_type,
        decoder_mask_ratio=k.decoder_mask_ratio,
        seed=cfg.train.seed,
        max_retries=d.max_retries,
        **readers,
    )


def _state_options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def gather_state(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict]:
    """Full, unwrapped model and optimizer state dicts (collective under FSDP; CPU tensors).

    The model dict has the model's own names (no `module.` / `_orig_mod.`): the original layout.
    """
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    opts = _state_options(cpu_offload=True)
    return (
        get_model_state_dict(model, options=opts),
        get_optimizer_state_dict(model, optimizer, options=opts),
    )


def restore_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, model_sd: dict, optim_sd: dict
) -> None:
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    set_model_state_dict(model, model_sd, options=_state_options())
    set_optimizer_state_dict(model, optimizer, optim_sd, options=_state_options())


def _gather_rng(env: D.DistEnv) -> list[dict[str, torch.Tensor]]:
    state = U.capture_rng_state()
    if not env.distributed:
        return [state]
    states: list[Any] = [None] * env.world_size
    torch.distributed.all_gather_object(states, state)
    return states


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed_keys(a, b, name + ".")
        elif (list(a) if isinstance(a, tuple | list) else a) != (
            list(b) if isinstance(b, tuple | list) else b
        ):
            out.append(name)
    return out


# ---------------------------------------------------------------------------------------- job


def run_pretrain(cfg: PretrainJobConfig) -> dict[str, Any]:
    """Train (or resume) per `cfg`; returns {'step', 'loss', 'checkpoint'} of the last step."""
    env = D.init_distributed(cfg.train.device)
    try:
        return _train(cfg, env)
    finally:
        D.shutdown()


def _train(cfg: PretrainJobConfig, env: D.DistEnv) -> dict[str, Any]:
    tc, oc, dc = cfg.train, cfg.optim, cfg.data
    if tc.parallel not in ("ddp", "fsdp"):
        raise ValueError(f"train.parallel must be 'ddp' or 'fsdp', got {tc.parallel!r}")
    device = env.device
    work = Path(cfg.work_dir)
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    if env.is_main:
        work.mkdir(parents=True, exist_ok=True)
        dump_json(cfg, work / "config.json")
        if dc.synthetic_videos > 0:
            write_synthetic_videos(
                dc.data_root,
                dc.synthetic_videos,
                num_frames=dc.synthetic_frames,
                size=dc.synthetic_size,
                seed=tc.seed,
            )
    D.barrier()

    # Same init on every rank (DDP broadcasts anyway; FSDP relies on it), then seed + rank for
    # the per-rank randomness (drop path), as the original.
    torch.manual_seed(tc.seed)
    core = build_model(cfg)
    mcfg = core.config
    dataset = build_dataset(cfg, mcfg.patch_size, mcfg.tubelet_size)
    torch.manual_seed(tc.seed + env.rank)
    core.to(device)
    precision = U.select_precision(tc.precision, device)
    if env.distributed and tc.parallel == "fsdp":
        model = D.apply_fsdp(core, env, Block)
    else:
        model = D.wrap_ddp(core, env)
    if tc.compile:
        core.compile()  # in place: parameter names (and checkpoint keys) stay unchanged

    micro_per_epoch = len(dataset) // (tc.batch_size * env.world_size)
    steps_per_epoch = micro_per_epoch // tc.accum_steps
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
    schedule = cosine_schedule(peak, min_lr, total_steps, warmup)

    groups = param_groups(core, oc.weight_decay, skip_list=core.no_weight_decay())
    optimizer = build_adamw(groups, peak, tuple(oc.betas), oc.eps)
    scaler = U.grad_scaler(device, precision)

    step = 0
    resume = tc.resume or (str(U.latest_checkpoint(work) or "") if tc.auto_resume else "")
    if resume:
        ckpt = U.load_checkpoint(resume)
        restore_state(model, optimizer, ckpt["model"], ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        step = int(ckpt["step"])
        changed = _changed_keys(ckpt.get("config", {}), to_dict(cfg))
        if changed:
            D.rank_print(env, f"note: config differs from the checkpoint's in {changed}")
        rng = ckpt["rng"]
        if len(rng) == env.world_size:
            U.restore_rng_state(rng[env.rank])
        else:
            D.rank_print(env, f"world size changed ({len(rng)} -> {env.world_size}): RNG reseeded")
            torch.manual_seed(tc.seed + env.rank + step)
        D.rank_print(env, f"resumed from {resume} at step {step}")

    D.rank_print(
        env,
        f"pretraining {cfg.model.arch}: {len(dataset)} videos, {steps_per_epoch} steps/epoch x "
        f"{tc.epochs} epochs, {tc.batch_size * dc.num_sample} clips/process/micro-step, "
        f"{env.world_size} process(es), peak lr {peak:.3g}, precision {precision.name}, "
        f"device {device}",
    )
    # rank 0 alone owns the log (creating a logger rewrites the file)
    logger = (
        U.CSVLogger(work / "log.csv", LOG_FIELDS, step if resume else None) if env.is_main else None
    )
    progress = Progress(
        total_steps - step, unit="step", every=tc.log_interval_s, enabled=env.is_main
    )
    bad_log = work / "bad_videos.txt"
    params = [p for p in core.parameters() if p.requires_grad]
    loss_value = float("nan")
    saved: str | None = resume or None
    if tc.max_steps > 0 and step >= tc.max_steps:
        D.rank_print(env, f"already at step {step} >= max_steps={tc.max_steps}: nothing to do")
        return dict(step=step, loss=loss_value, checkpoint=saved)

    def save() -> str:
        model_sd, optim_sd = gather_state(model, optimizer)
        rng = _gather_rng(env)
        path = U.checkpoint_path(work, step)
        if env.is_main:
            U.save_checkpoint(
                {
                    "model": model_sd,
                    "optimizer": optim_sd,
                    "scaler": scaler.state_dict(),
                    "step": step,
                    "epoch": step // steps_per_epoch,  # completed epochs
                    "rng": rng,
                    "config": to_dict(cfg),
                    "model_config": mcfg.to_dict(),
                    "format": CHECKPOINT_FORMAT,
                },
                path,
            )
            U.prune_checkpoints(work, tc.keep_last)
        D.barrier()
        return str(path)

    model.train()
    for epoch in range(step // steps_per_epoch, tc.epochs):
        batches = epoch_batches(
            len(dataset),
            tc.batch_size,
            epoch=epoch,
            seed=tc.seed,
            rank=env.rank,
            world_size=env.world_size,
        )[: steps_per_epoch * tc.accum_steps]
        done = (step - epoch * steps_per_epoch) * tc.accum_steps  # consumed before a resume
        loader = DataLoader(
            dataset,
            batch_sampler=[[(epoch, int(i)) for i in b] for b in batches[done:]],
            collate_fn=collate_pretrain,
            num_workers=dc.num_workers,
            pin_memory=device.type == "cuda",
            # its own generator: creating the loader must not draw from the global RNG
            generator=torch.Generator().manual_seed(tc.seed + epoch),
        )
        batch_iter = iter(loader)
        for _ in range(done // tc.accum_steps, steps_per_epoch):
            t0 = time.perf_counter()
            lr = float(schedule[step])
            set_lr(optimizer, lr)
            data_time = 0.0
            losses = []
            for micro in range(tc.accum_steps):
                t_data = time.perf_counter()
                batch = next(batch_iter)
                data_time += time.perf_counter() - t_data
                if batch["errors"]:
                    with open(bad_log, "a") as f:
                        f.writelines(f"step {step} rank {env.rank}: {e}\n" for e in batch["errors"])
                    print(f"[rank {env.rank}] " + "\n".join(batch["errors"]), flush=True)
                videos = batch["videos"].to(device, non_blocking=True)
                mask = batch["mask"].to(device, non_blocking=True)
                dmask = batch["decode_mask"].to(device, non_blocking=True)
                with U.maybe_no_sync(model, micro == tc.accum_steps - 1):
                    with U.autocast(device, precision):
                        pred = model(videos, mask, dmask)
                        loss = pretrain_loss(
                            videos,
                            pred,
                            mask,
                            dmask,
                            patch_size=mcfg.patch_size,
                            tubelet_size=mcfg.tubelet_size,
                            normalize_target=tc.normalize_target,
                        )
                    # reduced before backward so every rank sees the same value and stops together
                    value = float(D.all_reduce_mean(loss.detach()))
                    U.check_finite(value, step + 1)
                    scaler.scale(loss / tc.accum_steps).backward()
                losses.append(value)
            grad_norm = U.optimizer_step(optimizer, scaler, params, oc.clip_grad)
            step += 1
            loss_value = sum(losses) / len(losses)
            row = dict(
                step=step,
                epoch=epoch,
                lr=lr,
                loss=loss_value,
                grad_norm=grad_norm,
                time=round(time.perf_counter() - t0, 4),
                data_time=round(data_time, 4),
            )
            if logger is not None:
                logger.log(row)
            extra = f"epoch {epoch + 1}/{tc.epochs} step {step}/{total_steps} lr {lr:.3g} "
            extra += f"loss {loss_value:.4f} grad_norm {grad_norm:.3g}"
            progress.update(1, extra)
            stop = tc.max_steps > 0 and step >= tc.max_steps
            epoch_end = step % steps_per_epoch == 0
            last_epoch = epoch + 1 == tc.epochs
            if (
                stop
                or (tc.save_every_steps > 0 and step % tc.save_every_steps == 0)
                or (epoch_end and ((epoch + 1) % tc.save_ckpt_freq == 0 or last_epoch))
            ):
                saved = save()
            if stop:
                D.rank_print(env, f"stopped at max_steps={tc.max_steps}; checkpoint {saved}")
                return dict(step=step, loss=loss_value, checkpoint=saved)
        del batch_iter, loader
    D.rank_print(env, f"done: {step} steps, last loss {loss_value:.4f}, checkpoint {saved}")
    return dict(step=step, loss=loss_value, checkpoint=saved)


# ---------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a configs/pretrain/*.py recipe")
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config fields, e.g. train.batch_size=8 data.ann_file=list.txt",
    )
    parser.add_argument("--work-dir", default=None, help="output folder (overrides work_dir)")


def resolve_config(args: argparse.Namespace) -> PretrainJobConfig:
    cfg = load_config(args.config, PretrainJobConfig)
    apply_overrides(cfg, args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    return cfg


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    result = run_pretrain(cfg)
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(result))
    return 0
