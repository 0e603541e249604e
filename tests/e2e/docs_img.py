"""Copy one browser-test screenshot per page into docs/img/ (run by ``make screenshots``, never by a test).

The e2e tests write their screenshots only under ``test-artifacts/screenshots/``; this script takes, for
every page of the app, the screenshot that shows it best (the analysis pages after a small run, Home's
gallery, the hyperplane's Fig. 18 preset) and writes it to ``docs/img/<page>.png``, palette-quantised when
needed to stay small enough to commit. A missing screenshot is one sentence naming the test that takes it.

    python tests/e2e/docs_img.py
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DOCS_IMG = ROOT / "docs" / "img"
MAX_BYTES = 400_000
# docs/img name -> (screenshot, the test that takes it)
PAGES = {
    "home.png": ("readme-home.png", "test_browser.py::test_home_shows_the_gallery_and_switches_model"),
    "attack-lab.png": ("attack-lab.png", "test_browser.py::test_every_analysis_page_renders_and_is_screenshotted"),
    "histograms.png": ("histograms.png", "test_browser.py::test_every_analysis_page_renders_and_is_screenshotted"),
    "landscape.png": ("landscape.png", "test_browser.py::test_every_analysis_page_renders_and_is_screenshotted"),
    "profiles.png": ("profiles.png", "test_browser.py::test_every_analysis_page_renders_and_is_screenshotted"),
    "sweep.png": ("sweep.png", "test_browser.py::test_every_analysis_page_renders_and_is_screenshotted"),
    "hyperplane.png": (
        "hyperplane-fig18.png",
        "test_browser.py::test_hyperplane_page_shows_fig18_and_keeps_its_settings_in_the_link",
    ),
    "models.png": ("models.png", "test_browser.py::test_models_page_lists_the_registry"),
    "runs.png": ("offline-runs.png", "test_offline.py::test_every_page_is_offline_clean"),
    "figures.png": ("offline-figures.png", "test_offline.py::test_every_page_is_offline_clean"),
    "attack-lab-lecture.png": (
        "attack-lab-lecture-3-CLASS.png",
        "test_browser.py::test_attack_lab_lecture_mode_after_a_shared_link",
    ),
    "attack-lab-audit.png": ("attack-lab-audit.png", "test_browser.py::test_attack_lab_audit_panel_and_replay"),
    "replay.png": ("attack-lab-replay.png", "test_browser.py::test_attack_lab_audit_panel_and_replay"),
    "queue.png": ("queue.png", "test_queue_e2e.py::test_three_sessions_take_turns_in_one_slot"),
}


def small_png(png: bytes, max_bytes: int = MAX_BYTES) -> bytes:
    """``png`` as it is when small enough, else quantised to 128 colours (screenshots stay legible)."""
    if len(png) <= max_bytes:
        return png
    buf = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def main() -> int:
    missing = [f"{shot} (by tests/e2e/{test})" for shot, test in PAGES.values() if not (SCREENSHOTS / shot).is_file()]
    if missing:
        print(f"Run the browser tests first; missing in {SCREENSHOTS}: {', '.join(missing)}.", file=sys.stderr)
        return 1
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    for name, (shot, _) in PAGES.items():
        data = small_png((SCREENSHOTS / shot).read_bytes())
        tmp = DOCS_IMG / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(DOCS_IMG / name)  # atomic: a reader never sees half a picture
        print(f"docs/img/{name}: {len(data) / 1000:.0f} kB from {shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
