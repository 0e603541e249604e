"""The dashboard in a real headless Chromium: Home's gallery, switching the model, a shared link.

The tests never write into the repository's tracked files: screenshots go to ``test-artifacts/``
(gitignored). ``make screenshots`` (``MLVIS_UPDATE_DOCS_IMG=1``) also refreshes ``docs/img/home.png``,
the README's picture, on purpose.

A test waits for *the run it started*: :func:`run_and_wait` counts the script runs the server reports
finished on the page's websocket (so a run that starts and ends between two polls of the page is still
seen) and waits until one more has finished after its action, then until no element is stale
(``data-stale``, what a previous run left on the page); checks then look for values that only the new
run produces (its image count, its budgets), not for element counts an old element also satisfies.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

import mlvis
from mlvis.app import lab, state

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README_SCREENSHOT = ROOT / "docs" / "img" / "home.png"
UPDATE_DOCS_IMG = os.environ.get("MLVIS_UPDATE_DOCS_IMG") == "1"  # set by `make screenshots`
README_SCREENSHOT_MAX_BYTES = 400_000
GALLERY_SIZE = 6
TIMEOUT_MS = 90_000  # the first run imports torch and loads a model; the machine may be busy
MODELS = mlvis.list_models()
DEFAULT = state.default_model(MODELS)
OTHER = next(m for m in MODELS if m != DEFAULT)


def wait_idle(page: Page) -> None:
    """The script is not running and nothing on the page is left over from an earlier run."""
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning", timeout=TIMEOUT_MS)
    expect(page.locator("[data-stale='true']")).to_have_count(0, timeout=TIMEOUT_MS)


_FINISHED_RUNS: dict[int, int] = {}  # id(page) -> script runs the server reported finished on its connections


@pytest.fixture(autouse=True)
def _count_finished_runs(page: Page):
    """Count, per page, the script runs Streamlit reports finished (a ``script_finished`` ForwardMsg on the
    page's websocket): a run that starts and ends between two polls of the DOM is still counted."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    done = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR}
    key = id(page)
    _FINISHED_RUNS[key] = 0

    def on_frame(payload) -> None:
        if isinstance(payload, str):
            return
        msg = ForwardMsg.FromString(payload)
        if msg.WhichOneof("type") == "script_finished" and msg.script_finished in done:
            _FINISHED_RUNS[key] += 1

    page.on("websocket", lambda ws: ws.on("framereceived", on_frame))
    yield
    del _FINISHED_RUNS[key]


def run_and_wait(page: Page, action: Callable[[], None]) -> None:
    """Do ``action`` (a click, an Enter) that starts a script run; return once that run has finished."""
    before = _FINISHED_RUNS[id(page)]
    action()
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while _FINISHED_RUNS[id(page)] <= before:
        assert time.monotonic() < deadline, f"no script run finished within {TIMEOUT_MS / 1000:.0f} s of the action"
        page.wait_for_timeout(50)  # lets Playwright deliver the websocket events
    wait_idle(page)


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


def readme_screenshot(png: bytes, screenshot_dir: Path) -> Path:
    """The README's picture of Home, palette-quantised when needed to stay small enough to commit: written
    under ``screenshot_dir``, and over docs/img/home.png only when asked (``make screenshots``)."""
    if len(png) > README_SCREENSHOT_MAX_BYTES:
        buf = io.BytesIO()
        Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128).save(buf, format="PNG", optimize=True)
        png = buf.getvalue()
    path = screenshot_dir / "readme-home.png"
    path.write_bytes(png)
    if UPDATE_DOCS_IMG:
        README_SCREENSHOT.write_bytes(png)
        return README_SCREENSHOT
    return path


def test_home_shows_the_gallery_and_switches_model(page: Page, app_url: str, screenshot_dir: Path):
    page.goto(app_url)
    expect_gallery(page, DEFAULT)
    expect(page.get_by_test_id("stSidebar")).to_contain_text("Device: ")
    png = page.screenshot(path=str(screenshot_dir / f"home-{DEFAULT}.png"))
    readme = readme_screenshot(png, screenshot_dir)
    assert readme.stat().st_size < README_SCREENSHOT_MAX_BYTES
    print(f"README screenshot: {readme}")

    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_test_id("stSelectbox").click()
    run_and_wait(page, page.get_by_role("option", name=OTHER, exact=True).click)
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
    run_and_wait(page, lambda: seed_box.press("Enter"))
    expect(page.get_by_test_id("stImage").first).to_contain_text(f"Scene {4 * mlvis.data.BLOCK} ", timeout=TIMEOUT_MS)
    expect_gallery(page, OTHER)
    expect(page).to_have_url(re.compile(rf"[?&]{state.SEED}=4(&|$)"))


