"""Long computations on a page: cost estimates, a progress bar with ETA, a Stop button, kept results.

Every page that computes goes through :func:`run_section`: it draws a *Run* button with the estimated
cost, runs the computation when the button is pressed (or at once when the estimate is below
``AUTO_RUN_S``, so cheap defaults show something without a click), shows a progress bar with the
elapsed time and an ETA plus a *Stop* button while it runs, and keeps the result in session state keyed
by the configuration, so reruns (any widget change) show it again without recomputing.

**How Stop works.** Streamlit interrupts a running script when a widget event arrives (a click on
Stop is one), at the script's next call into Streamlit, which the progress callback makes many times
a second; the Stop button's callback then marks the configuration as stopped, and the section does
not start it again until Run is pressed. The progress callback also raises :class:`Stopped` itself
when that mark is set, for runs that are not interrupted (a script that was not listening).

No attack code here: the computation is a function ``compute(progress) -> result`` handed in by
the page's glue.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any

import streamlit as st

#: estimated seconds below which a section runs without waiting for its Run button
AUTO_RUN_S = 3.0
#: results kept per section (the most recent configurations)
KEEP = 4
#: the progress bar is redrawn at most this often (seconds)
REDRAW_S = 0.1


class Stopped(Exception):
    """Raised from a progress callback when the person pressed Stop."""


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What a computation will cost: image-steps (one forward + backward of one image) and seconds."""

    image_steps: int
    seconds: float
    note: str = ""
    kind: str = ""  # which computation (``"lab"``, ``"sweep.table"``, ...): finished runs refine its rate only

    def text(self) -> str:
        text = f"about {self.image_steps:,} image-steps, {format_seconds(self.seconds)} on this machine"
        return f"{text}; {self.note}" if self.note else text


def format_seconds(s: float) -> str:
    """``"0.4 s"``, ``"12 s"``, ``"3 min 5 s"``, ``"1 h 2 min"``."""
    if not math.isfinite(s):
        return "unknown time"
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec} s" if sec else f"{m} min"
    h, m = divmod(m, 60)
    return f"{h} h {m} min"


@st.cache_resource(max_entries=8, show_spinner=False)
def step_seconds(model_name: str) -> float:
    """Measured seconds for one image-step of ``model_name`` (forward + backward w.r.t. the input, batch 16).

    Measured once per model and process; the estimates multiply it by the image-steps. The fastest of six
    timed passes (after a warm-up) is the machine's speed: a pass that shares the cores with a browser
    rendering charts, or another session's run, is slower by a factor that says nothing about the
    computation, and one such factor in the estimate would keep cheap defaults from running by themselves.
    """
    import torch

    from mlvis.app import cache

    model = cache.load_model(model_name)
    h, w = (int(v) for v in model.spec.input_size)
    x = torch.rand(16, 3, h, w, generator=torch.Generator().manual_seed(0)).to(model.device)
    times = []
    for _ in range(7):
        xx = x.clone().requires_grad_(True)
        t = time.perf_counter()
        (g,) = torch.autograd.grad(model(xx).sum(), xx)
        g.sum().item()
        times.append(time.perf_counter() - t)
    return max(min(times[1:]) / 16, 1e-5)


OBSERVED = "jobs._observed"  # session-state key of this session's observed speeds


def _observed() -> dict:
    """Seconds per image-step seen in this session's finished runs, per (model, kind of computation),
    ``None`` after the warm-up run of a kind. Kept per session, so one user's runs never change what
    runs by itself for another (outside a script run, as in a library call, a table of its own)."""
    try:
        return st.session_state.setdefault(OBSERVED, {})
    except Exception:  # no session (bare mode without a script run context)
        return _BARE


_BARE: dict = {}


def observe(model_name: str, image_steps: int, seconds: float, kind: str = "") -> None:
    """Fold a finished run (at least 50 image-steps) into the observed seconds per image-step of this model
    and kind of computation (an exponential average), which then replaces the one-off measurement in that
    kind's estimates. Kinds are kept apart because their image-step counts mean different things (a
    profile's are an upper bound, a sweep's leave out the subset search), so one kind's rate would
    mislead another's estimate (and its decision to run without a click). The first run of each kind in
    a process is not folded in: it also pays one-time costs (loading artifacts, first calls into
    SciPy and scikit-image, allocator warm-up) that made a 0.6 s Lab run look like 7 s."""
    if image_steps < 50 or not (seconds > 0 and math.isfinite(seconds)):
        return
    seen = _observed()
    key, rate = (model_name, kind), seconds / image_steps
    if key not in seen:
        seen[key] = None  # the warm-up run: seen, not counted
        return
    seen[key] = rate if seen[key] is None else 0.5 * seen[key] + 0.5 * rate


