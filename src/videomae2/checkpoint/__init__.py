"""Checkpoints in every layout: detection, pure key-table converters, safe I/O, one loader.

Layouts (spec/model.md §5): ``original`` (this package's own parameter names), ``mmaction2``,
``hf`` (transformers ``VideoMAEForVideoClassification``) and the pretraining layouts
``original-pretrain`` / ``hf-pretrain``. See `load.py` for the loading rules.
"""

from videomae2.checkpoint.detect import detect_layout, unwrap
from videomae2.checkpoint.errors import CheckpointError, CheckpointMismatchError
from videomae2.checkpoint.k710 import load_head_index, select_head_rows
from videomae2.checkpoint.layouts import (
    LAYOUTS,
    convert_state_dict,
    fold_layer_scale,
    hf_pretrain_to_original,
    hf_to_original,
    mmaction2_to_original,
    original_pretrain_to_hf,
    original_to_hf,
    original_to_mmaction2,
    pretrain_encoder,
)
from videomae2.checkpoint.load import (
    TARGETS,
    ConvertReport,
    LoadReport,
    convert_checkpoint,
    load_model,
    load_weights,
    read_checkpoint,
    save_weights,
)

__all__ = [
    "LAYOUTS",
    "TARGETS",
    "CheckpointError",
    "CheckpointMismatchError",
    "ConvertReport",
    "LoadReport",
    "convert_checkpoint",
    "convert_state_dict",
    "detect_layout",
    "fold_layer_scale",
    "hf_pretrain_to_original",
    "hf_to_original",
    "load_head_index",
    "load_model",
    "load_weights",
    "mmaction2_to_original",
    "original_pretrain_to_hf",
    "original_to_hf",
    "original_to_mmaction2",
    "pretrain_encoder",
    "read_checkpoint",
    "save_weights",
    "select_head_rows",
    "unwrap",
]
