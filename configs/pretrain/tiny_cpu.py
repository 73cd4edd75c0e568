# A tiny pretraining run that finishes on a laptop CPU in about a minute.
# `videomae2 pretrain configs/pretrain/tiny_cpu.py` generates 32 moving-square videos under
# data/synthetic_pretrain (once) and trains a 4-block, width-96 model on 8 frames at 64 px with
# the real recipe's masking (tube 0.9 / running cell 0.5), repeated augmentation, AdamW (0.9, 0.95)
# and a warmup + cosine schedule. Grid (4, 4, 4) = 64 tokens: 8 visible, 32 decoded, 28 in the loss.
from videomae2.engine.pretrain import (
    MaskConfig,
    PretrainDataConfig,
    PretrainJobConfig,
    PretrainModelConfig,
    PretrainOptimConfig,
    PretrainRunConfig,
)

config = PretrainJobConfig(
    model=PretrainModelConfig(
        arch="pretrain_videomae_small_patch16_224",
        embed_dim=96,
        depth=4,
        num_heads=3,
        decoder_embed_dim=64,
        decoder_num_heads=2,
        decoder_depth=2,
    ),
    masks=MaskConfig(
        mask_type="tube", mask_ratio=0.9, decoder_mask_type="run_cell", decoder_mask_ratio=0.5
    ),
    data=PretrainDataConfig(
        ann_file="",
        data_root="data/synthetic_pretrain",
        num_frames=8,
        sampling_rate=4,
        input_size=64,
        num_sample=2,
        num_workers=2,
        synthetic_videos=32,
        synthetic_frames=40,
        synthetic_size=(72, 96),
    ),
    optim=PretrainOptimConfig(
        base_lr=1.5e-3 * 256 / 8,  # peak 1.5e-3 at batch 8 on one process
        min_lr=1e-5 * 256 / 8,
        warmup_epochs=1,
        weight_decay=0.05,
        betas=(0.9, 0.95),
        clip_grad=1.0,
    ),
    train=PretrainRunConfig(
        epochs=10,
        batch_size=8,
        seed=0,
        device="auto",
        precision="fp32",
        save_ckpt_freq=5,
        keep_last=2,
        log_interval_s=2.0,
    ),
    work_dir="work_dirs/pretrain_tiny_cpu",
)
