"""segzoo's zoo: model registry, pretrained weights, Lightning modules, data, metrics, inference and the CLI."""
from zoo.registry import create_model, get_model_entry, list_models, register_model

__all__ = ["create_model", "get_model_entry", "list_models", "register_model"]
__version__ = "0.1.0"
