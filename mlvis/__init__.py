"""mlvis: budget-constrained maximum-label-flip attacks on multi-label image classifiers.

The public API::

    import mlvis
    model = mlvis.create_model("demo-asl")
    images, labels = mlvis.data.demo_batch(8)
"""

from mlvis import data
from mlvis.attacks import AttackResult, attack
from mlvis.models import ModelSpec, MultiLabelModel, create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = [
    "AttackResult",
    "ModelSpec",
    "MultiLabelModel",
    "__version__",
    "attack",
    "create_model",
    "data",
    "list_models",
    "register_model",
]
