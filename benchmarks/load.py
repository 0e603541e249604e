"""Many users, one server (issue 14 §5): N concurrent headless-Chromium sessions against one served app.

Serves ``app.py`` with ``streamlit run`` on 127.0.0.1 (a free port, loopback only), then opens one
headless Chromium (Debian's ``/usr/bin/chromium``, never a download) and in it N browser contexts (N
separate sessions, at most ``MAX_SESSIONS``), all at once. Each session:

1. opens the app's root, then the Attack Lab from the sidebar, whose defaults run by themselves, and
   waits for their results;
2. opens the Budget sweep from the sidebar, sets a small job (2 images, budgets 5 % and 10 % of eps_max),
   presses Run if it did not start by itself, and waits for its table (the one with those 2 budgets).

It reports, per page, the latency from opening the page to its results (p50, p95, max), the sessions
that failed (with the reason), and whether every session's results (the Lab's flip counts, PSNR and SSIM
lines, the sweep's table) equal those of one session run alone first, on the same server. The server
runs its jobs through the server-wide queue (``MLVIS_MAX_JOBS``, default 1), so the latencies include the
waits in line. Everything is bounded: at most ``--timeout`` seconds in all (default 600), each wait at most
``--page-timeout``.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/load.py [--sessions 8] [--timeout 600]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip
MAX_SESSIONS = 16


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(port: int, log: Path, max_jobs: str | None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "MLVIS_CACHE": tempfile.mkdtemp(prefix="mlvis-load-cache-")}  # fmt: skip
    if max_jobs:
        env["MLVIS_MAX_JOBS"] = max_jobs
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
           str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]  # fmt: skip
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"streamlit exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    return proc
        except OSError:
            pass
        time.sleep(0.25)
    proc.terminate()
    raise SystemExit("streamlit did not answer its health check within 120 s")


async def idle(page, timeout_ms: int) -> None:
    from playwright.async_api import expect

    await expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning",
                                                                   timeout=timeout_ms)  # fmt: skip
    await expect(page.locator("[data-stale='true']")).to_have_count(0, timeout=timeout_ms)


async def open_page(page, url: str, title: str, timeout_ms: int) -> None:
    """The app at its root (as a first visitor), then the page ``title`` from the sidebar."""
    from playwright.async_api import expect

    await page.goto(url)
    await idle(page, timeout_ms)
    await page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    await expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=timeout_ms)


async def lab(page, url: str, timeout_ms: int) -> tuple[float, str]:
    """Open the Attack Lab; its default run's results as text (flip lines and metrics); the latency."""
    from playwright.async_api import expect

    t = time.perf_counter()
    await open_page(page, url, "Attack Lab", timeout_ms)
    await expect(page.get_by_role("heading", name="Results")).to_be_visible(timeout=timeout_ms)
    await idle(page, timeout_ms)
    seconds = time.perf_counter() - t
    lines = await page.locator("[data-testid=stMarkdownContainer]").filter(has_text="flipped").all_inner_texts()
    metrics = await page.get_by_test_id("stMetric").all_inner_texts()
    return seconds, "\n".join([*lines, *metrics])


async def enter(page, label: str, kind: str, value: str, url_part: str, timeout_ms: int) -> None:
    import re

    from playwright.async_api import expect

    box = page.get_by_test_id(kind).filter(has_text=label).locator("input")
    await box.fill(value)
    await box.press("Enter")
    await expect(page).to_have_url(re.compile(url_part), timeout=timeout_ms)
    await idle(page, timeout_ms)


async def sweep(page, url: str, timeout_ms: int) -> tuple[float, str]:
    """Open the Budget sweep, set the small job (2 images, 2 budgets), press Run when it waits; its table."""
    import re

    from playwright.async_api import expect

    t = time.perf_counter()
    await open_page(page, url, "Budget sweep", timeout_ms)
    await enter(page, "Images", "stNumberInput", "2", r"[?&]sweep\.n=2(&|$)", timeout_ms)
    await enter(page, "fractions of", "stTextInput", "0.05, 0.1", r"sweep\.fractions=0\.05", timeout_ms)
    tab = page.get_by_role("tabpanel").first
    table = tab.get_by_test_id("stMarkdownContainer").locator("table").first
    columns = table.locator("thead th").filter(has_text="ε = ")
    caption = tab.get_by_text(re.compile(r", 2 images, mean ± std"))
    if not (await caption.count() and await columns.count() == 2):
        await tab.get_by_role("button", name="Run").first.click()
    await expect(caption).to_be_visible(timeout=timeout_ms)
    await expect(columns).to_have_count(2, timeout=timeout_ms)
    await idle(page, timeout_ms)
    seconds = time.perf_counter() - t
    return seconds, await table.inner_text()