def open_from_sidebar(page: Page, app_url: str, title: str) -> None:
    """Open the app at its root (as a first visitor does), then the page ``title`` from the sidebar."""
    page.goto(app_url)
    wait_idle(page)
    run_and_wait(page, page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click)
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=TIMEOUT_MS)


def expect_metric(page: Page, label: str, value: str | re.Pattern) -> None:
    metric = page.get_by_test_id("stMetric").filter(has_text=label)
    expect(metric.get_by_test_id("stMetricValue")).to_have_text(value, timeout=TIMEOUT_MS)


def expect_hyperplane_charts(page: Page) -> None:
    """The plane, flips-per-step and flips-vs-eps charts are drawn (plotly rendered their traces)."""
    charts = page.get_by_test_id("stPlotlyChart")
    expect(charts).to_have_count(3, timeout=TIMEOUT_MS)
    for chart in charts.all():
        expect(chart.locator("g.trace").first).to_be_attached(timeout=TIMEOUT_MS)


def test_hyperplane_page_shows_fig18_and_keeps_its_settings_in_the_link(page: Page, app_url: str, screenshot_dir: Path):
    open_from_sidebar(page, app_url, "Hyperplane simulation")
    expect(page).to_have_url(re.compile(r"/hyperplane$"))
    expect_hyperplane_charts(page)
    # the paper's point, on the Fig. 18 preset: greedy wins the small box, patient the large one
    expect_metric(page, "linear (greedy), ε = 0.1", "2 / 5")
    expect_metric(page, "BCE (patient), ε = 0.1", "0 / 5")
    expect_metric(page, "linear (greedy), ε = 0.3", "2 / 5")
    expect_metric(page, "BCE (patient), ε = 0.3", "5 / 5")
    page.screenshot(path=str(screenshot_dir / "hyperplane-fig18.png"))
    page.get_by_test_id("stPlotlyChart").first.screenshot(path=str(screenshot_dir / "hyperplane-fig18-plane.png"))

    # random boundaries from a seed, a new start point: both go into the URL
    run_and_wait(page, page.get_by_test_id("stRadio").get_by_text("Random", exact=True).click)
    expect(page).to_have_url(re.compile(r"[?&]hp\.source=Random(&|$)"), timeout=TIMEOUT_MS)
    expect(page.get_by_test_id("stNumberInput").filter(has_text="Boundary seed")).to_be_visible(timeout=TIMEOUT_MS)
    wait_idle(page)
    x1 = page.get_by_test_id("stNumberInput").filter(has_text="Start x₁").locator("input")
    x1.fill("0.450")
    run_and_wait(page, lambda: x1.press("Enter"))
    expect(page).to_have_url(re.compile(r"[?&]hp\.x1=0\.45(&|$)"), timeout=TIMEOUT_MS)
    expect(page).to_have_url(re.compile(r"[?&]hp\.source=Random(&|$)"))
    wait_idle(page)
    expect_hyperplane_charts(page)
    expect(page.get_by_test_id("stMetric").first).to_contain_text("/ 6")  # six random labels by default
    page.screenshot(path=str(screenshot_dir / "hyperplane-random.png"))

    # the link reproduces the view
    shared = page.url
    page.goto("about:blank")
    page.goto(shared)
    wait_idle(page)
    expect(page.get_by_test_id("stRadio").locator("input[type=radio]:checked")).to_have_count(1)
    expect(page.get_by_test_id("stRadio").get_by_role("radio", name="Random")).to_be_checked(timeout=TIMEOUT_MS)
    expect(page.get_by_test_id("stNumberInput").filter(has_text="Start x₁").locator("input")).to_have_value("0.450")
    expect_hyperplane_charts(page)


def test_models_page_lists_the_registry(page: Page, app_url: str, screenshot_dir: Path):
    open_from_sidebar(page, app_url, "Models")
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible(timeout=TIMEOUT_MS)
    expect_metric(page, "Device in use", re.compile(r"^(CPU|GPU \(.+\))$"))
    for name in MODELS:
        expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="The paper's own models")).to_be_visible()
    page.screenshot(path=str(screenshot_dir / "models.png"))


# ----------------------------------------------------------------------------------------------------------------------
# Attack Lab and the analysis pages (issue 6)


