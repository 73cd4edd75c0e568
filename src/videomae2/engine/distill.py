"""The distillation job: `videomae2 distill CONFIG [--cfg-options k=v ...] [--work-dir D]`.

A frozen teacher (any checkpoint `load_weights` reads, any size; e.g. the K710 ViT-g) teaches a
student classifier (e.g. ViT-S/B initialised from its own pretraining). Everything else (data,
augmentation, mixing, optimizer, layer decay, schedule, validation, checkpoints, resume, DDP,
the final multi-view test) is the fine-tuning job's, reused through `engine.finetune.fit` with
another loss step.

The loss (this project's choice; the original's was never released, finetune-distill.md §8)
-----------------------------------------------------------------------------------------------
    loss = kd_weight · T² · KL( softmax(t / T) ‖ softmax(s / T) )
         + ce_weight · CE(s, y)                      (y: the smoothed / mixed label targets)
         + feat_weight · d(P(f_s), f_t)              (optional feature term)

* KL on temperature-softened class distributions (Hinton et al. 2015); the T² factor keeps the
  gradient scale of the KD term independent of T, so the weights mean the same at any T.
* The teacher sees exactly the clip the student sees, mixup/cutmix included ("consistent
  teaching", Beyer et al. 2022, "Knowledge distillation: a good teacher is patient and
  consistent"): with a fixed target per video, a student trained on heavily augmented clips is
  asked to match predictions for an image it never saw; matching the teacher *function* on the
  student's own views is what made ViT compression work there.
* Recipe defaults (configs/distill/*): T = 1, kd_weight 1, ce_weight 0 for a strong teacher
  (the K710 ViT-g at 83.8% is a better target than one-hot labels, and pure function matching
  was the best setting in that study); the tiny CPU recipe adds the label term because its teacher
  is weak. The feature term projects the student's pooled `fc_norm` feature (width Ds) with a
  trainable linear map to the teacher width Dt and compares it to the teacher's pooled feature
  (smooth-L1 or 1 − cosine). Pooled, not token, features: ViT-g uses 14-px patches and S/B 16-px
  ones, so their token grids differ while the pooled vectors always correspond.

The teacher runs under `torch.inference_mode()` and, by default, bf16 autocast
(`teacher.precision`); its outputs are cloned to ordinary float32 tensors before they enter the
loss (inference tensors cannot be saved for backward).

Teacher-logit cache (`teacher.cache_dir`)
-----------------------------------------
Recomputing a ViT-g forward for every student step costs more than the student itself, and
repeated epochs could reuse it, but only if a cached logit belongs to *exactly* the clip the
student sees. Here that holds by construction:

* a training clip is a pure function of `(seed, variant, video index, attempt, repeat)`
  (data/finetune_datasets.py): temporal sampling, RandAugment, crop, flip and erasing all draw
  from a generator seeded with that key, nothing else;
* with `data.aug_pool = P > 0` the variant is `epoch % P`, so every video has P fixed augmented
  clips per repeat that recur every P epochs (without a pool every epoch is new and a cache
  could never hit: that combination is refused);
* the cache stores, per `(variant, video index, repeat)`, the teacher logits of that clean clip
  plus the index of the video actually decoded (a bad video is replaced deterministically; a
  stored row is used only when the decoded video matches);
* `meta.json` holds a fingerprint of everything else the clip or the logits depend on (seed,
  data lists and pipeline, augmentation, teacher checkpoint identity and precision): a cache
  written under another setting is refused, not silently reused.

Mixing happens after the cache (it depends on which clips share a batch, which changes every
epoch), so with the cache the teacher sees the clean clips and its distributions are mixed with
the batch's λ (`λ·p(x_i) + (1 − λ)·p(x_{B−1−i})`, for CutMix λ = the kept area): the standard
approximation of the teacher on the mixed clip, and the only cacheable one. `teacher.input`
chooses this 'clean' mode explicitly; the default 'mixed' runs the teacher on the mixed clip.

Storage: float32 memory-mapped arrays `(P, N, num_sample, K)` (+ features when the feature term
is on), written by every rank for its own rows, so DDP needs no communication for the cache.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from videomae2 import distributed as D
from videomae2.augment import MixParams
from videomae2.config import to_dict
from videomae2.engine import finetune as F
from videomae2.engine.finetune import (
    AugmentConfig,
    FinalTestConfig,
    FinetuneDataConfig,
    FinetuneModelConfig,
    FinetuneOptimConfig,
    FinetuneRunConfig,
)
from videomae2.losses import distillation_loss, teacher_soft_targets

CHECKPOINT_FORMAT = "videomae2-distill-1"

# ----------------------------------------------------------------------------------- config


@dataclass
class TeacherConfig:
    """The frozen teacher: a checkpoint and, when its file does not say, its architecture."""

    checkpoint: str = ""
    arch: str = ""  # '' = from the file (our model_config, safetensors metadata, or shapes)
    num_classes: int = 0  # with arch: 0 = the student's
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    patch_size: int | None = None
    head_index: str = ""  # JSON index list: teacher head rows for the student's label space
    precision: str = "bf16"  # bf16 | fp32 (autocast dtype of the teacher forward)
    input: str = "mixed"  # mixed: the student's exact (mixed) clip | clean: see module docstring
    cache_dir: str = ""  # '' = no cache; needs data.aug_pool > 0 and clean input when mixing
    max_batch: int = 0  # teacher clips per forward (0 = the whole micro-batch)


@dataclass
class DistillLossConfig:
    temperature: float = 1.0
    kd_weight: float = 1.0
    ce_weight: float = 0.0
    feat_weight: float = 0.0
    feat_loss: str = "smooth_l1"  # smooth_l1 | cosine


@dataclass
class DistillJobConfig:
    model: FinetuneModelConfig = field(default_factory=FinetuneModelConfig)  # the student
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    distill: DistillLossConfig = field(default_factory=DistillLossConfig)
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    aug: AugmentConfig = field(default_factory=AugmentConfig)
    optim: FinetuneOptimConfig = field(default_factory=FinetuneOptimConfig)
    train: FinetuneRunConfig = field(default_factory=FinetuneRunConfig)
    test: FinalTestConfig = field(default_factory=FinalTestConfig)
    work_dir: str = "work_dirs/distill"


# ----------------------------------------------------------------------------------- teacher


def _select_head_rows_(model: nn.Module, index: list[int]) -> None:
    """Keep only rows `index` of the classifier head, in place (e.g. 710 -> 400 classes)."""
    head = model.head
    if max(index) >= head.out_features:
        raise ValueError(f"teacher head_index refers to row {max(index)} of {head.out_features}")
    t = torch.tensor(index, dtype=torch.long, device=head.weight.device)
    new = nn.Linear(head.in_features, len(index), device=head.weight.device)
    with torch.no_grad():
        new.weight.copy_(head.weight.index_select(0, t))
        new.bias.copy_(head.bias.index_select(0, t))
    model.head = new


def load_teacher(
    tc: TeacherConfig, student_classes: int, num_frames: int, img_size: int
) -> nn.Module:
    """Build the teacher, load it strictly, map its head rows, freeze it (eval mode)."""
    from videomae2.checkpoint import load_weights
    from videomae2.checkpoint.io import read_checkpoint_file
    from videomae2.checkpoint.load import load_model
    from videomae2.models.registry import create_model
    from videomae2.models.vit import VisionTransformer, ViTConfig

    if not tc.checkpoint:
        raise ValueError("teacher.checkpoint is required")
    if tc.arch:
        kw: dict[str, Any] = dict(
            num_classes=tc.num_classes or student_classes, num_frames=num_frames, img_size=img_size
        )
        for name in ("embed_dim", "depth", "num_heads", "patch_size"):
            if getattr(tc, name) is not None:
                kw[name] = getattr(tc, name)
        teacher = create_model(tc.arch, **kw)
        load_weights(teacher, tc.checkpoint, strict=True)
    else:
        raw = read_checkpoint_file(tc.checkpoint).obj
        if isinstance(raw, dict) and isinstance(raw.get("model_config"), dict):
            # a file written by this package's training jobs: its config is inside
            teacher = VisionTransformer(ViTConfig.from_dict(raw["model_config"]))
            load_weights(teacher, tc.checkpoint, strict=True)
        else:
            # frames / size are not passed: they would override a file's config metadata, and
            # the computed position table follows the input grid anyway
            teacher = load_model(tc.checkpoint, num_heads=tc.num_heads)
    if tc.head_index:
        _select_head_rows_(teacher, F.read_index(tc.head_index))
    classes = teacher.head.out_features
    if classes != student_classes:
        raise ValueError(
            f"the teacher predicts {classes} classes and the student {student_classes}: set "
            "teacher.head_index to map the teacher's rows (e.g. label_710to400.json)"
        )
    return teacher.eval().requires_grad_(False)


def _file_identity(path: str) -> dict[str, Any]:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


# ------------------------------------------------------------------------------------- cache


class TeacherCache:
    """Teacher outputs per `(variant, video index, repeat)` in memory-mapped files.

    `filled[v, n, r]` is 0 (empty) or 1 + the index of the video actually decoded for that key,
    written after the row itself, so a row is only ever read complete.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        fingerprint: dict[str, Any],
        shape: tuple[int, int, int],
        num_classes: int,
        feat_dim: int = 0,
        create: bool = True,
    ) -> None:
        self.root = Path(root)
        self.shape = tuple(shape)  # (variants, videos, repeats)
        meta = {"fingerprint": fingerprint, "shape": list(shape), "classes": num_classes}
        meta["feat_dim"] = feat_dim
        meta_path = self.root / "meta.json"
        files = {
            "filled": ("int32", self.shape),
            "logits": ("float32", (*self.shape, num_classes)),
        }
        if feat_dim:
            files["feats"] = ("float32", (*self.shape, feat_dim))
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
            if meta_path.is_file():
                old = json.loads(meta_path.read_text())
                if old != json.loads(json.dumps(meta)):
                    raise ValueError(
                        f"teacher cache {self.root} was written for another setting (data, "
                        "augmentation, seed or teacher differ); delete it or choose another "
                        f"teacher.cache_dir. Stored: {old['fingerprint']}"
                    )
            else:
                for name, (dtype, shp) in files.items():
                    arr = np.lib.format.open_memmap(
                        self.root / f"{name}.npy", mode="w+", dtype=dtype, shape=shp
                    )
                    arr.flush()
                    del arr
                meta_path.write_text(json.dumps(meta, indent=2) + "\n")
        self.arrays = {name: np.load(self.root / f"{name}.npy", mmap_mode="r+") for name in files}

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """`keys (B, 4)` = (variant, index, repeat, item) -> (hit mask (B,), rows of the hits)."""
        v, n, r, item = keys.T
        hit = self.arrays["filled"][v, n, r] == item + 1
        rows = {k: np.asarray(a[v[hit], n[hit], r[hit]]) for k, a in self.arrays.items()}
        rows.pop("filled")
        return hit, rows

    def store(self, keys: np.ndarray, values: dict[str, np.ndarray]) -> None:
        v, n, r, item = keys.T
        for name, rows in values.items():
            self.arrays[name][v, n, r] = rows
            self.arrays[name].flush()
        self.arrays["filled"][v, n, r] = item + 1
        self.arrays["filled"].flush()


