"""One budget control for every page: a slider for quick moves, an exact entry and a button for one 8-bit level.

:func:`budget_input` returns a :class:`~mlvis.attacks.budget.Budget`. The exact entry, keyed
``"<section>.eps"`` and bound to the URL (``?lab.eps=0.004``), is the one source of truth: the slider
(``"<section>.eps_slider"``, not bound) mirrors it, and the slider and the ``1/255`` button change it only
through their callbacks. Neither widget is created with a default value: the default is written into Session
State the first time the control is drawn, so setting the value through Session State (the callbacks, a
test, a page that presets a budget) never meets a widget default and Streamlit has nothing to warn about.

Its pieces serve other pages too: :func:`number_entry` is the exact entry alone (any URL-bound number
with that rule: the Lab's and the hyperplane's step α), :func:`set_budget` moves a budget from code.

Example:
    >>> budget = budget_input("prof", label="Look up ε", default=0.01)   # in a page
    >>> budget.linf[0]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import streamlit as st

from mlvis.attacks.budget import Budget

EIGHT_BIT = 1.0 / 255.0
"""One 8-bit level: a perturbation under half of it is rounded away when the image is saved as 8 bits."""


@dataclasses.dataclass(frozen=True)
class BudgetKeys:
    """The Session State keys of one section's budget control."""

    exact: str
    slider: str
    button: str

    @classmethod
    def of(cls, section: str) -> BudgetKeys:
        return cls(f"{section}.eps", f"{section}.eps_slider", f"{section}.eight_bit")


def _clip(value: float, lo: float, hi: float) -> float:
    return float(min(max(float(value), lo), hi))


def _url_number(key: str, lo: float, hi: float) -> float | None:
    """The URL's value of ``key`` when it is a number in ``[lo, hi]``, else ``None`` (as Streamlit does, a value
    it cannot take falls back to the default)."""
    text = st.query_params.get(key)
    try:
        value = float(text) if text is not None else math.nan
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and lo <= value <= hi else None


def number_entry(
    where: Any,
    label: str,
    *,
    key: str,
    default: float,
    min_value: float,
    max_value: float,
    step: float,
    format: str = "%.6f",
    help: str | None = None,
    on_change: Callable[[], None] | None = None,
) -> float:
    """A number entry bound to the URL (``?<key>=``) whose value has one source of truth, Session State.

    The widget is never given ``value=``: the first time it is drawn, the URL's value (when the entry can
    take it) or else ``default`` is written under ``key``, so later writes through Session State (callbacks, tests)
    never meet a widget default. Writing the URL's value too keeps a link to the range's minimum, which
    Streamlit would take for the widget's default and drop, working.
    """
    ss = st.session_state
    if key not in ss:
        url = _url_number(key, min_value, max_value)
        ss[key] = float(default) if url is None else url
    value = where.number_input(
        label,
        min_value=min_value,
        max_value=max_value,
        step=step,
        format=format,
        key=key,
        bind="query-params",
        on_change=on_change,
        help=help,
    )
    return float(value)


def set_budget(section: str, eps: float, slider_range: tuple[float, float]) -> None:
    """Set the exact value (and move the slider to match, clipped to its range) through Session State."""
    keys = BudgetKeys.of(section)
    st.session_state[keys.exact] = float(eps)
    st.session_state[keys.slider] = _clip(eps, *slider_range)


def budget_input(
    section: str,
    *,
    default: float = 0.01,
    min_value: float = 0.0001,
    max_value: float = 1.0,
    step: float = 0.0005,
    format: str = "%.6f",
    slider_range: tuple[float, float] = (0.0005, 0.05),
    slider_step: float = 0.0005,
    label: str = "ε exactly",
    slider_label: str = "Budget ε (L∞)",
    help: str = "The exact L∞ budget in [0, 1] pixel units (the paper's ε = 0.001 ... 0.234).",
    slider_help: str = (
        "The most any pixel may change. One 8-bit level is 1/255 ≈ 0.00392: a perturbation smaller than half a "
        "level is rounded away when the image is saved as an ordinary 8-bit PNG. Type larger or finer values into "
        "'ε exactly'."
    ),
    norm: str = "linf",
    dims: int | None = None,
    caption: bool = True,
) -> Budget:
    """The budget control of ``section``: slider, exact entry (bound to ``?<section>.eps=``) and ``1/255`` button.

    Args:
        section: the key prefix (``"lab"``, ``"prof"``, ...).
        default: the exact value on first use when the URL holds none.
        min_value, max_value, step, format: the exact entry's range, step and number format.
        slider_range, slider_step: the slider's range and step (the exact value may lie outside it).
        label, slider_label, help, slider_help: the widgets' texts.
        norm, dims: the attack's norm; the value is an L-inf half-width, so under ``"l2"`` the radius is the
            equal-volume one for ``dims`` values per image (``Budget.from_linf``).
        caption: whether to say what the value is in 8-bit levels.

    Returns:
        The budget, one eps.
    """
    ss = st.session_state
    keys = BudgetKeys.of(section)
    lo, hi = slider_range
    c_slider, c_number, c_button = st.columns([4, 2, 1], vertical_alignment="bottom")
    eps = number_entry(
        c_number,
        label,
        key=keys.exact,
        default=default,
        min_value=min_value,
        max_value=max_value,
        step=step,
        format=format,
        help=help,
        on_change=lambda: set_budget(section, ss[keys.exact], slider_range),
    )
    if keys.slider not in ss:
        ss[keys.slider] = _clip(eps, lo, hi)
    c_slider.slider(
        slider_label,
        min_value=lo,
        max_value=hi,
        step=slider_step,
        format="%.4f",
        key=keys.slider,
        on_change=lambda: set_budget(section, ss[keys.slider], slider_range),
        help=slider_help,
    )
    c_button.button(
        "1/255",
        on_click=lambda: set_budget(section, EIGHT_BIT, slider_range),
        help="Set ε to one 8-bit level, 1/255 ≈ 0.003922.",
        key=keys.button,
        width="stretch",
    )
    eps = float(eps)
    if caption:
        tail = "."
        if eps < EIGHT_BIT / 2:
            tail = (
                ": below half a level (ε < 1/510) saving as 8 bits rounds every pixel back, so the 8-bit flips are 0."
            )
        st.caption(f"ε = {eps:.6g} is {eps / EIGHT_BIT:.2f} × the 8-bit level 1/255 ≈ 0.003922{tail}")
    return Budget.from_linf([eps], norm, dims)
