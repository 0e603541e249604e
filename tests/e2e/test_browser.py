"""The dashboard in a real headless Chromium: Home's gallery, switching the model, a shared link."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

import mlvis
from mlvis.app import state

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README_SCREENSHOT = ROOT / "docs" / "img" / "home.png"
README_SCREENSHOT_MAX_BYTES = 400_000
GALLERY_SIZE = 6
TIMEOUT_MS = 90_000  # the first run imports torch and loads a model; the machine may be busy
MODELS = mlvis.list_models()
DEFAULT = state.default_model(MODELS)
OTHER = next(m for m in MODELS if m != DEFAULT)


def wait_idle(page: Page) -> None:
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning", timeout=TIMEOUT_MS)


def expect_gallery(page: Page, model: str) -> None:
    """Home names ``model`` and shows six rendered plotly charts and six loaded scene images."""
    wait_idle(page)
    expect(page.get_by_role("heading", name=f"Model: {model}")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_test_id("stPlotlyChart")).to_have_count(GALLERY_SIZE, timeout=TIMEOUT_MS)
    # plotly drew its bars (one <g class="point"> per bar) in every chart
    for chart in page.get_by_test_id("stPlotlyChart").all():
        expect(chart.locator("g.point").first).to_be_attached(timeout=TIMEOUT_MS)
    images = page.get_by_test_id("stImage").locator("img")
    expect(images).to_have_count(GALLERY_SIZE, timeout=TIMEOUT_MS)
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stImage] img')]"
        ".every(img => img.complete && img.naturalWidth > 0)",
        timeout=TIMEOUT_MS,
    )
    expect(images.first).to_be_visible()


def save_readme_screenshot(png: bytes) -> None:
    """Write docs/img/home.png, palette-quantised when needed to stay small enough to commit."""
    README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    if len(png) > README_SCREENSHOT_MAX_BYTES:
        buf = io.BytesIO()
        Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128).save(buf, format="PNG", optimize=True)
        png = buf.getvalue()
    README_SCREENSHOT.write_bytes(png)


def test_home_shows_the_gallery_and_switches_model(page: Page, app_url: str, screenshot_dir: Path):
    page.goto(app_url)
    expect_gallery(page, DEFAULT)
    expect(page.get_by_test_id("stSidebar")).to_contain_text("Device: ")
    png = page.screenshot(path=str(screenshot_dir / f"home-{DEFAULT}.png"))
    save_readme_screenshot(png)
    assert README_SCREENSHOT.stat().st_size < README_SCREENSHOT_MAX_BYTES
    print(f"README screenshot: {README_SCREENSHOT}")

    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name=OTHER, exact=True).click()
    expect_gallery(page, OTHER)
    expect(page.get_by_role("heading", name=f"Model: {DEFAULT}")).to_have_count(0)
    # the URL follows the sidebar, so the view can be shared
    expect(page).to_have_url(re.compile(rf"[?&]{state.MODEL}={re.escape(OTHER)}(&|$)"))
    page.screenshot(path=str(screenshot_dir / f"home-{OTHER}.png"))


def test_a_shared_link_opens_its_model_and_seed(page: Page, app_url: str, screenshot_dir: Path):
    page.goto(f"{app_url}/?{state.MODEL}={OTHER}&{state.SEED}=2")
    expect_gallery(page, OTHER)
    seed_box = page.get_by_test_id("stSidebar").get_by_test_id("stNumberInput").locator("input")
    expect(seed_box).to_have_value("2")
    expect(page.get_by_test_id("stImage").first).to_contain_text(f"Scene {2 * mlvis.data.BLOCK} ")
    page.screenshot(path=str(screenshot_dir / f"home-{OTHER}-seed2.png"))

    # a new seed typed in the sidebar shows other scenes and goes into the URL
    seed_box.fill("4")
    seed_box.press("Enter")
    expect(page.get_by_test_id("stImage").first).to_contain_text(f"Scene {4 * mlvis.data.BLOCK} ", timeout=TIMEOUT_MS)
    expect_gallery(page, OTHER)
    expect(page).to_have_url(re.compile(rf"[?&]{state.SEED}=4(&|$)"))