# ---------------------------------------------------------------------------------- the step


class StudentWithProjector(nn.Module):
    """The trainable module: the student classifier plus the feature projector (if any).

    Returns (logits, projected pooled features or None)."""

    def __init__(self, student: nn.Module, projector: nn.Module | None) -> None:
        super().__init__()
        self.student = student
        self.projector = projector

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        feats = self.student.forward_features(x)  # (B, Ds)
        logits = self.student.forward_head(feats)  # (B, K)
        return logits, (self.projector(feats) if self.projector is not None else None)


class DistillStep:
    """The loss step `fit` calls: student forward, teacher outputs, `distillation_loss`."""

    def __init__(self, teacher: nn.Module, cfg: DistillJobConfig, device: torch.device) -> None:
        self.teacher = teacher
        self.cfg = cfg
        self.device = device
        self.loss_cfg = cfg.distill
        self.want_feats = cfg.distill.feat_weight > 0
        self.cache: TeacherCache | None = None
        mixing = F.mix_settings(cfg.aug).enabled
        # Without mixing the clean clip IS the student's input: the cache is exact either way.
        self.clean_input = cfg.teacher.input == "clean" or not mixing
        if cfg.teacher.input not in ("mixed", "clean"):
            raise ValueError(f"teacher.input must be mixed or clean, got {cfg.teacher.input!r}")
        if cfg.teacher.precision not in ("bf16", "fp32"):
            raise ValueError(f"teacher.precision must be bf16 or fp32, got {cfg.teacher.precision}")
        if cfg.teacher.cache_dir:
            if cfg.data.aug_pool <= 0:
                raise ValueError(
                    "teacher.cache_dir needs data.aug_pool > 0: without a fixed pool of augmented "
                    "clips every epoch sees new clips and no cached logit could ever be reused"
                )
            if not self.clean_input:
                raise ValueError(
                    "teacher.cache_dir with mixup/cutmix needs teacher.input='clean' (the cache "
                    "holds per-clip logits; the mixed clip depends on the batch)"
                )

    def fingerprint(self) -> dict[str, Any]:
        """Everything a cached teacher output depends on besides its key."""
        cfg = self.cfg
        data = to_dict(cfg.data)
        for k in ("num_workers", "max_retries"):  # do not change any clip
            data.pop(k)
        return {
            "seed": cfg.train.seed,
            "data": data,
            "aug": to_dict(cfg.aug),
            "teacher": {
                **_file_identity(cfg.teacher.checkpoint),
                "arch": cfg.teacher.arch,
                "head_index": cfg.teacher.head_index,
                "precision": cfg.teacher.precision,
            },
        }

    def bind(self, run: F.Run) -> None:
        """`fit`'s on_setup hook: open (rank 0 creates) the cache once the dataset exists."""
        self.teacher.to(run.env.device)
        tc = self.cfg.teacher
        if not tc.cache_dir:
            return
        shape = (self.cfg.data.aug_pool, len(run.dataset), self.cfg.data.num_sample)
        kw = dict(
            fingerprint=json.loads(json.dumps(self.fingerprint())),
            shape=shape,
            num_classes=self.cfg.model.num_classes,
            feat_dim=self.teacher.embed_dim if self.want_feats else 0,
        )
        if run.env.is_main:
            TeacherCache(tc.cache_dir, create=True, **kw)
        D.barrier()
        self.cache = TeacherCache(tc.cache_dir, create=False, **kw)

    def teacher_forward(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        """Teacher logits (and pooled features) as ordinary float32 tensors."""
        dtype = torch.bfloat16 if self.cfg.teacher.precision == "bf16" else None
        step = self.cfg.teacher.max_batch or clips.shape[0]
        outs: dict[str, list[torch.Tensor]] = {"logits": [], "feats": []}
        with torch.inference_mode():
            ctx = (
                torch.autocast(self.device.type, dtype=dtype)
                if dtype is not None
                else torch.autocast(self.device.type, enabled=False)
            )
            with ctx:
                for i in range(0, clips.shape[0], step):
                    feats = self.teacher.forward_features(clips[i : i + step])
                    outs["logits"].append(self.teacher.forward_head(feats).float())
                    outs["feats"].append(feats.float())
        # clone outside inference mode: inference tensors cannot be saved for backward
        return {k: torch.cat(v).clone() for k, v in outs.items()}

    def clean_outputs(self, clean: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """Teacher outputs of the clean clips, from the cache where possible."""
        if self.cache is None:
            return self.teacher_forward(clean)
        keys = torch.stack(
            [batch["variant"], batch["index"], batch["repeat"], batch["item"]], dim=1
        ).numpy()
        hit, rows = self.cache.lookup(keys)
        names = ["logits", "feats"] if self.want_feats else ["logits"]
        out = {
            k: torch.empty((len(keys), self.cache.arrays[k].shape[-1]), device=clean.device)
            for k in names
        }
        hit_t = torch.from_numpy(hit).to(clean.device)
        for k in names:
            out[k][hit_t] = torch.from_numpy(rows[k]).to(clean.device)
        miss = ~hit
        if miss.any():
            fresh = self.teacher_forward(clean[~hit_t])
            for k in names:
                out[k][~hit_t] = fresh[k]
            self.cache.store(keys[miss], {k: fresh[k].cpu().numpy() for k in names})
        return out

    def __call__(
        self,
        model: nn.Module,
        clips: torch.Tensor,
        targets: torch.Tensor,
        batch: dict,
        clean: torch.Tensor,
        mix: MixParams,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        lc = self.loss_cfg
        logits, feats = model(clips)
        T = lc.temperature
        if self.clean_input:
            t = self.clean_outputs(clean, batch)
            p = teacher_soft_targets(t["logits"], T)
            p = p * mix.lam + p.flip(0) * (1.0 - mix.lam)  # mix the distributions like the clips
            t_feats = t.get("feats")
            if t_feats is not None and mix.lam != 1.0:
                t_feats = t_feats * mix.lam + t_feats.flip(0) * (1.0 - mix.lam)
        else:
            t = self.teacher_forward(clips)
            p, t_feats = teacher_soft_targets(t["logits"], T), t["feats"]
        return distillation_loss(
            logits,
            p,
            targets,
            temperature=T,
            kd_weight=lc.kd_weight,
            ce_weight=lc.ce_weight,
            student_feats=feats,
            teacher_feats=t_feats if self.want_feats else None,
            feat_weight=lc.feat_weight,
            feat_loss=lc.feat_loss,
        )


# ---------------------------------------------------------------------------------------- job


def run_distill(cfg: DistillJobConfig) -> dict[str, Any]:
    """Distill (or resume) per `cfg`; see the module docstring."""
    env = D.init_distributed(cfg.train.device)
    try:
        F.prepare(cfg, env)
        d = cfg.data
        teacher = load_teacher(cfg.teacher, cfg.model.num_classes, d.num_frames, d.input_size)
        torch.manual_seed(cfg.train.seed)
        student = F.build_classifier(cfg.model, d.num_frames, d.input_size)
        D.rank_print(env, F.init_weights(student, cfg.model))
        projector = None
        if cfg.distill.feat_weight > 0:
            projector = nn.Linear(student.embed_dim, teacher.embed_dim)
        torch.manual_seed(cfg.train.seed + env.rank)
        n_t = sum(p.numel() for p in teacher.parameters())
        n_s = sum(p.numel() for p in student.parameters())
        D.rank_print(env, f"teacher {n_t / 1e6:.2f}M parameters -> student {n_s / 1e6:.2f}M")
        step = DistillStep(teacher, cfg, env.device)
        extra = {"projector": projector} if projector is not None else {}
        trainee = F.Trainee(student, StudentWithProjector(student, projector), extra)
        fields = ("kd", "ce", "feat")
        return F.fit(
            cfg,
            env,
            trainee,
            step,
            checkpoint_format=CHECKPOINT_FORMAT,
            log_fields=fields,
            on_setup=step.bind,
        )
    finally:
        D.shutdown()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a configs/distill/*.py recipe")
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config fields, e.g. teacher.checkpoint=g.pth distill.temperature=2",
    )
    parser.add_argument("--work-dir", default=None, help="output folder (overrides work_dir)")


def run(args: argparse.Namespace) -> int:
    result = run_distill(F.resolve_config(args, DistillJobConfig))
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(result))
    return 0


__all__ = [
    "DistillJobConfig",
    "DistillLossConfig",
    "DistillStep",
    "StudentWithProjector",
    "TeacherCache",
    "TeacherConfig",
    "add_arguments",
    "load_teacher",
    "run",
    "run_distill",
]
