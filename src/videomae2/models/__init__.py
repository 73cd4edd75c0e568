from videomae2.models.registry import create_model, list_models
from videomae2.models.vit import VisionTransformer, ViTConfig

__all__ = ["ViTConfig", "VisionTransformer", "create_model", "list_models"]
