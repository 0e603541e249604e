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

import contextlib
import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator, MutableMapping
from typing import Any

import streamlit as st

#: estimated seconds below which a section runs without waiting for its Run button
AUTO_RUN_S = 3.0
#: results kept per section (the most recent configurations)
KEEP = 4
#: the progress bar is redrawn at most this often (seconds)
REDRAW_S = 0.1
#: estimated seconds from which a job needs an explicit confirmation before it runs (``MLVIS_CONFIRM_S``)
CONFIRM_S = 3600.0
#: jobs that run at once in this server process, across every session (``MLVIS_MAX_JOBS``); the rest queue
MAX_JOBS = 1
#: a busy factor from which the cost line shows the time a person waits now beside the machine's speed
BUSY_SHOWN = 1.25


class Stopped(Exception):
    """Raised from a progress callback when the person pressed Stop."""


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What a computation will cost: image-steps (one forward + backward of one image) and seconds."""

    image_steps: int
    seconds: float
    note: str = ""
    kind: str = ""  # which computation (``"lab"``, ``"sweep.table"``, ...): finished runs refine its rate only
    busy: float = 1.0  # how much slower than alone the machine runs a job now (:func:`busy_factor`)

    @property
    def wall_seconds(self) -> float:
        """The seconds a person waits now: ``seconds`` (the machine's speed alone) times ``busy``."""
        return self.seconds * self.busy

    def text(self) -> str:
        if self.busy >= BUSY_SHOWN:
            when = f"{format_seconds(self.wall_seconds)} on this machine now (it is {self.busy:.1f}x busy)"
        else:
            when = f"{format_seconds(self.seconds)} on this machine"
        text = f"about {self.image_steps:,} image-steps, {when}"
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

    Measured once per model and process; the estimates multiply it by the image-steps. The passes are
    timed in this thread's CPU time, and the fastest of six (after a warm-up) is the machine's speed: a
    pass that shares the cores with a browser rendering charts, or another session's run, takes longer on
    the wall clock by a factor that says nothing about the computation, and one such factor in the
    estimate would keep cheap defaults from running by themselves (the factor is measured apart, by
    :func:`busy_factor`, and only shown).
    """
    import torch

    from mlvis.app import cache

    model = cache.load_model(model_name)
    h, w = (int(v) for v in model.spec.input_size)
    x = torch.rand(16, 3, h, w, generator=torch.Generator().manual_seed(0)).to(model.device)
    times = []
    for _ in range(7):
        xx = x.clone().requires_grad_(True)
        t = time.thread_time()
        (g,) = torch.autograd.grad(model(xx).sum(), xx)
        g.sum().item()
        times.append(time.thread_time() - t)
    return max(min(times[1:]) / 16, 1e-5)


@dataclasses.dataclass(frozen=True)
class Speed:
    """The engine's cost on this machine: seconds per loop call (one batched forward + backward and the
    engine's bookkeeping of an iteration, whatever the batch) and per image-step (each image in a call)."""

    call_s: float
    step_s: float

    def seconds(self, image_steps: int, calls: int) -> float:
        return float(calls) * self.call_s + float(image_steps) * self.step_s


@st.cache_resource(max_entries=8, show_spinner=False)
def engine_speed(model_name: str) -> Speed:
    """:class:`Speed` of ``model_name`` measured on the engine itself: a BCE attack of 8 steps on 1 image and
    on 8 images (the same 8 calls, 8 and 64 image-steps), this thread's CPU time, the faster of two runs of
    each. The difference is the per-image cost, the rest the per-call cost: at one image a call costs about
    three image-steps, so the Lab's one-scene runs take half again what a per-image rate says."""
    import torch

    from mlvis.app import cache
    from mlvis.attacks import DEFAULT_ALPHA, run_job

    model = cache.load_model(model_name)
    h, w = (int(v) for v in model.spec.input_size)
    x = torch.rand(8, 3, h, w, generator=torch.Generator().manual_seed(0))
    eps = 8.5 * DEFAULT_ALPHA  # 8 steps

    def cpu(n: int) -> float:
        best = math.inf
        for _ in range(2):
            t = time.thread_time()
            run_job(model, x[:n], ["bce"], eps)
            best = min(best, time.thread_time() - t)
        return best

    cpu(1)  # warm-up
    one, eight = cpu(1), cpu(8)
    step_s = max((eight - one) / (7 * 8), 1e-6)
    return Speed(call_s=max(one / 8 - step_s, 1e-6), step_s=step_s)


def loop_calls(
    specs, eps, num_images: int, *, alpha: float, dims: int, norm: str = "linf", max_batch: int | None = None
) -> int:
    """The engine's loop calls (batched forward + backward passes) for ``specs`` at ``eps`` on ``num_images``
    images, from the same dry run as the image-steps: rows sorted by their steps and cut every ``max_batch``
    (default the CPU's), each chunk as many calls as its longest row (the memory budget's cuts, which only
    large models at large sizes reach, are left out)."""
    import numpy as np

    from mlvis.attacks.methods import PER_EPS, RUNNER, get_method
    from mlvis.attacks.model_helpers import CPU_MAX_BATCH
    from mlvis.attacks.norms import get_norm
    from mlvis.attacks.plan import as_spec
    from mlvis.attacks.rows import step_counts, trajectories

    eps_arr = np.atleast_1d(np.asarray(eps, np.float64))
    batch = int(max_batch or CPU_MAX_BATCH)
    per_norm: dict[str, list[np.ndarray]] = {}
    for spec in (as_spec(s) for s in specs):
        info = get_method(spec.method)
        opts = dict(spec.options)
        kind = info.kind_for(opts)
        if kind == RUNNER:
            continue
        s_norm = opts.get("norm", norm)
        step = get_norm(s_norm).step_length(float(opts.get("alpha", alpha)), int(dims))
        _, n = trajectories(kind == PER_EPS, eps_arr, step_counts(eps_arr, step))
        per_norm.setdefault(s_norm, []).append(np.tile(n, int(num_images)))
    calls = 0
    for rows in per_norm.values():
        n = np.sort(np.concatenate(rows))[::-1]
        calls += int(n[::batch].sum())
    return calls


def recipe_calls(recipe, num_images: int, dims: int) -> int:
    """:func:`loop_calls` of a recipe's job (the Lab's, the histograms'), its specs as ``Recipe.image_steps``
    makes them."""
    from mlvis.attacks import AttackSpec, get_method
    from mlvis.attacks.plan import exposed_values

    specs = [AttackSpec(m, exposed_values(get_method(m), recipe.values)) for m in recipe.methods]
    budget = recipe.budget_of(int(dims))
    return loop_calls(specs, list(budget.eps), num_images, alpha=recipe.alpha, dims=dims, norm=budget.norm)


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
    profile's predict where its probes converge, a sweep's leave out the subset search), so one kind's rate
    would mislead another's estimate (and its decision to run without a click). The first run of each kind in
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


