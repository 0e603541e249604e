"""Models: the registry, the ``MultiLabelModel`` contract, the demo models, real-model families and cards."""

from mlvis.models.loading import CheckpointError, ModelTooLargeError, UnsafeCheckpointError
from mlvis.models.registry import (
    create_model,
    default_device,
    is_model,
    list_families,
    list_models,
    model_source,
    register_model,
    set_deterministic,
)
from mlvis.models.spec import ModelSpec, Preprocessing, preprocess_for
from mlvis.models.wrapper import MultiLabelModel

__all__ = [
    "CheckpointError",
    "ModelSpec",
    "ModelTooLargeError",
    "MultiLabelModel",
    "Preprocessing",
    "UnsafeCheckpointError",
    "create_model",
    "default_device",
    "is_model",
    "list_families",
    "list_models",
    "model_source",
    "preprocess_for",
    "register_model",
    "set_deterministic",
]
