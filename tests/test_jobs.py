"""Issue 14 §1 (app side): the server runs at most a set number of jobs at once, the rest wait in line and
see their place; a job estimated in hours waits for an explicit confirmation; the cap on work is per job.

The queue's tests use threads synchronised by events (no sleeps, no timing thresholds): each waits for
the state it checks, with a generous timeout that only turns a hang into a failure.
"""

from __future__ import annotations

import threading

import pytest
from streamlit.testing.v1 import AppTest

from mlvis.app import jobs
from mlvis.errors import InvalidInput

WAIT = 60  # seconds: a hang fails the test instead of blocking it; never reached when the code is right


def start(target) -> threading.Thread:
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t


class Job:
    """A job in its own thread: enters ``slots``, reports every place it was told, runs until released."""

    def __init__(self, slots: jobs.JobSlots, log: list, name: str):
        self.slots, self.log, self.name = slots, log, name
        self.places: list[int] = []
        self.waiting, self.running, self.release = threading.Event(), threading.Event(), threading.Event()
        self.thread = start(self.run)

    def wait_place(self, place: int) -> None:
        self.places.append(place)
        self.waiting.set()

    def run(self) -> None:
        with self.slots.slot(self.wait_place):
            self.log.append(f"{self.name} starts")
            self.running.set()
            assert self.release.wait(WAIT)
            self.log.append(f"{self.name} ends")


def wait_for(cond, what: str) -> None:
    """Wait (on the slots' own condition, no polling sleep of ours) until ``cond()`` holds."""
    done = threading.Event()

    def check():
        while not cond():
            done.wait(0.01)
        done.set()

    start(check)
    assert done.wait(WAIT), what


def test_one_slot_runs_jobs_one_at_a_time_in_arrival_order_and_shows_each_its_place():
    slots, log = jobs.JobSlots(1, poll_s=0.01), []
    a = Job(slots, log, "a")
    assert a.running.wait(WAIT)
    b = Job(slots, log, "b")
    assert b.waiting.wait(WAIT)
    c = Job(slots, log, "c")
    assert c.waiting.wait(WAIT)
    assert slots.running == 1 and slots.waiting == 2
    assert not b.running.is_set() and not c.running.is_set()
    assert set(b.places) == {1} and set(c.places) == {2}  # c is 2nd in line behind b
    a.release.set()
    assert b.running.wait(WAIT)
    wait_for(lambda: c.places[-1] == 1, "c moves up to 1st in line")
    assert not c.running.is_set()
    b.release.set()
    assert c.running.wait(WAIT)
    c.release.set()
    for j in (a, b, c):
        j.thread.join(WAIT)
    assert log == ["a starts", "a ends", "b starts", "b ends", "c starts", "c ends"]
    assert slots.running == 0 and slots.waiting == 0


def test_two_slots_run_two_jobs_at_once_and_the_third_waits():
    slots, log = jobs.JobSlots(2, poll_s=0.01), []
    a, b = Job(slots, log, "a"), Job(slots, log, "b")
    assert a.running.wait(WAIT) and b.running.wait(WAIT)  # both at once: neither is released yet
    c = Job(slots, log, "c")
    assert c.waiting.wait(WAIT) and not c.running.is_set() and c.places[0] == 1
    b.release.set()
    assert c.running.wait(WAIT)
    a.release.set()
    c.release.set()
    for j in (a, b, c):
        j.thread.join(WAIT)


def test_a_job_that_stops_while_waiting_leaves_the_line_and_the_next_moves_up():
    slots, log = jobs.JobSlots(1, poll_s=0.01), []
    a = Job(slots, log, "a")
    assert a.running.wait(WAIT)
    stopped, raised = threading.Event(), []

    def b_waiting(place: int) -> None:
        if stopped.is_set():
            raise jobs.Stopped

    def b_run():
        try:
            with slots.slot(b_waiting):
                log.append("b starts")
        except jobs.Stopped:
            raised.append("b stopped")

    b = start(b_run)
    wait_for(lambda: slots.waiting == 1, "b waits")
    c = Job(slots, log, "c")
    assert c.waiting.wait(WAIT) and c.places[0] == 2
    stopped.set()  # b's user pressed Stop (or left): its next redraw raises
    b.join(WAIT)
    assert raised == ["b stopped"]
    wait_for(lambda: c.places[-1] == 1, "c moves up")
    a.release.set()
    assert c.running.wait(WAIT)
    c.release.set()
    c.thread.join(WAIT)
    assert "b starts" not in log