def estimate(model_name: str, image_steps: int, kind: str = "", calls: int | None = None) -> Estimate:
    """The cost of ``image_steps`` image-steps of computation ``kind`` on ``model_name``, in seconds on this
    machine: the rate seen in recent runs of that kind, else the engine's measured speed per loop call and
    per image-step (:func:`engine_speed`) when the job's ``calls`` are given (:func:`loop_calls`), else one
    measured forward + backward at batch 16 per image-step."""
    rate = _observed().get((model_name, kind))
    if rate is not None:
        seconds = float(image_steps) * rate
    elif calls is not None:
        seconds = engine_speed(model_name).seconds(int(image_steps), int(calls))
    else:
        seconds = float(image_steps) * step_seconds(model_name)
    return Estimate(int(image_steps), seconds, kind=kind, busy=busy_factor())


def plan_estimate(
    model_name: str, specs, eps, num_images: int, kind: str, *, alpha: float, dims: int, norm: str = "linf"
) -> Estimate:
    """:func:`estimate` of an engine job given by its specs: its image-steps and loop calls from the dry run."""
    from mlvis.attacks.plan import image_steps

    steps = image_steps(specs, eps, int(num_images), alpha=alpha, norm=norm, dims=int(dims))
    calls = loop_calls(specs, eps, num_images, alpha=alpha, dims=dims, norm=norm)
    return estimate(model_name, steps, kind, calls=calls)


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
    clock = CpuClock()
    compute = guarded(compute, cost, clock)  # the cap per job, the server-wide queue, the job's CPU time
    left, right = st.columns([1, 4], vertical_alignment="center")
    right.caption(f"Cost: {cost.text()}.")
    confirmed = confirmation(section, config_key, cost, right)
    clicked = left.button(
        run_label,
        key=k["run"],
        type="primary",
        on_click=_on_run,
        args=(section,),
        help=help or "Start the computation with the settings above. Cheap settings run by themselves.",
        width="stretch",
        disabled=not confirmed,
    )
    if auto is None:
        auto = cost.seconds <= AUTO_RUN_S and not cost.note
    auto = bool(auto) and cost.seconds < confirm_seconds()  # a job of hours never starts by itself
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
        observe(model_name, cost.image_steps, clock.cpu, cost.kind)  # CPU seconds: other sessions' load left out
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