def lab_upload_image() -> bytes:
    """A 96x72 JPEG of a demo scene: the Lab centre-crops it to 72x72 and resizes it to 64x64."""
    import mlvis.data

    scene = mlvis.data.world(0, 96).batch_uint8("test", range(3, 4))[0][0]
    buf = io.BytesIO()
    Image.fromarray(scene[12:84]).save(buf, format="JPEG", quality=92)  # 96 wide, 72 high
    return buf.getvalue()


def test_attack_lab_upload_three_methods_and_the_lossless_download(
    page: Page, app_url: str, screenshot_dir: Path, tmp_path: Path
):
    import numpy as np
    import torch

    from mlvis import recipe as rc
    from mlvis.attacks import load_png16
    from mlvis.data.images import load_image

    open_from_sidebar(page, app_url, "Attack Lab")
    wait_idle(page)
    run_and_wait(page, page.get_by_test_id("stRadio").first.get_by_text("Upload images", exact=True).click)
    data = lab_upload_image()
    upload = tmp_path / "street.jpg"
    upload.write_bytes(data)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(upload))
    wait_idle(page)
    # the page attacks with BCE, SLAM and CLASS side by side (its defaults). They are cheap, so they run at
    # once, unless a loaded machine makes the estimate exceed the auto-run limit; then the page keeps the
    # previous image's results (captioned as such) until Run is pressed. Press it: the outcome is the same.
    run_section(page, "Run attack")
    model = mlvis.create_model(DEFAULT, device="cpu")
    loaded = load_image(data, model.spec.input_size, name="street.jpg")
    source = rc.ImageSource(kind="files", files=("street.jpg",))
    recipe = rc.Recipe(DEFAULT, lab.DEFAULT_METHODS, lab.DEFAULT_EPS, source)
    want = rc.run_recipe(recipe, model, loaded.array[None])
    c = len(model.labels)
    for r in want:
        expect_metric(page, f"{r.name}: flips", f"{int(r.flips[0, 0])} / {c}")
    expect(page.get_by_text("street.jpg: centre-cropped to 72×72, resized from 96×72 to 64×64.")).to_be_visible()
    page.screenshot(path=str(screenshot_dir / "attack-lab-upload.png"))

    # the lossless download of each method reloads to the flips the page shows
    clean_pred = model.predict_proba(torch.from_numpy(loaded.array[None])).numpy() >= model.threshold
    buttons = page.get_by_role("button", name="16-bit PNG (lossless)", exact=True)
    expect(buttons).to_have_count(3)
    for k, r in enumerate(want):
        with page.expect_download(timeout=TIMEOUT_MS) as info:
            buttons.nth(k).click()
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(path)
        assert path.name == f"{DEFAULT}_{r.name}_eps{lab.DEFAULT_EPS:g}_img0_16bit.png"
        x = load_png16(path)
        np.testing.assert_allclose(x, r.adv[0, 0], atol=1 / 65535)
        probs = model.predict_proba(torch.from_numpy(x[None])).numpy()
        assert int(((probs >= model.threshold) != clean_pred).sum()) == int(r.flips[0, 0])


def run_section(page: Page, button: str = "Run") -> None:
    """Press a page's Run button and wait until the run it started is over."""
    run_and_wait(page, page.get_by_role("button", name=button, exact=True).first.click)


def enter(page: Page, box, value: str) -> None:
    """Type ``value`` into a text or number input and wait for the run its Enter starts."""
    box.fill(value)
    run_and_wait(page, lambda: box.press("Enter"))


