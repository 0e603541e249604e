"""Models: the registry, the ``MultiLabelModel`` contract and the embedded demo models."""

from mlvis.models.registry import create_model, default_device, is_model, list_models, register_model
from mlvis.models.spec import ModelSpec
from mlvis.models.wrapper import MultiLabelModel

__all__ = [
    "ModelSpec",
    "MultiLabelModel",
    "create_model",
    "default_device",
    "is_model",
    "list_models",
    "register_model",
]