# ------------------------------------------------------------------ the machine's load, a job's own speed


_BUSY = {"factor": 1.0, "at": -math.inf}
_BUSY_LOCK = threading.Lock()
BUSY_PROBE_S = 0.02  # thread-CPU seconds of one probe
BUSY_TTL_S = 5.0  # a probe is reused this long (the load is the machine's, not a session's)


def busy_factor(clock=time.perf_counter, cpu=time.thread_time) -> float:
    """How many times slower than alone a one-thread job runs on this machine now: the wall time of
    ``BUSY_PROBE_S`` of this thread's CPU time, over that CPU time (1 on an idle machine; about 4 when
    three other busy processes share each core). Measured at most every ``BUSY_TTL_S`` and smoothed.

    The cost line multiplies the estimate by it (the time a person waits), but nothing decides by it:
    whether a section runs by itself or needs a confirmation depends on the machine's speed alone, so one
    user's load never changes what runs by itself for another (issue 13 §4)."""
    with _BUSY_LOCK:
        now = clock()
        if now - _BUSY["at"] < BUSY_TTL_S:
            return _BUSY["factor"]
        w0, c0 = clock(), cpu()
        x = 0
        while cpu() - c0 < BUSY_PROBE_S:
            x += 1
        used = max(cpu() - c0, 1e-9)
        factor = min(max((clock() - w0) / used, 1.0), 64.0)
        old = _BUSY["factor"] if math.isfinite(_BUSY["at"]) else factor
        _BUSY["factor"], _BUSY["at"] = 0.5 * old + 0.5 * factor, clock()
        return _BUSY["factor"]


class CpuClock:
    """Wall and this thread's CPU seconds of a run: ``cpu`` is what the run cost the machine alone, which
    is what later estimates learn from (:func:`observe`), not the wall time another session's load added."""

    def __init__(self, wall=time.perf_counter, cpu=time.thread_time):
        self._wall, self._cpu = wall, cpu
        self.restart()

    def restart(self) -> None:
        self.wall0, self.cpu0 = self._wall(), self._cpu()

    @property
    def cpu(self) -> float:
        return self._cpu() - self.cpu0

    @property
    def wall(self) -> float:
        return self._wall() - self.wall0


# ------------------------------------------------------------------------ heavy jobs: a server-wide queue


def _env_number(name: str, default: float, whole: bool) -> float:
    from mlvis.errors import InvalidInput

    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0) or (whole and value != int(value)):
        kind = "a positive whole number" if whole else "a positive number of seconds"
        raise InvalidInput(f"{name} must be {kind}, not {text!r}; fix it where the app is started.")
    return int(value) if whole else value


def max_jobs() -> int:
    """Jobs that run at once (``MLVIS_MAX_JOBS``, default :data:`MAX_JOBS`): one by default, because one
    PyTorch job already uses every core, and two at once on the same cores each take twice as long."""
    return int(_env_number("MLVIS_MAX_JOBS", MAX_JOBS, whole=True))