async def session(browser, url: str, timeout_ms: int) -> dict:
    context = await browser.new_context(viewport={"width": 1280, "height": 1400})
    context.set_default_timeout(timeout_ms)  # a loaded machine serves eight pages slowly: no 30 s default
    context.set_default_navigation_timeout(timeout_ms)
    page = await context.new_page()
    out: dict = {"error": None}
    try:
        out["lab_s"], out["lab"] = await lab(page, url, timeout_ms)
        out["sweep_s"], out["sweep"] = await sweep(page, url, timeout_ms)
    except Exception as exc:  # noqa: BLE001 -- a failed session is a figure of the benchmark, not its end
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        await context.close()
    return out


async def run(url: str, sessions: int, timeout_s: float, page_timeout_s: float) -> tuple[dict, list[dict], float]:
    from playwright.async_api import async_playwright

    ms = int(page_timeout_s * 1000)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            deadline = time.perf_counter() + timeout_s
            serial = await asyncio.wait_for(session(browser, url, ms), timeout_s)
            t = time.perf_counter()
            tasks = [asyncio.create_task(session(browser, url, ms)) for _ in range(sessions)]
            done, pending = await asyncio.wait(tasks, timeout=max(1.0, deadline - t))
            for task in pending:  # out of time: these count as errors, the finished ones are reported
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            late = {"error": "TimeoutError: did not finish within the benchmark's time limit"}
            results = [task.result() if task in done else late for task in tasks]
            wall = time.perf_counter() - t
        finally:
            await browser.close()
    return serial, list(results), wall


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = max(0, min(len(values) - 1, int(round(q * (len(values) - 1)))))
    return values[k]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=8, help=f"concurrent sessions (1-{MAX_SESSIONS})")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for the whole benchmark at most")
    parser.add_argument("--page-timeout", type=float, default=300, help="seconds for each page's results at most")
    parser.add_argument("--max-jobs", default=None, help="MLVIS_MAX_JOBS for the server (default: its own, 1)")
    args = parser.parse_args()
    if not 1 <= args.sessions <= MAX_SESSIONS:
        parser.error(f"--sessions must be between 1 and {MAX_SESSIONS}")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="mlvis-load-")) / "server.log"
    started = time.perf_counter()
    proc = serve(port, log, args.max_jobs)
    try:
        left = args.timeout - (time.perf_counter() - started)
        serial, results, wall = asyncio.run(run(f"http://127.0.0.1:{port}", args.sessions, left, args.page_timeout))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"{args.sessions} concurrent sessions on 127.0.0.1:{port}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}, MLVIS_MAX_JOBS={args.max_jobs or 'default (1)'}; server log {log}")  # fmt: skip
    if serial["error"]:
        print(f"the serial session failed: {serial['error']}")
        return 1
    print(f"serial (one session alone): Attack Lab {serial['lab_s']:.1f} s, Budget sweep {serial['sweep_s']:.1f} s")
    errors = [r["error"] for r in results if r["error"]]
    ok = [r for r in results if not r["error"]]
    for page in ("lab", "sweep"):
        times = [r[f"{page}_s"] for r in ok]
        same = sum(r[page] == serial[page] for r in ok)
        print(f"{page:<6} p50 {pct(times, 0.5):6.1f} s  p95 {pct(times, 0.95):6.1f} s  "
              f"max {max(times, default=0):6.1f} s  results equal to serial: {same} of {len(ok)}")  # fmt: skip
    print(f"errors: {len(errors)} of {len(results)}" + "".join(f"\n  - {e}" for e in errors))
    mean = statistics.fmean([r["lab_s"] for r in ok] or [0])
    print(f"all {args.sessions} sessions done in {wall:.1f} s (mean Attack Lab latency {mean:.1f} s)")
    return 0 if not errors and all(r["lab"] == serial["lab"] and r["sweep"] == serial["sweep"] for r in ok) else 1


if __name__ == "__main__":
    raise SystemExit(main())