class Reporter:
    """What ``guarded`` reads of a ProgressReporter: the bar it redraws, the stop mark, the start time."""

    def __init__(self):
        self.state, self.stop_key, self.start = {}, "stop", 0.0
        self.texts: list[str] = []
        self.bar = self
        self.drawn = threading.Event()

    def progress(self, value, text=""):
        self.texts.append(text)
        self.drawn.set()

    def __call__(self, done, total, *info):
        pass


def test_guarded_jobs_of_two_sessions_take_turns_and_the_second_sees_its_place(monkeypatch):
    monkeypatch.setenv("MLVIS_MAX_JOBS", "1")
    monkeypatch.setattr(jobs, "_SLOTS", {1: jobs.JobSlots(1, poll_s=0.01)})
    log, inside, release = [], threading.Event(), threading.Event()

    def first(progress):
        log.append("first starts")
        inside.set()
        assert release.wait(WAIT)
        log.append("first ends")
        return 1

    def second(progress):
        log.append("second starts")
        return 2

    cost = jobs.Estimate(100, 0.5)
    t1 = start(lambda: jobs.guarded(first, cost)(Reporter()))
    assert inside.wait(WAIT)
    rep = Reporter()
    out = []
    t2 = start(lambda: out.append(jobs.guarded(second, cost)(rep)))
    assert rep.drawn.wait(WAIT)
    assert rep.texts[0].startswith("Waiting for a free slot: 1st in line (1 job running, at most 1 at once")
    release.set()
    t1.join(WAIT)
    t2.join(WAIT)
    assert log == ["first starts", "first ends", "second starts"] and out == [2]


def test_a_job_over_the_cap_is_refused_before_it_waits_or_runs(monkeypatch):
    monkeypatch.setenv("MLVIS_MAX_IMAGE_STEPS", "1000")
    ran = []
    with pytest.raises(ValueError, match="This job would run 2,000 image-steps, over the cap of 1,000"):
        jobs.guarded(lambda p: ran.append(1), jobs.Estimate(2000, 1.0))(Reporter())
    assert ran == []


def test_the_settings_are_read_from_the_environment_with_sentences(monkeypatch):
    monkeypatch.delenv("MLVIS_MAX_JOBS", raising=False)
    monkeypatch.delenv("MLVIS_CONFIRM_S", raising=False)
    assert jobs.max_jobs() == jobs.MAX_JOBS == 1 and jobs.confirm_seconds() == jobs.CONFIRM_S == 3600
    monkeypatch.setenv("MLVIS_MAX_JOBS", "3")
    monkeypatch.setenv("MLVIS_CONFIRM_S", "90")
    assert jobs.max_jobs() == 3 and jobs.confirm_seconds() == 90.0
    assert jobs.job_slots().slots == 3 and jobs.job_slots() is jobs.job_slots()  # one per server process
    for bad in ("0", "2.5", "lots", "-1", "nan"):
        monkeypatch.setenv("MLVIS_MAX_JOBS", bad)
        with pytest.raises(InvalidInput, match=f"MLVIS_MAX_JOBS must be a positive whole number, not '{bad}'"):
            jobs.max_jobs()


def test_ordinals():
    assert [jobs.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]  # fmt: skip


def test_the_busy_factor_is_wall_time_over_cpu_time_and_changes_no_decision(monkeypatch):
    monkeypatch.setattr(jobs, "_BUSY", {"factor": 1.0, "at": -float("inf")})
    t = {"wall": 0.0, "cpu": 0.0}

    def cpu():  # every look at the CPU clock: 1 ms of CPU in 3 ms of wall (two others share the core)
        t["cpu"] += 0.001
        t["wall"] += 0.003
        return t["cpu"]

    assert jobs.busy_factor(clock=lambda: t["wall"], cpu=cpu) == pytest.approx(3.0, rel=0.1)
    cost = jobs.Estimate(100, 2.0, busy=3.0)
    assert cost.wall_seconds == 6.0 and "6.0 s on this machine now (it is 3.0x busy)" in cost.text()
    assert "2.0 s on this machine" in jobs.Estimate(100, 2.0, busy=1.1).text()