def confirm_seconds() -> float:
    """Estimated seconds from which a job waits for an explicit confirmation (``MLVIS_CONFIRM_S``)."""
    return float(_env_number("MLVIS_CONFIRM_S", CONFIRM_S, whole=False))


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``22nd``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class JobSlots:
    """At most ``slots`` jobs at once, first come first served; the others wait in line.

    One instance serves the whole server process (:func:`job_slots`), so eight sessions on a 2-core machine
    take turns instead of each getting a thrashing eighth. :meth:`slot` is a context manager that returns
    once the job may run; while it waits it calls ``waiting(place)`` about every ``poll_s`` (place 1: the next
    to run), where a page redraws "2nd in line" and where Streamlit can interrupt a script whose user pressed
    Stop or left: whatever ``waiting`` raises leaves the line at once and the others move up.
    """

    def __init__(self, slots: int, poll_s: float = 0.25):
        self.slots, self.poll_s = int(slots), float(poll_s)
        self._cond = threading.Condition()
        self._line: list[object] = []
        self._running = 0

    @property
    def running(self) -> int:
        with self._cond:
            return self._running

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._line)

    @contextlib.contextmanager
    def slot(self, waiting: Callable[[int], None] | None = None) -> Iterator[None]:
        ticket = object()
        with self._cond:
            self._line.append(ticket)
            try:
                while not (self._running < self.slots and self._line[0] is ticket):
                    if waiting is not None:
                        place = self._line.index(ticket) + 1
                        self._cond.release()
                        try:
                            waiting(place)
                        finally:
                            self._cond.acquire()
                    self._cond.wait(self.poll_s)
            except BaseException:
                self._line.remove(ticket)
                self._cond.notify_all()
                raise
            self._line.pop(0)
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()


_SLOTS: dict[int, JobSlots] = {}
_SLOTS_LOCK = threading.Lock()


def job_slots() -> JobSlots:
    """The server-wide :class:`JobSlots` (one per ``MLVIS_MAX_JOBS`` value, shared by every session)."""
    n = max_jobs()
    with _SLOTS_LOCK:
        return _SLOTS.setdefault(n, JobSlots(n))


def waiting_text(place: int, slots: JobSlots, waited_s: float) -> str:
    """``"Waiting for a free slot: 2nd in line (1 job running, at most 1 at once) · 12 s"``."""
    running = slots.running
    jobs_ = "job" if running == 1 else "jobs"
    return (
        f"Waiting for a free slot: {ordinal(place)} in line ({running} {jobs_} running, at most {slots.slots} "
        f"at once on this server) · waited {format_seconds(waited_s)}"
    )


def guarded(
    compute: Callable[[Callable[[int, int], None]], Any], cost: Estimate, clock: CpuClock | None = None
) -> Callable[[Callable[[int, int], None]], Any]:
    """``compute`` as one app job: refused at once when its estimate is over the cap on work, then run
    in its turn (:func:`job_slots`, the place shown on the progress bar, Stop honoured while it waits) and
    inside one :func:`mlvis.errors.work_scope`, so every library call it makes counts against the cap of
    the job, not each call against its own. ``clock`` (a :class:`CpuClock`) is restarted when the job
    starts, so its CPU seconds are the job's own, not the wait."""
    from mlvis.errors import check_work, max_image_steps, work_scope

    def run(progress: Callable[[int, int], None]) -> Any:
        cap = max_image_steps()
        check_work(int(cost.image_steps), cap, "This job")
        slots = job_slots()
        bar = getattr(progress, "bar", None)
        state, stop_key = getattr(progress, "state", {}), getattr(progress, "stop_key", None)
        start = time.perf_counter()

        def waiting(place: int) -> None:
            if stop_key is not None and state.get(stop_key):
                raise Stopped
            if bar is not None:
                bar.progress(0.0, text=waiting_text(place, slots, time.perf_counter() - start))

        with slots.slot(waiting):
            if clock is not None:
                clock.restart()
            if hasattr(progress, "start"):
                progress.start = time.perf_counter()  # the ETA counts from the job's start, not the wait
            with work_scope(cap, "This job", "MLVIS_MAX_IMAGE_STEPS=N where the app is started", "job"):
                return compute(progress)

    return run


def confirmation(section: str, config_key: Hashable, cost: Estimate, column) -> bool:
    """For a job estimated at :func:`confirm_seconds` or more: a checkbox in ``column`` that names the
    estimate, which must be ticked before Run is enabled (and the job never runs by itself). True when
    the job may run: it is short enough, or the person confirmed this configuration's estimate."""
    if cost.seconds < confirm_seconds():
        return True
    digest = f"{hash(config_key) & 0xFFFFFFFF:08x}"  # a new configuration asks again
    return bool(
        column.checkbox(
            f"Yes, run it: I expect it to take about {format_seconds(cost.seconds)}",
            key=f"{section}.confirm.{digest}",
            help=f"Jobs estimated at {format_seconds(confirm_seconds())} or more wait for this confirmation "
            "(MLVIS_CONFIRM_S sets the threshold where the app is started); Stop ends one at any time.",
        )
    )
