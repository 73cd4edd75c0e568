# ViT-g (K710-fine-tuned, 710 classes) -> ViT-S on Kinetics-710 (finetune-distill.md §8).
# The original distillation recipe (loss, temperature, schedule) was never published; this is the
# project's own choice (engine/distill.py docstring): KL at T = 1 on exactly the student's clips
# ("consistent teaching"), no label term, the fine-tuning recipe of vit_b_k710_ft otherwise
# (32 GPUs x 16 clips, base lr 7e-4 -> 1.4e-3, layer decay 0.75, 90 epochs).
# The student starts from its own pretraining (its post-pretrained weights in the paper).
# K400 / K600 numbers then use the 710-way head through label_710to{400,600}.json (model.md §7).
# To cache teacher logits (the ViT-g forward costs more than the student's step): set
#   data.aug_pool=N teacher.input=clean teacher.cache_dir=work_dirs/.../teacher_cache
# (each video then has N fixed augmented clips; about 3.7 GB of float32 logits per variant).
from videomae2.engine.distill import DistillJobConfig, DistillLossConfig, TeacherConfig
from videomae2.engine.finetune import (
    AugmentConfig,
    FinalTestConfig,
    FinetuneDataConfig,
    FinetuneModelConfig,
    FinetuneOptimConfig,
    FinetuneRunConfig,
)

config = DistillJobConfig(
    model=FinetuneModelConfig(  # the student
        arch="vit_small_patch16_224",
        num_classes=710,
        drop_path_rate=0.1,
        init_scale=0.001,
        pretrained="work_dirs/pretrain_vit_s/checkpoint-last.pth",
    ),
    teacher=TeacherConfig(
        checkpoint="checkpoints/vit_g_hybrid_pt_1200e_k710_ft.pth",
        arch="vit_giant_patch14_224",
        num_classes=710,
        precision="bf16",
        input="mixed",
        max_batch=16,
    ),
    distill=DistillLossConfig(temperature=1.0, kd_weight=1.0, ce_weight=0.0, feat_weight=0.0),
    data=FinetuneDataConfig(
        ann_files=("data/kinetics710/k710_train_list_videos.txt",),
        data_prefixes=("data/kinetics710/videos_train",),
        val_ann_file="data/kinetics710/k710_val_list_videos.txt",
        val_data_prefix="data/kinetics710/videos_val",
        sampling="dense",
        num_frames=16,
        frame_interval=4,
        input_size=224,
        num_sample=2,
        num_workers=8,
    ),
    aug=AugmentConfig(
        rand_augment="rand-m7-n4-mstd0.5-inc1",
        erase_prob=0.25,
        mixup=0.8,
        cutmix=1.0,
        label_smoothing=0.1,
    ),
    optim=FinetuneOptimConfig(
        base_lr=7e-4,
        min_lr=1e-6,
        warmup_epochs=5,
        weight_decay=0.05,
        layer_decay=0.75,
        betas=(0.9, 0.999),
    ),
    train=FinetuneRunConfig(epochs=90, batch_size=16, precision="auto", keep_last=2),
    test=FinalTestConfig(num_clips=5, crop="three_crop", batch_size=1),
    work_dir="work_dirs/distill_vit_g_to_s_k710",
)