def estimate(model_name: str, image_steps: int, kind: str = "") -> Estimate:
    """The cost of ``image_steps`` image-steps of computation ``kind`` on ``model_name``, in seconds on this
    machine: the rate seen in recent runs of that kind, else one measured forward + backward."""
    rate = _observed().get((model_name, kind))
    if rate is None:
        rate = step_seconds(model_name)
    return Estimate(int(image_steps), float(image_steps) * rate, kind=kind)


class ProgressReporter:
    """The ``progress(done, total)`` callback of one run: redraws ``bar`` with the percentage, the elapsed
    time and the ETA (at most every ``REDRAW_S``), and raises :class:`Stopped` once ``state[stop_key]``
    is set. ``bar`` may be ``None`` (nothing drawn), and ``state`` any mapping, so it is testable alone.

    A run may report several *phases* one after the other, each counting from 0 to its own total (the
    related attacks' own optimisers, then the MI-FGSM loop). With ``phases`` given, a call whose total
    differs from the last one, or whose count went back, starts the next phase, and phase ``i`` fills the
    ``i``-th equal part of the bar. The bar only ever moves forward: a fraction below the last one shown
    (a phase nobody announced) keeps the last one.
    """

    def __init__(
        self, state: MutableMapping, stop_key: str, label: str, bar=None, clock=time.perf_counter, phases: int = 1
    ):
        self.state, self.stop_key, self.label, self.bar, self.clock = state, stop_key, label, bar, clock
        self.start = clock()
        self.last_draw = -math.inf
        self.fraction = 0.0
        self.phases, self.phase = max(1, int(phases)), 0
        self._last: tuple[int, int] | None = None

    def overall(self, done: int, total: int) -> float:
        """The fraction of the whole run that ``done`` of ``total`` in the current phase stands for."""
        frac = min(max(done / total, 0.0), 1.0) if total > 0 else 0.0
        return max(self.fraction, (self.phase + frac) / self.phases)

    def text(self, done: int, total: int) -> str:
        elapsed = self.clock() - self.start
        frac = self.overall(done, total)
        if frac <= 0:
            return f"{self.label}: starting ..."
        left = elapsed / frac * (1 - frac)
        return f"{self.label}: {frac:.0%} · {format_seconds(elapsed)} elapsed · about {format_seconds(left)} left"

    def __call__(self, done: int, total: int, *_info) -> None:
        if self.state.get(self.stop_key):
            raise Stopped
        if self._last is not None and (total != self._last[1] or done < self._last[0]):
            self.phase = min(self.phase + 1, self.phases - 1)  # a new phase counts from 0 to its own total
        self._last = (done, total)
        self.fraction = self.overall(done, total)
        now = self.clock()
        if self.bar is not None and (now - self.last_draw >= REDRAW_S or done >= total):
            self.last_draw = now
            self.bar.progress(self.fraction, text=self.text(done, total))


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a section shows: ``result`` (``None`` when nothing has run), whether it belongs to the current
    configuration (``current``), and a sentence when the last attempt was stopped or failed."""

    result: Any = None
    current: bool = False
    stopped: bool = False
    error: str | None = None
    seconds: float | None = None


def _keys(section: str) -> dict[str, str]:
    return {
        "results": f"{section}._results",
        "errors": f"{section}._errors",
        "stopped": f"{section}._stopped",
        "stop_now": f"{section}._stop_now",
        "last": f"{section}._last",
        "run": f"{section}.run",
        "stop": f"{section}.stop",
    }


def _on_run(section: str) -> None:
    k = _keys(section)
    ss = st.session_state
    ss[k["stopped"]] = None
    ss[k["stop_now"]] = False
    ss.get(k["errors"], {}).clear()


def _on_stop(section: str, config_key: Hashable) -> None:
    k = _keys(section)
    st.session_state[k["stopped"]] = config_key
    st.session_state[k["stop_now"]] = True


def run_section(
    section: str,
    config_key: Hashable,
    compute: Callable[[Callable[[int, int], None]], Any],
    cost: Estimate,
    *,
    label: str = "Computing",
    run_label: str = "Run",
    auto: bool | None = None,
    help: str | None = None,
    model_name: str | None = None,
    phases: int = 1,
) -> Outcome:
    """Draw the Run button and cost, run ``compute`` when asked (or automatically), keep and return the result.

    Args:
        section: the page's key prefix (``"lab"``, ``"sweep.table"``); its session-state keys derive from it.
        config_key: a hashable digest of everything the result depends on.
        compute: ``compute(progress) -> result``; ``progress(done, total)`` updates the bar and may raise
            :class:`Stopped`. A ``ValueError`` / ``RuntimeError`` / ``FileNotFoundError`` it raises is shown
            as a sentence (never a traceback) and remembered for this configuration.
        cost: the estimate shown beside the button; it decides whether the section runs by itself.
        auto: run without a click when nothing is kept for this configuration (default: the estimate is
            below ``AUTO_RUN_S``).
        model_name: when given, the run's measured speed refines this model's later estimates (:func:`observe`).
        phases: how many phases ``compute`` reports one after the other (:class:`ProgressReporter`).
    """
    k = _keys(section)
    ss = st.session_state
    results: dict = ss.setdefault(k["results"], {})
    errors: dict = ss.setdefault(k["errors"], {})
    left, right = st.columns([1, 4], vertical_alignment="center")
    clicked = left.button(
        run_label,
        key=k["run"],
        type="primary",
        on_click=_on_run,
        args=(section,),
        help=help or "Start the computation with the settings above. Cheap settings run by themselves.",
        width="stretch",
    )
    right.caption(f"Cost: {cost.text()}.")
    if auto is None:
        auto = cost.seconds <= AUTO_RUN_S and not cost.note
    if not clicked:
        if config_key in results:
            results[config_key] = results.pop(config_key)  # most recent last
            entry = results[config_key]
            return Outcome(entry["result"], True, seconds=entry["seconds"])
        if config_key in errors:
            return _previous(results, error=errors[config_key])
        if ss.get(k["stopped"]) == config_key:
            return _previous(results, stopped=True)
        if not auto:
            return _previous(results)
    ss[k["stop_now"]] = False
    box = st.empty()
    with box.container():
        bar = st.progress(0.0, text=f"{label}: starting ...")
        st.button(
            "Stop",
            key=k["stop"],
            on_click=_on_stop,
            args=(section, config_key),
            help="Stop this computation; the settings stay as they are, and Run starts it again.",
        )
    reporter = ProgressReporter(ss, k["stop_now"], label, bar, phases=phases)
    try:
        result = compute(reporter)
    except Stopped:
        ss[k["stopped"]] = config_key
        box.empty()
        return _previous(results, stopped=True)
    except (ValueError, RuntimeError, FileNotFoundError, MemoryError) as exc:
        errors[config_key] = str(exc) or type(exc).__name__
        box.empty()
        return _previous(results, error=errors[config_key])
    seconds = reporter.clock() - reporter.start
    box.empty()
    if model_name is not None:
        observe(model_name, cost.image_steps, seconds, cost.kind)
    results[config_key] = {"result": result, "seconds": seconds}
    while len(results) > KEEP:
        results.pop(next(iter(results)))
    return Outcome(result, True, seconds=seconds)


def _previous(results: dict, *, stopped: bool = False, error: str | None = None) -> Outcome:
    """The most recent kept result (of another configuration), with the reason nothing new is shown."""
    if results:
        entry = results[next(reversed(results))]
        return Outcome(entry["result"], False, stopped, error, entry["seconds"])
    return Outcome(None, False, stopped, error)


def show_status(outcome: Outcome, what: str = "The results below") -> None:
    """One line about the outcome: stopped, failed, or showing an older configuration's result."""
    if outcome.error:
        st.error(outcome.error)
    if outcome.stopped:
        st.info("Stopped. Press Run to start again.")
    if outcome.result is not None and not outcome.current:
        st.caption(f"{what} belong to the last run, whose settings differ from those above; press Run to update.")
    elif outcome.result is None and not outcome.error and not outcome.stopped:
        st.info("Press Run to compute with these settings.")
