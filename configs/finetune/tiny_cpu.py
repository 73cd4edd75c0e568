# A tiny fine-tuning run that finishes on a laptop CPU in a few minutes.
# `videomae2 finetune configs/finetune/tiny_cpu.py` writes the generated temporal dataset
# (10 classes that differ only in time: moving left/right, rotating cw/ccw, ...) to
# data/generated (once) and fine-tunes the tiny pretraining architecture (width 96, 4 blocks,
# 8 frames at 64 px, the shape of configs/pretrain/tiny_cpu.py) with the real recipe: layer decay,
# AdamW (0.9, 0.999), warmup + cosine, RandAugment, random-resized crop, cube erasing,
# Mixup/CutMix + label smoothing, repeated augmentation, per-epoch validation, 2x3-view test.
# Start from a pretraining checkpoint with
#   --cfg-options model.pretrained=work_dirs/pretrain_tiny_cpu/checkpoint-XXXXXXXX.pth
from videomae2.engine.finetune import (
    AugmentConfig,
    FinalTestConfig,
    FinetuneDataConfig,
    FinetuneJobConfig,
    FinetuneModelConfig,
    FinetuneOptimConfig,
    FinetuneRunConfig,
)

ROOT = "data/generated"

config = FinetuneJobConfig(
    model=FinetuneModelConfig(
        arch="vit_small_patch16_224",
        num_classes=10,
        embed_dim=96,
        depth=4,
        num_heads=3,
        drop_path_rate=0.1,
        init_scale=0.001,
        pretrained="",
    ),
    data=FinetuneDataConfig(
        ann_files=(f"{ROOT}/train_list.txt",),
        data_prefixes=(f"{ROOT}/videos",),
        val_ann_file=f"{ROOT}/val_list.txt",
        val_data_prefix=f"{ROOT}/videos",
        sampling="dense",
        num_frames=8,
        frame_interval=4,
        input_size=64,
        short_side=64,  # resize before RandAugment: cheaper, and the crop scale means the same
        num_sample=2,
        num_workers=2,
        generated_videos_per_class=20,
        generated_root=ROOT,
        generated_classes=10,
    ),
    aug=AugmentConfig(
        rand_augment="rand-m7-n4-mstd0.5-inc1",
        rrc_scale=(0.25, 1.0),  # 64-px clips: the recipe's 0.08 leaves almost nothing
        flip=False,  # left/right and clockwise/anticlockwise are classes here (as in SSv2)
        erase_prob=0.25,
        mixup=0.8,
        cutmix=1.0,
        label_smoothing=0.1,
    ),
    optim=FinetuneOptimConfig(
        base_lr=1e-3 * 256 / 8,  # peak 1e-3 at batch 8 on one process
        min_lr=1e-6 * 256 / 8,
        warmup_epochs=2,
        weight_decay=0.05,
        layer_decay=0.75,
        clip_grad=5.0,
    ),
    train=FinetuneRunConfig(
        epochs=20,
        batch_size=8,
        seed=0,
        device="auto",
        precision="fp32",
        val_every=2,
        val_batch_size=8,
        save_ckpt_freq=2,
        keep_last=2,
        log_interval_s=5.0,
    ),
    test=FinalTestConfig(num_clips=2, crop="three_crop", batch_size=4, num_workers=2),
    work_dir="work_dirs/finetune_tiny_cpu",
)
