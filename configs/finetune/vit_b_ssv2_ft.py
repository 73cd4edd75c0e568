# vit_b_ssv2_ft: finetune-distill.md §5
# (16 GPUs x 16 clips, base lr 0.002 -> actual 0.002).
# Launch (2 nodes x 8 GPUs): torchrun --nproc_per_node=8 --nnodes=2 ... \
#   -m videomae2 finetune configs/finetune/vit_b_ssv2_ft.py
# With fewer GPUs keep the actual lr: raise train.accum_steps (counted in the lr) or set
# optim.base_lr so that base_lr * batch_size * accum_steps * world_size / 256 = 0.002.
from videomae2.engine.finetune import (
    AugmentConfig,
    FinalTestConfig,
    FinetuneDataConfig,
    FinetuneJobConfig,
    FinetuneModelConfig,
    FinetuneOptimConfig,
    FinetuneRunConfig,
)

config = FinetuneJobConfig(
    model=FinetuneModelConfig(
        arch="vit_base_patch16_224",
        num_classes=174,
        drop_path_rate=0.1,
        head_drop_rate=0.0,
        init_scale=0.001,
        grad_checkpointing=False,
        # ViT-B pretrained 800 epochs
        pretrained="work_dirs/pretrain_vit_b/checkpoint-last.pth",
    ),
    data=FinetuneDataConfig(
        ann_files=("data/sthv2/sthv2_train_list_videos.txt",),
        data_prefixes=("data/sthv2/videos",),
        val_ann_file="data/sthv2/sthv2_val_list_videos.txt",
        val_data_prefix="data/sthv2/videos",
        sampling="tsn",
        num_frames=16,
        frame_interval=2,
        input_size=224,
        val_mode="sparse",
        num_sample=2,
        num_workers=8,
    ),
    aug=AugmentConfig(
        rand_augment="rand-m7-n4-mstd0.5-inc1",
        flip=False,  # left/right are SSv2 classes
        erase_prob=0.25,
        mixup=0.8,
        cutmix=1.0,
        label_smoothing=0.1,
    ),
    optim=FinetuneOptimConfig(
        base_lr=0.002,
        min_lr=1e-6,
        warmup_epochs=5,
        weight_decay=0.05,
        layer_decay=0.65,
        betas=(0.9, 0.999),
        clip_grad=None,
    ),
    train=FinetuneRunConfig(
        epochs=25,
        batch_size=16,
        precision="auto",  # bf16 autocast on GPUs that have it (the original used DeepSpeed fp16)
        save_ckpt_freq=1,
        keep_last=2,
    ),
    test=FinalTestConfig(num_clips=2, crop="three_crop", batch_size=1),
    work_dir="work_dirs/vit_b_ssv2_ft",
)
