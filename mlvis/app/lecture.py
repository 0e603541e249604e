"""Lecture mode of the Attack Lab: large type, the paper's references folded away, and a short narrated
sequence (the clean image, then each method of the run: clean → BCE → SLAM → CLASS by default) stepped
through with a *Next* button.

Every sentence is computed from the run itself: the labels the model sees on the clean image, and per
method the labels it flipped (by name, up and down), how many that is and how it compares with the first
method (the baseline). Both the switch (``?lab.lecture=true``) and the step (``?lab.step=SLAM``) are in the
share URL, so a link opens the lecture where it was.

Keys: ``lab.lecture`` (toggle), ``lab.step`` (segmented control; one source of truth, written by the
*Next* / *Start again* callbacks, never given a widget default), ``lab.next``, ``lab.restart`` (buttons).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st

from mlvis import recipe as rc
from mlvis.app import lab, lab_views
from mlvis.app.budget_input import EIGHT_BIT
from mlvis.viz import upscale_image
from mlvis.viz.audit import amplified

LECTURE = "lab.lecture"
STEP = "lab.step"
NEXT = "lab.next"
RESTART = "lab.restart"
CLEAN = "Clean"
IMAGE_SCALE = 5

LARGE_TYPE = """
<style>
[data-testid="stMain"] { font-size: 1.3rem; }
[data-testid="stMain"] p, [data-testid="stMain"] li, [data-testid="stMain"] label { font-size: 1.3rem; }
[data-testid="stMain"] [data-testid="stCaptionContainer"] p { font-size: 1.1rem; }
[data-testid="stMain"] h1 { font-size: 3.2rem; }
[data-testid="stMain"] h2 { font-size: 2.4rem; }
[data-testid="stMain"] h3 { font-size: 2rem; }
[data-testid="stMain"] [data-testid="stMetricValue"] { font-size: 2.8rem; }
</style>
"""
"""The lecture hall's type sizes (a style-only ``st.html`` takes no space on the page)."""


def lecture_switch() -> bool:
    """The lecture-mode switch (bound to ``?lab.lecture=``); in lecture mode, large type for the whole page."""
    on = bool(
        st.toggle(
            "Lecture mode",
            value=False,
            key=LECTURE,
            bind="query-params",
            help="Large type, the paper's references folded away, and a short narrated sequence "
            "(clean, then each method) with a Next button, for a room to follow.",
        )
    )
    if on:
        st.html(LARGE_TYPE)
    return on


def step_titles(methods: Sequence[str]) -> list[str]:
    """The sequence: the clean image, then each method by its title."""
    return [CLEAN, *(rc.method_title(m) for m in methods)]


def _move(by: int, count: int) -> None:
    current = st.session_state.get(STEP)
    st.session_state[STEP] = 0 if by == 0 else min(int(current or 0) + by, count - 1)


def step_control(methods: Sequence[str]) -> int:
    """The step picker (bound to ``?lab.step=``) and the *Next* / *Start again* buttons; returns the step.

    Drawn before the run, from the chosen methods, so a shared link keeps its step even while the run waits
    for its button."""
    titles = step_titles(methods)
    ss = st.session_state
    if not isinstance(ss.get(STEP), int) or not 0 <= ss[STEP] < len(titles):
        ss[STEP] = 0  # the one default (a link's step, when it names one of these, wins on first load)
    left, mid, right = st.columns([5, 1, 1.4], vertical_alignment="bottom")
    step = left.segmented_control(
        "Step",
        list(range(len(titles))),
        format_func=titles.__getitem__,
        required=True,
        key=STEP,
        bind="query-params",
        help="The narrated sequence: the clean image, then what each method does to it.",
    )
    last = len(titles) - 1
    mid.button(
        "Next",
        key=NEXT,
        type="primary",
        on_click=_move,
        args=(1, len(titles)),
        disabled=int(step or 0) >= last,
        help="The next step of the sequence.",
        width="stretch",
    )
    right.button(
        "Start again",
        key=RESTART,
        on_click=_move,
        args=(0, len(titles)),
        disabled=not step,
        help="Back to the clean image.",
        width="stretch",
    )
    return int(step or 0)


