"""VideoMAE V2 in plain PyTorch: models, every checkpoint layout, mmaction2-exact testing."""

from videomae2.checkpoint import load_weights, save_weights
from videomae2.models import VisionTransformer, ViTConfig, create_model, list_models

__version__ = "0.1.0"

__all__ = [
    "ViTConfig",
    "VisionTransformer",
    "__version__",
    "create_model",
    "list_models",
    "load_weights",
    "save_weights",
]
