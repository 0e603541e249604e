"""The server-wide job queue in a real headless Chromium, with three real sessions (issue 14 §1, §5).

The app is served with ``MLVIS_MAX_JOBS=1``; three browser contexts (three sessions, as three people) open the
Profiles page. Session A measures a profile large enough to run for many minutes; B presses Measure and waits
"1st in line", C "2nd in line". A presses Stop: B's job starts, C moves up to "1st in line". B and C press
Stop at the end, and the server (with whatever it still runs) is stopped by the fixture.

The test waits for states, never for time: each check is a Playwright ``expect`` on text that only the state it
checks produces (a place in line, a percentage of the probes), within a deadline that bounds the whole test, so
a machine shared with a CPU hog makes it slower, not flaky. A screenshot of C's page "2nd in line" goes to
``test-artifacts/screenshots/queue.png``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import serve

pytestmark = pytest.mark.e2e

TIMEOUT_MS = 120_000  # the first page imports torch and loads a model; the machine may be busy
TEST_BUDGET_S = 360  # every wait of the test together (the server's start and stop come on top)
# A profile on 100 demo scenes up to ε = 0.5: about 700 s estimated on this machine alone (the probes stop
# where the curves converge, after some 600 steps), far longer than the test, which stops it.
LONG = "prof.n=100&prof.max_eps=0.5"
SHORT = "prof.n=4"  # C's job: the page's defaults, it never starts while B runs
RUNNING = re.compile(r"Probing: \d+% · .* elapsed · about .* left")


def in_line(place: str) -> re.Pattern:
    return re.compile(rf"Waiting for a free slot: {place} in line \(1 job running, at most 1 at once on this server\)")


class Deadline:
    """What is left of the test's budget, as a Playwright timeout (never more than ``TIMEOUT_MS``)."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def ms(self) -> float:
        left = (self.end - time.monotonic()) * 1000
        assert left > 0, f"the queue test ran past its budget of {TEST_BUDGET_S} s"
        return min(TIMEOUT_MS, left)


@pytest.fixture
def queue_url(tmp_path_factory, models_dir, monkeypatch) -> Iterator[str]:
    """The app served by a server of its own that runs one job at once (``MLVIS_MAX_JOBS=1``) and caches what
    it computes in a folder of its own (``MLVIS_CACHE``), so no other test's profile changes its pages."""
    monkeypatch.setenv("MLVIS_MAX_JOBS", "1")  # serve() hands the test's environment to the server
    monkeypatch.setenv("MLVIS_CACHE", str(tmp_path_factory.mktemp("queue-cache")))
    with serve(tmp_path_factory.mktemp("streamlit-queue") / "server.log", models_dir) as url:
        yield url


def wait_idle(page: Page, deadline: Deadline) -> None:
    """The script is not running and nothing on the page is left over from an earlier run."""
    app = page.get_by_test_id("stApp")
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=deadline.ms())
    expect(page.locator("[data-stale='true']")).to_have_count(0, timeout=deadline.ms())


def open_profiles(page: Page, url: str, query: str, deadline: Deadline) -> None:
    """Open the Profiles page at ``query``'s settings, with its measure section unfolded."""
    page.goto(f"{url}/profiles?{query}")
    expect(page.get_by_role("heading", name="Profiles", exact=True)).to_be_visible(timeout=deadline.ms())
    wait_idle(page, deadline)
    measure = page.get_by_role("button", name="Measure", exact=True)
    if not measure.is_visible():  # the model ships a profile: the section is folded
        summary = page.get_by_test_id("stExpander").get_by_text(re.compile(r"measure (the profile|it) here$", re.I))
        summary.click(timeout=deadline.ms())
    expect(measure).to_be_visible(timeout=deadline.ms())


def test_three_sessions_take_turns_in_one_slot(browser: Browser, browser_context_args, queue_url: str,
                                               screenshot_dir: Path):  # fmt: skip
    deadline = Deadline(TEST_BUDGET_S)
    contexts = [browser.new_context(**browser_context_args) for _ in range(3)]
    try:
        a, b, c = (ctx.new_page() for ctx in contexts)
        bars = {p: p.get_by_test_id("stProgress") for p in (a, b, c)}

        # A starts a job of many minutes and runs it: the slot is taken
        open_profiles(a, queue_url, LONG, deadline)
        a.get_by_role("button", name="Measure", exact=True).click(timeout=deadline.ms())
        expect(bars[a]).to_contain_text(RUNNING, timeout=deadline.ms())

        # B and C press Measure in their own sessions: they wait in line, in the order they came
        open_profiles(b, queue_url, LONG, deadline)
        open_profiles(c, queue_url, SHORT, deadline)
        b.get_by_role("button", name="Measure", exact=True).click(timeout=deadline.ms())
        expect(bars[b]).to_contain_text(in_line("1st"), timeout=deadline.ms())
        c.get_by_role("button", name="Measure", exact=True).click(timeout=deadline.ms())
        expect(bars[c]).to_contain_text(in_line("2nd"), timeout=deadline.ms())
        c.screenshot(path=str(screenshot_dir / "queue.png"))
        expect(bars[b]).to_contain_text(in_line("1st"))  # C came after B: B's place is the same
        expect(bars[a]).to_contain_text(RUNNING)  # and A still runs

        # A stops: B's job starts, C is next
        a.get_by_role("button", name="Stop", exact=True).click(timeout=deadline.ms())
        expect(a.get_by_text("Stopped. Press Measure to start again.")).to_be_visible(timeout=deadline.ms())
        expect(bars[a]).to_have_count(0, timeout=deadline.ms())
        expect(bars[b]).to_contain_text(RUNNING, timeout=deadline.ms())
        expect(bars[b]).not_to_contain_text("in line")
        expect(bars[c]).to_contain_text(in_line("1st"), timeout=deadline.ms())
        c.screenshot(path=str(screenshot_dir / "queue-moved-up.png"))

        # C leaves the line, then B stops its job: nothing of theirs is left running on the server
        c.get_by_role("button", name="Stop", exact=True).click(timeout=deadline.ms())
        expect(c.get_by_text("Stopped. Press Measure to start again.")).to_be_visible(timeout=deadline.ms())
        expect(bars[b]).to_contain_text(RUNNING)  # C's leaving the line changes nothing for B
        b.get_by_role("button", name="Stop", exact=True).click(timeout=deadline.ms())
        expect(b.get_by_text("Stopped. Press Measure to start again.")).to_be_visible(timeout=deadline.ms())
        for p in (a, b, c):
            wait_idle(p, deadline)
            expect(bars[p]).to_have_count(0)
    finally:
        for ctx in contexts:
            ctx.close()
