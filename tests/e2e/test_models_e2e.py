"""A real model in the browser: a card of a small timm architecture with random weights dropped into the
served app's models folder appears in the picker, and the Attack Lab attacks an uploaded photo through it."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

import mlvis
from mlvis.app import models_page
from mlvis.data.images import load_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model_files import timm_card  # noqa: E402

pytestmark = pytest.mark.e2e

TIMEOUT_MS = 120_000
NAME = "tiny-e2e"


def expect_text(page: Page, text: str) -> None:
    """``text`` is visible on the page; on failure the page's main text is printed (for the log)."""
    try:
        expect(page.get_by_text(text).first).to_be_visible(timeout=TIMEOUT_MS)
    except AssertionError:
        print("page text:\n" + page.get_by_test_id("stMain").inner_text())
        raise


def wait_idle(page: Page) -> None:
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning", timeout=TIMEOUT_MS)


def test_a_dropped_in_card_attacks_an_uploaded_photo(page: Page, app_url: str, models_dir: Path, screenshot_dir,
                                                     tmp_path: Path, monkeypatch):  # fmt: skip
    timm_card(models_dir, name=NAME, labels=("cat", "dog", "car", "tree", "sky"), size=64)
    page.goto(app_url)
    wait_idle(page)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_test_id("stSidebarNav").get_by_role("link", name="Attack Lab").click()
    expect(page.get_by_role("heading", name="Attack Lab", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    wait_idle(page)
    # the dropped-in card is in the picker: choose it on the Lab itself
    sidebar.get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name=NAME, exact=True).click()
    wait_idle(page)
    expect(sidebar).to_contain_text("float32 weights", timeout=TIMEOUT_MS)
    expect(sidebar).to_contain_text(f"{NAME} is a real model (photos)")
    expect_text(page, f"{NAME} was trained on photos")
    page.get_by_test_id("stRadio").first.get_by_text("Upload images", exact=True).click()
    wait_idle(page)
    # BCE alone: SLAM and CLASS need the model's profile and matrices, which a fresh model does not have yet
    for title in ("SLAM", "CLASS"):
        page.get_by_test_id("stButtonGroup").first.get_by_text(title, exact=True).click()
        wait_idle(page)
    rng = np.random.default_rng(3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)).save(buf, format="PNG")
    upload = tmp_path / "holiday.png"
    upload.write_bytes(buf.getvalue())
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(upload))
    wait_idle(page)
    expect_text(page, f"Images are stretched to 64×64 (bilinear), as {NAME} was evaluated")
    expect_text(page, f"{NAME} sees")
    # the chips name this photo's top label with its confidence, as the library computes it
    monkeypatch.setenv("MLVIS_MODELS_DIR", str(models_dir))
    model = mlvis.create_model(NAME, device="cpu")
    x = load_image(upload.read_bytes(), (64, 64), fit="stretch", interpolation="bilinear").array[None]
    import torch

    probs = model.predict_proba(torch.from_numpy(x)).numpy()[0]
    top = int(np.argmax(probs))
    expect(page.get_by_text(f"{model.labels[top]} {probs[top]:.0%}").first).to_be_visible()
    page.get_by_role("button", name="Run attack", exact=True).first.click()
    wait_idle(page)
    expect(page.get_by_test_id("stMetric").filter(has_text="flips").first).to_contain_text(" / 5", timeout=TIMEOUT_MS)
    expect(page.get_by_text("Top labels before and after, as chips")).to_be_visible()
    assert models_page.world_sentence(model.spec, "upload") is None
    page.screenshot(path=str(screenshot_dir / "models-lab-photo.png"))
