# A tiny distillation run on a laptop CPU: the tiny fine-tuned model teaches a smaller student.
# Run `videomae2 finetune configs/finetune/tiny_cpu.py` first (it writes the generated dataset
# and work_dirs/finetune_tiny_cpu/final_model.pth, the teacher), then
#   videomae2 distill configs/distill/tiny_cpu.py
# The teacher (width 96, 4 blocks) is frozen and runs under inference mode; the student (width
# 64, 2 blocks) learns from KL(teacher || student) at T = 1 plus the label loss (this teacher is
# weak, so labels still help), on exactly the clips it sees (mixup/cutmix included). The teacher
# logits are cached per (augmentation variant, video, repeat): with aug_pool = 4 each video has
# 4 fixed augmented clips per repeat, so from epoch 5 on the teacher does not run at all.
from videomae2.engine.distill import DistillJobConfig, DistillLossConfig, TeacherConfig
from videomae2.engine.finetune import (
    AugmentConfig,
    FinalTestConfig,
    FinetuneDataConfig,
    FinetuneModelConfig,
    FinetuneOptimConfig,
    FinetuneRunConfig,
)

ROOT = "data/generated"

config = DistillJobConfig(
    model=FinetuneModelConfig(  # the student
        arch="vit_small_patch16_224",
        num_classes=10,
        embed_dim=64,
        depth=2,
        num_heads=2,
        drop_path_rate=0.0,
        init_scale=0.001,
        pretrained="",
    ),
    teacher=TeacherConfig(
        checkpoint="work_dirs/finetune_tiny_cpu/final_model.pth",  # architecture read from it
        precision="fp32",  # bf16 is the GPU default; fp32 keeps the CPU demo exact
        input="clean",  # needed by the cache with mixing: the teacher's distributions are mixed
        cache_dir="work_dirs/distill_tiny_cpu/teacher_cache",
    ),
    distill=DistillLossConfig(temperature=1.0, kd_weight=1.0, ce_weight=0.5, feat_weight=0.0),
    data=FinetuneDataConfig(
        ann_files=(f"{ROOT}/train_list.txt",),
        data_prefixes=(f"{ROOT}/videos",),
        val_ann_file=f"{ROOT}/val_list.txt",
        val_data_prefix=f"{ROOT}/videos",
        sampling="dense",
        num_frames=8,
        frame_interval=4,
        input_size=64,
        short_side=64,
        num_sample=2,
        num_workers=2,
        aug_pool=4,
        generated_videos_per_class=20,
        generated_root=ROOT,
        generated_classes=10,
    ),
    aug=AugmentConfig(
        rand_augment="rand-m7-n4-mstd0.5-inc1",
        rrc_scale=(0.25, 1.0),
        flip=False,  # left/right and clockwise/anticlockwise are classes here (as in SSv2)
        erase_prob=0.25,
        mixup=0.8,
        cutmix=1.0,
        label_smoothing=0.1,
    ),
    optim=FinetuneOptimConfig(
        base_lr=1e-3 * 256 / 8,
        min_lr=1e-6 * 256 / 8,
        warmup_epochs=2,
        weight_decay=0.05,
        layer_decay=1.0,  # from scratch: no pretrained layers to protect
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
    work_dir="work_dirs/distill_tiny_cpu",
)
