"""mlvis: budget-constrained maximum-label-flip attacks on multi-label image classifiers.

The public API::

    import mlvis
    model = mlvis.create_model("demo-asl")
    images, labels = mlvis.data.demo_batch(8)
    prof = mlvis.profile(model)                        # shipped flip profile E(eps)
    res = mlvis.attack(model, images, "slam", prof.grid(), profile=prof)
    table = mlvis.evaluate(model, images)              # Tables IV-VI
"""

from mlvis import (
    data,
    errors,
    recipe,  # noqa: E402  (after the attacks and analyses it builds on)
)
from mlvis.analysis import (
    CorrelationMatrix,
    EvaluationTable,
    FlipProfile,
    correlations,
    evaluate,
    profile,
    transfer,
)
from mlvis.attacks import AttackResult, attack
from mlvis.errors import MlvisError
from mlvis.models import ModelSpec, MultiLabelModel, create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = [
    "AttackResult",
    "CorrelationMatrix",
    "EvaluationTable",
    "FlipProfile",
    "MlvisError",
    "ModelSpec",
    "MultiLabelModel",
    "__version__",
    "attack",
    "correlations",
    "create_model",
    "data",
    "errors",
    "evaluate",
    "list_models",
    "profile",
    "recipe",
    "register_model",
    "transfer",
]