def _names(labels: Sequence[str]) -> str:
    return ", ".join(f"*{name}*" for name in labels)


def clean_sentence(run: lab.LabRun, image: int) -> str:
    """What the model sees before any attack, by name (highest confidence first)."""
    r = run.results[0]
    probs = np.asarray(r.clean_probs[image])
    on = [r.labels[j] for j in np.argsort(-probs, kind="stable") if probs[j] >= r.threshold]
    c = run.num_labels
    where = f"{run.recipe.model} sees" if len(run.names) == 1 else f"On {run.names[image]}, {run.recipe.model} sees"
    if not on:
        return f"{where} none of its {c} labels before the attack."
    return f"{where} {len(on)} of its {c} labels before the attack: {_names(on)}."


def flipped(result, image: int) -> tuple[list[str], list[str]]:
    """The labels ``result`` switched on and off on ``image``, by name."""
    clean = np.asarray(result.clean_pred[image]).astype(bool)
    adv = np.asarray(result.adv_pred[0, image]).astype(bool)
    up = [result.labels[j] for j in np.flatnonzero(adv & ~clean)]
    down = [result.labels[j] for j in np.flatnonzero(clean & ~adv)]
    return up, down


def method_sentence(run: lab.LabRun, image: int, k: int) -> str:
    """One sentence about method ``k`` on ``image``: the labels it flipped by name, and against the baseline."""
    r, c = run.results[k], run.num_labels
    up, down = flipped(r, image)
    n = len(up) + len(down)
    if n == 0:
        what = f"{r.name} flipped 0 of {c} labels"
    else:
        parts = ([f"switched on {_names(up)}"] if up else []) + ([f"switched off {_names(down)}"] if down else [])
        what = f"{r.name} flipped {n} of {c} label{'s' * (n != 1)}: {'; '.join(parts)}"
    if run.recipe.methods[k] in run.recipe.unbounded:
        linf = float(r.linf[0, image])
        how = f", without a budget (it reached L∞ {linf:.4f}, {linf / EIGHT_BIT:.1f} 8-bit levels)"
    else:
        how = f" within ε = {run.recipe.eps:g} ({run.recipe.eps / EIGHT_BIT:.2f} 8-bit levels)"
    compare = ""
    if k > 0:
        base = run.results[0]
        diff = n - int(base.flips[0, image])
        compare = (
            f", as many as {base.name}"
            if diff == 0
            else f", {abs(diff)} {'more' if diff > 0 else 'fewer'} than {base.name}"
        )
    return what + how + compare + "."


def sentence(run: lab.LabRun, image: int, step: int) -> str:
    """The narration of ``step`` (0: the clean image; ``k + 1``: method ``k``)."""
    return clean_sentence(run, image) if step == 0 else method_sentence(run, image, step - 1)


def lecture_view(run: lab.LabRun, image: int, title: str, factor: float) -> None:
    """The narrated step ``title`` (:func:`step_titles`): its sentence in large type, the image it is about, and
    (for a method) its perturbation at the row's one amplification and the labels it flipped as chips."""
    if title != CLEAN and title not in run.methods:
        st.info(f"The last run has no {title}: press Run to attack with the methods chosen now.")
        return
    step = 0 if title == CLEAN else run.methods.index(title) + 1
    st.markdown(f"### {sentence(run, image, step)}")
    clean = run.results[0].clean[image]
    cols = st.columns(3)
    cols[0].image(upscale_image(clean, IMAGE_SCALE), caption="clean")
    if step == 0:
        return
    r = run.results[step - 1]
    cols[1].image(upscale_image(r.adv[0, image], IMAGE_SCALE), caption=f"{r.name}: adversarial")
    cols[2].image(
        upscale_image(amplified(clean, r.adv[0, image], factor), IMAGE_SCALE),
        caption=f"{r.name}: perturbation × {factor:g}",
    )
    st.markdown(lab_views.chips_line(run, image, step - 1))
