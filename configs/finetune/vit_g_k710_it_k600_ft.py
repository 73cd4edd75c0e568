# vit_g_k710_it_k600_ft: finetune-distill.md §5
# (32 GPUs x 3 clips, base lr 1e-05 -> actual 3.75e-06).
# Launch (4 nodes x 8 GPUs): torchrun --nproc_per_node=8 --nnodes=4 ... \
#   -m videomae2 finetune configs/finetune/vit_g_k710_it_k600_ft.py
# With fewer GPUs keep the actual lr: raise train.accum_steps (counted in the lr) or set
# optim.base_lr so that base_lr * batch_size * accum_steps * world_size / 256 = 3.75e-06.
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
        arch="vit_giant_patch14_224",
        num_classes=600,
        drop_path_rate=0.25,
        head_drop_rate=0.0,
        init_scale=0.001,
        grad_checkpointing=True,
        # the post-pretrained ViT-g (vit_g_k710_ft)
        pretrained="work_dirs/vit_g_k710_ft/final_model.pth",
        head_index="data/kinetics710/label_710to600.json",  # K600 rows of the K710 head
    ),
    data=FinetuneDataConfig(
        ann_files=("data/kinetics600/kinetics600_train_list_videos.txt",),
        data_prefixes=("data/kinetics600/videos_train",),
        val_ann_file="data/kinetics600/kinetics600_val_list_videos.txt",
        val_data_prefix="data/kinetics600/videos_val",
        sampling="dense",
        num_frames=16,
        frame_interval=4,
        input_size=224,
        val_mode="original",
        num_sample=2,
        num_workers=8,
    ),
    aug=AugmentConfig(
        rand_augment="rand-m7-n4-mstd0.5-inc1",
        flip=True,
        erase_prob=0.25,
        mixup=0.8,
        cutmix=1.0,
        label_smoothing=0.1,
    ),
    optim=FinetuneOptimConfig(
        base_lr=1e-05,
        min_lr=1e-6,
        warmup_epochs=1,
        weight_decay=0.1,
        layer_decay=0.9,
        betas=(0.9, 0.999),
        clip_grad=None,
    ),
    train=FinetuneRunConfig(
        epochs=3,
        batch_size=3,
        precision="auto",  # bf16 autocast on GPUs that have it (the original used DeepSpeed fp16)
        save_ckpt_freq=1,
        keep_last=2,
    ),
    test=FinalTestConfig(num_clips=5, crop="three_crop", batch_size=1),
    work_dir="work_dirs/vit_g_k710_it_k600_ft",
)
