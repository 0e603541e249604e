"""Dashboard speed and memory (issue 6's performance goals), measured in one run.

1. glue: the Attack Lab's default run as the page makes it, ``mlvis.app.lab.run_lab`` (one demo scene of
   the sidebar's seed 0, BCE + SLAM + CLASS at the default eps, the model's shipped profile and
   matrices, PSNR/SSIM included), median of ``--runs`` after two warm-up runs; goal: median <= 0.5 s;
2. page: the same run through Streamlit's AppTest, i.e. the whole page script (controls, the job, every
   figure and download) each time Run is pressed, median of ``--runs``; reported beside (1);
3. memory: the resident set (VmRSS) of a served app (``streamlit run app.py``) after a headless Chromium
   opened the Attack Lab (runs the default attack) and the Models page (loads every registered model,
   both demo models), then the Attack Lab on the other model; goal <= 1.5 GB. Skipped with
   ``--no-browser`` or when /usr/bin/chromium is missing.

Run: .venv/bin/python benchmarks/app.py [--runs 15] [--model demo-asl] [--no-browser]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def glue_times(model_name: str, runs: int) -> tuple[list[float], list]:
    import mlvis
    from mlvis import recipe as rc
    from mlvis.app import lab

    model = mlvis.create_model(model_name)
    recipe = rc.Recipe(model_name, lab.DEFAULT_METHODS, lab.DEFAULT_EPS)
    images = rc.demo_images(recipe.images, model.spec.input_size)
    times, run = [], None
    for i in range(runs + 2):
        t = time.perf_counter()
        run = lab.run_lab(model, recipe, images, ("scene 0",))
        if i >= 2:
            times.append(time.perf_counter() - t)
    return times, [(r.name, int(r.flips[0, 0]), int(r.flips_8bit[0, 0])) for r in run.results]


def page_times(runs: int) -> list[float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    at.switch_page("pages/attack_lab.py").run()  # first visit: loads the model, runs the default
    assert not at.exception, at.exception
    times = []
    for _ in range(runs):
        at.button(key="lab.run").click()
        t = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t)
        assert not at.exception and not at.error
    return times


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def served_rss(models: list[str]) -> dict:
    from playwright.sync_api import expect, sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
           str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    out = {}
    try:
        for _ in range(400):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            time.sleep(0.25)
        out["idle"] = rss_bytes(proc.pid)
        flags = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=flags)
            page = browser.new_page(viewport={"width": 1280, "height": 1400})

            def visit(path: str) -> None:
                page.goto(f"{url}/")
                expect(page.get_by_test_id("stApp")).to_have_attribute(
                    "data-test-script-state", "notRunning", timeout=180_000
                )
                if path:
                    page.goto(f"{url}/{path}")
                    time.sleep(1)
                    expect(page.get_by_test_id("stApp")).to_have_attribute(
                        "data-test-script-state", "notRunning", timeout=180_000
                    )

            visit("attack_lab")
            out["lab"] = rss_bytes(proc.pid)
            visit("models")
            out["models"] = rss_bytes(proc.pid)
            for m in models[1:]:
                visit(f"attack_lab?model={m}")
            out["both"] = rss_bytes(proc.pid)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--model", default="demo-asl")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
    times, flips = glue_times(args.model, args.runs)
    med = statistics.median(times)
    print(f"1. glue run_lab, {args.model}, default (1 scene; BCE, SLAM, CLASS; eps 0.01): median {med:.3f} s "
          f"(min {min(times):.3f}, max {max(times):.3f}, {len(times)} runs) -> goal <= 0.5 s: "
          f"{'met' if med <= 0.5 else 'NOT met'}; flips (exact, 8-bit): {flips}")  # fmt: skip
    ptimes = page_times(max(3, args.runs // 2))
    print(f"2. AppTest page run with Run pressed: median {statistics.median(ptimes):.3f} s "
          f"(min {min(ptimes):.3f}, max {max(ptimes):.3f}, {len(ptimes)} runs)")  # fmt: skip
    if args.no_browser or not Path("/usr/bin/chromium").exists():
        print("3. memory: skipped (no browser)")
        return
    import mlvis

    demos = [m for m in mlvis.list_models() if m.startswith("demo-")]
    rss = served_rss(demos)
    gb = {k: v / 1e9 for k, v in rss.items()}
    print(f"3. served app RSS: idle {gb['idle']:.2f} GB, after the Attack Lab {gb['lab']:.2f} GB, after Models "
          f"(both models loaded) {gb['models']:.2f} GB, after the Attack Lab on every demo model {gb['both']:.2f} GB "
          f"-> goal <= 1.5 GB: {'met' if max(gb.values()) <= 1.5 else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