def test_a_clock_counts_cpu_time_apart_from_wall_time():
    t = {"wall": 10.0, "cpu": 5.0}
    clock = jobs.CpuClock(wall=lambda: t["wall"], cpu=lambda: t["cpu"])
    t["wall"], t["cpu"] = 14.0, 6.0
    assert (clock.wall, clock.cpu) == (4.0, 1.0)
    clock.restart()
    assert (clock.wall, clock.cpu) == (0.0, 0.0)


# ------------------------------------------------------------------------------- the page: AppTest


def _section_app():
    import os

    import streamlit as st

    import mlvis
    from mlvis.app import jobs

    ran = st.session_state.setdefault("ran", [])
    seconds, steps = float(os.environ["T_SECONDS"]), int(os.environ["T_STEPS"])

    def compute(progress):
        ran.append(1)
        if os.environ.get("T_ATTACKS"):
            model = mlvis.create_model("demo-asl")
            x = mlvis.data.demo_batch(2)[0]
            for _ in range(int(os.environ["T_ATTACKS"])):
                mlvis.attack(model, x, "bce", 0.0043)  # 22 image-steps each
        return "done"

    out = jobs.run_section("t", ("config", seconds), compute, jobs.Estimate(steps, seconds))
    st.write(f"result={out.result} ran={len(ran)}")
    if out.error:
        st.error(out.error)


def test_a_job_of_hours_waits_for_a_confirmation_that_names_its_estimate(monkeypatch):
    monkeypatch.setenv("T_SECONDS", str(2 * 3600 + 300))
    monkeypatch.setenv("T_STEPS", "1000")
    monkeypatch.delenv("T_ATTACKS", raising=False)
    at = AppTest.from_function(_section_app, default_timeout=60).run()
    assert not at.exception
    run = at.button(key="t.run")
    assert run.disabled
    (box,) = at.checkbox
    assert box.label == "Yes, run it: I expect it to take about 2 h 5 min" and not box.value
    assert "result=None ran=0" in at.markdown[-1].value
    box.check().run()
    assert not at.button(key="t.run").disabled
    assert "ran=0" in at.markdown[-1].value  # confirmed, but it still waits for Run
    at.button(key="t.run").click().run()
    assert "result=done ran=1" in at.markdown[-1].value


def test_a_job_under_the_threshold_asks_nothing(monkeypatch):
    monkeypatch.setenv("T_SECONDS", "0.5")
    monkeypatch.setenv("T_STEPS", "10")
    monkeypatch.delenv("T_ATTACKS", raising=False)
    monkeypatch.setenv("MLVIS_CONFIRM_S", "3600")
    at = AppTest.from_function(_section_app, default_timeout=60).run()
    assert not at.checkbox and not at.button(key="t.run").disabled
    assert "result=done ran=1" in at.markdown[-1].value  # cheap: it ran by itself
    monkeypatch.setenv("MLVIS_CONFIRM_S", "0.1")  # the threshold is a setting: now 0.5 s asks
    at = AppTest.from_function(_section_app, default_timeout=60).run()
    assert at.checkbox and at.button(key="t.run").disabled and "ran=0" in at.markdown[-1].value


def test_the_cap_is_per_app_job_not_per_call(monkeypatch):
    """Two attacks of 22 image-steps in one job under a cap of 30: the job is refused at the second one
    with a sentence (the estimate, 10 image-steps, said nothing about the second call)."""
    monkeypatch.setenv("T_SECONDS", "0.5")
    monkeypatch.setenv("T_STEPS", "10")
    monkeypatch.setenv("T_ATTACKS", "2")
    monkeypatch.setenv("MLVIS_MAX_IMAGE_STEPS", "30")
    at = AppTest.from_function(_section_app, default_timeout=120).run()
    assert not at.exception
    assert "This job would run 44 image-steps in all" in at.error[0].value
    assert "over the cap of 30 per job" in at.error[0].value and "MLVIS_MAX_IMAGE_STEPS" in at.error[0].value
    monkeypatch.setenv("T_ATTACKS", "1")
    at = AppTest.from_function(_section_app, default_timeout=120).run()
    assert not at.error and "result=done" in at.markdown[-1].value
