# vit_g_k710_it_ucf101_ft: finetune-distill.md §5
# (8 GPUs x 3 clips, base lr 0.001 -> actual 9.375e-05).
# Launch (1 node x 8 GPUs): torchrun --nproc_per_node=8 --nnodes=1 ... \
#   -m videomae2 finetune configs/finetune/vit_g_k710_it_ucf101_ft.py
# With fewer GPUs keep the actual lr: raise train.accum_steps (counted in the lr) or set
# optim.base_lr so that base_lr * batch_size * accum_steps * world_size / 256 = 9.375e-05.
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
        num_classes=101,
        drop_path_rate=0.35,
        head_drop_rate=0.5,
        init_scale=0.001,
        grad_checkpointing=True,
        # the post-pretrained ViT-g (vit_g_k710_ft)
        pretrained="work_dirs/vit_g_k710_ft/final_model.pth",
        fresh_head=True,  # UCF101 classes are not Kinetics rows: a new head
    ),
    data=FinetuneDataConfig(
        ann_files=("data/ucf101/ucf101_train_list_videos.txt",),
        data_prefixes=("data/ucf101/videos_train",),
        val_ann_file="data/ucf101/ucf101_val_list_videos.txt",
        val_data_prefix="data/ucf101/videos_val",
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
        base_lr=0.001,
        min_lr=1e-6,
        warmup_epochs=5,
        weight_decay=0.05,
        layer_decay=0.9,
        betas=(0.9, 0.999),
        clip_grad=None,
    ),
    train=FinetuneRunConfig(
        epochs=50,
        batch_size=3,
        precision="auto",  # bf16 autocast on GPUs that have it (the original used DeepSpeed fp16)
        save_ckpt_freq=1,
        keep_last=2,
    ),
    test=FinalTestConfig(num_clips=5, crop="three_crop", batch_size=1),
    work_dir="work_dirs/vit_g_k710_it_ucf101_ft",
)
