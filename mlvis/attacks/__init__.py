"""The attack engine: one batched MI-FGSM loop, a method registry, losses, results and export.

Public API::

    res = mlvis.attack(model, images, "bce", [0.002, 0.004])        # AttackResult, leading eps axis K
    bce, slam = run_job(model, images, ["bce", AttackSpec("slam", {"p": 0.3})], eps=[0.002, 0.004])
    mlvis.attack(model, images, "slam", Budget.from_linf(0.004, "l2", dims), profile=prof)  # L2, profile at L-inf
    list_attacks()   # ["bce", "linear", "slam", ...]; plan.lab_methods(), plan.image_steps(...): the front ends'

See docs/architecture.md for the module map (engine, rows, loop, norms, model_helpers, methods, plan, budget).
"""

from mlvis.attacks import plan, related  # noqa: F401  (related registers ml-cw, ml-deepfool and mla-lp)
from mlvis.attacks.budget import NORMS, Budget
from mlvis.attacks.class_subset import class_masks, instance_correlation, normalise_correlations, select_subset
from mlvis.attacks.engine import AttackSpec, attack, run_job
from mlvis.attacks.export import load_npy, load_png16, quantize_8bit, save_npy, save_png16
from mlvis.attacks.geometry import (
    DEFAULT_ALPHA,
    equal_volume_l2_radius,
    l2_step,
    linf_equivalent,
    n_steps,
    stirling_l2_radius,
)
from mlvis.attacks.losses import bce, get_loss, linear, list_losses, register_loss, slam
from mlvis.attacks.methods import (
    PER_EPS,
    RUNNER,
    SHARED,
    LoopPlan,
    MethodContext,
    MethodInfo,
    Option,
    RunOutput,
    get_method,
    list_attacks,
    method_description,
    register_method,
    registered,
)
from mlvis.attacks.result import AttackResult

__all__ = [
    "DEFAULT_ALPHA",
    "NORMS",
    "AttackResult",
    "PER_EPS",
    "RUNNER",
    "SHARED",
    "AttackSpec",
    "Budget",
    "LoopPlan",
    "MethodContext",
    "MethodInfo",
    "Option",
    "RunOutput",
    "attack",
    "bce",
    "class_masks",
    "equal_volume_l2_radius",
    "get_loss",
    "get_method",
    "instance_correlation",
    "l2_step",
    "linear",
    "linf_equivalent",
    "list_attacks",
    "list_losses",
    "load_npy",
    "load_png16",
    "method_description",
    "n_steps",
    "normalise_correlations",
    "quantize_8bit",
    "register_loss",
    "register_method",
    "registered",
    "run_job",
    "save_npy",
    "save_png16",
    "select_subset",
    "slam",
    "stirling_l2_radius",
]
