"""Widgets for the options a method exposes in the registry (``register_method(..., exposed=...)``).

Every page that lets a person tune methods (the Attack Lab, the budget sweep, the histograms) draws one
slider per exposed option of the methods it offers, keyed ``"<section>.<recipe key>"`` and bound to the URL
(so ``?lab.q=0.25`` keeps working for SLAM's q, and a method registered by a plugin gets its sliders with
no page edited).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlvis.attacks import MethodInfo, Option, get_method


def exposed(methods: Sequence[str]) -> list[tuple[MethodInfo, Option]]:
    """``(method, option)`` for every option the ``methods`` expose, in their order."""
    return [(info, o) for info in map(get_method, methods) for o in info.exposed]


def slider(where: Any, info: MethodInfo, option: Option, key: str, disabled: bool = False) -> float | int:
    """One option's slider (an int option gets an int slider); returns its value."""
    is_int = option.type is int
    step = option.step if option.step is not None else (1 if is_int else (option.hi - option.lo) / 20)
    cast = int if is_int else float
    value = where.slider(
        info.label(option),
        min_value=cast(option.lo),
        max_value=cast(option.hi),
        value=cast(option.default),
        step=cast(step),
        key=key,
        bind="query-params",
        disabled=disabled,
        help=option.help or None,
    )
    return cast(value)


def sliders(
    section: str, options: Sequence[tuple[MethodInfo, Option]], columns: Sequence[Any], chosen: Sequence[str]
) -> dict[str, float | int]:
    """A slider per option in ``columns`` (disabled while its method is not ``chosen``); their values by
    recipe key."""
    return {
        info.key(o): slider(col, info, o, f"{section}.{info.key(o)}", disabled=info.name not in chosen)
        for col, (info, o) in zip(columns, options)
    }
