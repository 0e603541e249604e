"""End-to-end fixtures: the real app served by ``streamlit run``, opened in Debian's headless Chromium.

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium chromium-driver``); Playwright's own
browser download is not used. Screenshots go to ``test-artifacts/screenshots/`` (gitignored).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1280, "height": 1400}  # Streamlit scrolls inside its own container: use a tall viewport
HEALTH_TIMEOUT_S = 90
SCREENSHOT_DIR = ROOT / "test-artifacts" / "screenshots"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch options, pointed at Debian's Chromium (never `playwright install`)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium with "
            "`apt-get update && apt-get install -y chromium chromium-driver` to run the e2e tests.",
            pytrace=False,
        )
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "headless": True, "args": CHROMIUM_FLAGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": VIEWPORT}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """The served app's models folder (``MLVIS_MODELS_DIR``): private to the session, empty at start."""
    return tmp_path_factory.mktemp("models")


@contextlib.contextmanager
def serve(log_path: Path, models_dir: Path):
    """Serve ``app.py`` with ``streamlit run`` on a free port; yield its URL; stop that process."""
    port = _free_port()
    cmd = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    # The browser renders on the same cores as the server. Two OpenMP threads that share them with Chromium
    # spin-wait for each other and a 0.6 s attack takes 6 s (docs/results.md, "Threads under load"), so the
    # server runs PyTorch on one thread, as the README advises for a shared machine.
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "MLVIS_MODELS_DIR": str(models_dir)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with code {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().decode().strip() == "ok":
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"streamlit did not answer {url}/_stcore/health within {HEALTH_TIMEOUT_S} s:\n"
                    f"{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="session")
def app_url(tmp_path_factory, models_dir):
    """The app served for the whole session (one server, warm after its first visit)."""
    with serve(tmp_path_factory.mktemp("streamlit") / "server.log", models_dir) as url:
        yield url


@pytest.fixture
def fresh_app_url(tmp_path_factory, models_dir):
    """The app served by a server of its own that no browser has visited yet (a cold start)."""
    with serve(tmp_path_factory.mktemp("streamlit-fresh") / "server.log", models_dir) as url:
        yield url


# What a screenshot waits for: fonts loaded, every data grid's canvas and every plotly chart's SVG drawn,
# every image decoded, then two animation frames (a table shot right after its run was still an empty box).
SETTLE_JS = """async () => {
  await document.fonts.ready;
  const drawn = () =>
    [...document.querySelectorAll('[data-testid="stDataFrame"]')].every((d) => d.querySelector("canvas")) &&
    [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].every((c) => c.querySelector(".main-svg")) &&
    [...document.images].every((img) => img.complete);
  for (let i = 0; i < 100 && !drawn(); i++) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
}"""


@pytest.fixture
def page(page):
    """pytest-playwright's page, whose ``screenshot`` first waits until what is on the page has been drawn."""
    take = page.screenshot

    def screenshot(*args, **kwargs):
        page.evaluate(SETTLE_JS)
        page.wait_for_timeout(250)  # the grid paints its cells on the frame after its canvas appears
        return take(*args, **kwargs)

    page.screenshot = screenshot
    return page


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {SCREENSHOT_DIR}")
    return SCREENSHOT_DIR