def test_every_analysis_page_renders_and_is_screenshotted(page: Page, app_url: str, screenshot_dir: Path):
    # Profiles: the shipped profile (Fig. 20) with its grid and cost tables
    open_from_sidebar(page, app_url, "Profiles")
    expect(page.get_by_role("heading", name=f"{DEFAULT}: E(ε)")).to_be_visible(timeout=TIMEOUT_MS)
    eps_max = page.get_by_test_id("stMetric").first.get_by_test_id("stMetricValue")
    expect(eps_max).to_have_text(re.compile(r"^0\.\d{4}$"), timeout=TIMEOUT_MS)
    expect(page.get_by_test_id("stPlotlyChart").first.locator("g.trace").first).to_be_attached(timeout=TIMEOUT_MS)
    page.screenshot(path=str(screenshot_dir / "profiles.png"))

    # Label landscape: both matrices, the co-occurrence, attackability and Table II
    open_from_sidebar(page, app_url, "Label landscape")
    expect(page.get_by_role("heading", name="Table II: what attackability goes with")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_test_id("stPlotlyChart")).to_have_count(4, timeout=TIMEOUT_MS)
    page.screenshot(path=str(screenshot_dir / "landscape.png"))

    # Confidence histograms: a small batch, run from the page
    open_from_sidebar(page, app_url, "Confidence histograms")
    scenes = page.get_by_test_id("stNumberInput").filter(has_text="Scenes").locator("input")
    enter(page, scenes, "3")
    if page.get_by_test_id("stPlotlyChart").count() == 0:
        run_section(page)
    expect(page.get_by_test_id("stPlotlyChart")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(page).to_have_url(re.compile(r"[?&]hist\.n=3(&|$)"))
    page.screenshot(path=str(screenshot_dir / "histograms.png"))

    # Budget sweep: Tables IV-VI on two scenes and two budgets
    open_from_sidebar(page, app_url, "Budget sweep")
    images = page.get_by_test_id("stNumberInput").filter(has_text="Images").locator("input")
    enter(page, images, "2")
    fractions = page.get_by_test_id("stTextInput").filter(has_text="fractions of ε_max").locator("input")
    enter(page, fractions, "0.05, 0.1")
    run_section(page)
    # this run's table: the caption names its 2 images, the table has its 2 budgets (5 % and 10 % of eps_max)
    tables_tab = page.get_by_role("tabpanel").first
    expect(tables_tab.get_by_text(re.compile(rf"^{DEFAULT}, 2 images, mean ± std"))).to_be_visible(timeout=TIMEOUT_MS)
    table = tables_tab.get_by_test_id("stMarkdownContainer").locator("table")
    expect(table).to_have_count(1)
    expect(table).to_contain_text("BCE")
    expect(table.locator("thead th").filter(has_text="ε = ")).to_have_count(2)
    expect(page).to_have_url(re.compile(r"[?&]sweep\.n=2(&|$)"))
    page.screenshot(path=str(screenshot_dir / "sweep.png"))

    # the Attack Lab's defaults, and the two older pages
    open_from_sidebar(page, app_url, "Attack Lab")
    expect(page.get_by_role("heading", name="Results")).to_be_visible(timeout=TIMEOUT_MS)
    page.screenshot(path=str(screenshot_dir / "attack-lab.png"))


def test_a_long_run_shows_progress_and_stops(page: Page, app_url: str):
    open_from_sidebar(page, app_url, "Budget sweep")  # the defaults (8 scenes, 3 budgets) take many seconds
    expect(page.get_by_text("Press Run to compute with these settings.").first).to_be_visible(timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Run", exact=True).first.click()
    bar = page.get_by_test_id("stProgress")
    expect(bar).to_contain_text(re.compile(r"Evaluating: \d+% · .* elapsed · about .* left"), timeout=TIMEOUT_MS)
    run_and_wait(page, page.get_by_role("button", name="Stop", exact=True).click)  # the rerun Stop starts
    expect(page.get_by_text("Stopped. Press Run to start again.")).to_be_visible(timeout=TIMEOUT_MS)
    table_tab = page.get_by_role("tabpanel").first  # Tables IV-VI (the Fig. 12 tab draws its own small table)
    expect(table_tab.get_by_role("button", name="Run", exact=True)).to_have_count(1)  # the tab of the stopped run
    expect(table_tab.get_by_test_id("stMarkdownContainer").locator("table")).to_have_count(0)
    expect(bar).to_have_count(0)


def test_attack_lab_lecture_mode_after_a_shared_link(page: Page, app_url: str, screenshot_dir: Path):
    """A link to the other demo model, then the sidebar's Attack Lab (the link's model must survive the page
    switch), lecture mode on, and Next through clean → BCE → SLAM → CLASS; each sentence names the run's flips."""
    from mlvis import recipe as rc
    from mlvis.app import lecture

    page.goto(f"{app_url}/?{state.MODEL}={OTHER}&{state.SEED}=0")
    expect_gallery(page, OTHER)
    run_and_wait(page, page.get_by_test_id("stSidebarNav").get_by_role("link", name="Attack Lab").click)
    expect(page.get_by_role("heading", name="Attack Lab", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text(f"Also test the adversarial images on {DEFAULT}")).to_be_visible(timeout=TIMEOUT_MS)
    run_and_wait(page, page.get_by_text("Lecture mode", exact=True).click)
    if page.get_by_role("heading", name=re.compile(r"sees \d+ of its")).count() == 0:
        run_section(page, "Run attack")  # a busy machine made the estimate too high to run by itself
    model = mlvis.create_model(OTHER, device="cpu")
    source = rc.ImageSource(start=lab.default_scene(OTHER))
    recipe = rc.Recipe(OTHER, lab.DEFAULT_METHODS, lab.DEFAULT_EPS, source)
    want = rc.run_recipe(recipe, model, rc.demo_images(source, model.spec.input_size))
    c = len(model.labels)
    expect(page.get_by_role("heading", name=re.compile(rf"^{OTHER} sees \d+ of its {c} labels"))).to_be_visible(
        timeout=TIMEOUT_MS
    )
    page.screenshot(path=str(screenshot_dir / "attack-lab-lecture-0-clean.png"))
    for k, r in enumerate(want, start=1):
        run_and_wait(page, page.get_by_role("button", name="Next", exact=True).click)
        n = int(r.flips[0, 0])
        heading = page.get_by_role("heading", name=re.compile(rf"^{re.escape(r.name)} flipped {n} of {c} label"))
        expect(heading).to_be_visible(timeout=TIMEOUT_MS)
        page.screenshot(path=str(screenshot_dir / f"attack-lab-lecture-{k}-{r.name}.png"))
    expect(page.get_by_role("button", name="Next", exact=True)).to_be_disabled()
    expect(page).to_have_url(re.compile(rf"[?&]{re.escape(lecture.LECTURE)}=true(&|$)"))
    expect(page).to_have_url(re.compile(rf"[?&]{re.escape(lecture.STEP)}={want[-1].name}(&|$)"))
    expect(page).to_have_url(re.compile(rf"[?&]{state.MODEL}={re.escape(OTHER)}(&|$)"))


def test_attack_lab_audit_panel_and_replay(page: Page, app_url: str, screenshot_dir: Path):
    """The Lab's defaults in a real browser: the audit panel (blink, loupe, levels) shows, and the replay's step
    slider moves every method through its recorded steps (Home: the clean image, End: the attack's result)."""
    from mlvis import recipe as rc

    open_from_sidebar(page, app_url, "Attack Lab")
    if page.get_by_role("heading", name="Replay", exact=True).count() == 0:
        run_section(page, "Run attack")  # a busy machine made the estimate too high to run by itself
    model = mlvis.create_model(DEFAULT, device="cpu")
    source = rc.ImageSource(start=lab.default_scene(DEFAULT))
    recipe = rc.Recipe(DEFAULT, lab.DEFAULT_METHODS, lab.DEFAULT_EPS, source)
    want = rc.run_recipe(recipe, model, rc.demo_images(source, model.spec.input_size))

    audit = page.get_by_role("heading", name="Imperceptibility audit", exact=True)
    expect(audit).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator(".mlvis-blink img.top")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(page.locator("iframe[tabindex='-1']").first).to_be_attached(timeout=TIMEOUT_MS)
    audit.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot_dir / "attack-lab-audit.png"))

    replay = page.get_by_role("heading", name="Replay", exact=True)
    expect(replay).to_be_visible(timeout=TIMEOUT_MS)
    steps = page.get_by_test_id("stSlider").filter(has_text="Step").locator("input[type=range]")
    expect(steps).to_have_count(1, timeout=TIMEOUT_MS)
    last = int(steps.get_attribute("max") or 0)
    assert last > 0 and int(steps.input_value()) == last
    for r in want:  # the slider starts at the result: each method's caption gives its flips
        n = int(r.flips[0, 0])
        expect(page.get_by_text(re.compile(rf"^{re.escape(r.name)}: {n} flips? at step \d+"))).to_be_visible()
    steps.focus()
    run_and_wait(page, lambda: steps.press("Home"))
    expect(steps).to_have_value("0", timeout=TIMEOUT_MS)
    for r in want:
        expect(page.get_by_text(re.compile(rf"^{re.escape(r.name)}: 0 flips at step 0"))).to_be_visible()
    replay.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot_dir / "attack-lab-replay-start.png"))
    steps.focus()
    run_and_wait(page, lambda: steps.press("End"))
    expect(steps).to_have_value(str(last), timeout=TIMEOUT_MS)
    best = max(want, key=lambda r: int(r.flips[0, 0]))
    expect(
        page.get_by_text(re.compile(rf"^{re.escape(best.name)}: {int(best.flips[0, 0])} flips? at step"))
    ).to_be_visible()
    replay.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot_dir / "attack-lab-replay.png"))
