"""ViT-small VideoMAE V2 (distilled from ViT-g, K710 post-pretrained) tested on Kinetics-400.

mmaction2 1.2.0's config of the same name, as one flat typed file: 16x4x1 sampling, 5 clips x 3
crops, Resize(-1, 224), ThreeCrop(224), NCTHW, 0-255 RGB mean/std, 'prob' averaging, top-1/top-5
and mean-class accuracy. Every key can be overridden with --cfg-options, e.g.
test_dataloader.dataset.ann_file=... test_dataloader.dataset.data_prefix.video=...
"""

from videomae2.config import (
    BackboneConfig,
    DataLoaderConfig,
    DataPrefix,
    DatasetConfig,
    EvaluatorConfig,
    HeadConfig,
    ModelConfig,
    PipelineConfig,
    PreprocessorConfig,
    SampleFramesConfig,
    TestConfig,
    TestRuntimeConfig,
)

config = TestConfig(
    model=ModelConfig(
        backbone=BackboneConfig(arch="vit_small_patch16_224", num_frames=16, img_size=224),
        cls_head=HeadConfig(num_classes=400, average_clips="prob"),
        data_preprocessor=PreprocessorConfig(
            mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375), format_shape="NCTHW"
        ),
    ),
    test_dataloader=DataLoaderConfig(
        batch_size=1,
        num_workers=8,
        dataset=DatasetConfig(
            ann_file="data/kinetics400/kinetics400_val_list_videos.txt",
            data_prefix=DataPrefix(video="data/kinetics400/videos_val"),
            pipeline=PipelineConfig(
                sample_frames=SampleFramesConfig(
                    clip_len=16, frame_interval=4, num_clips=5, test_mode=True
                ),
                resize_short=224,
                crop="three_crop",
                crop_size=224,
            ),
        ),
    ),
    test_evaluator=EvaluatorConfig(metrics=("top_k_accuracy", "mean_class_accuracy"), topk=(1, 5)),
    test_cfg=TestRuntimeConfig(precision="fp32"),
)
