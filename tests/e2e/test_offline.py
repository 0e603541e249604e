"""Every page offline and by keyboard, in a real headless Chromium (issue 13 §4).

- Offline-clean: the browser opens every page of the app's navigation and records every request the pages
  make (HTTP and websockets). A request to any host but the app's own loopback address fails the test, and
  is aborted rather than sent, so the check never depends on the machine having a network. Every font the
  page declares must have loaded (a font fetched from a CDN fails offline and shows as ``error``).
- Cold links: the first visit after the server starts, straight to a page, shows that page in the frame.
- Keyboard: from the top of the Attack Lab, the Run button is a few key presses away (Tab to the
  "Skip to Run" link, Enter), not one Tab per sidebar link and widget help icon.

A screenshot of each page goes to ``test-artifacts/screenshots/offline-<page>.png``; ``make screenshots``
copies the runs page's into docs/img/ (tests/e2e/docs_img.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect

pytestmark = pytest.mark.e2e

TIMEOUT_MS = 120_000  # the first page imports torch and loads a model; the machine may be busy
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# (sidebar title, a heading the page shows once its script ran, screenshot name): every page of app.py's
# navigation (the test checks that the sidebar lists no other)
PAGES = [
    ("Home", "mlvis: label-flip attacks on a budget", "home"),
    ("Attack Lab", "Attack Lab", "attack-lab"),
    ("Confidence histograms", "Confidence histograms", "histograms"),
    ("Label landscape", "Label landscape", "landscape"),
    ("Profiles", "Profiles", "profiles"),
    ("Budget sweep", "Budget sweep", "sweep"),
    ("Hyperplane simulation", "Hyperplane simulation", "hyperplane"),
    ("Paper figures", "Paper figures", "figures"),
    ("Models", "Models", "models"),
    ("Runs", "Runs", "runs"),
]
FONTS_JS = "() => Object.fromEntries([...document.fonts].map(f => [`${f.family} ${f.weight} ${f.style}`, f.status]))"
MAX_KEYS_TO_RUN = 3  # Tab (the skip link), Enter; one more for a browser that puts something first


def wait_idle(page: Page) -> None:
    """The script is not running and nothing on the page is left over from an earlier run."""
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning", timeout=TIMEOUT_MS)
    expect(page.locator("[data-stale='true']")).to_have_count(0, timeout=TIMEOUT_MS)


def open_page(page: Page, title: str, heading: str) -> None:
    """Open ``title`` from the sidebar and wait until its script has drawn ``heading`` and finished."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    wait_idle(page)


def is_loopback(url: str, app_host: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True  # never leaves the browser
    return parts.hostname in LOOPBACK or parts.netloc == app_host


def test_every_page_is_offline_clean(context: BrowserContext, page: Page, app_url: str, screenshot_dir: Path):
    app_host = urlsplit(app_url).netloc
    seen: list[str] = []
    external: list[str] = []

    def guard(route: Route) -> None:
        url = route.request.url
        seen.append(url)
        if is_loopback(url, app_host):
            route.continue_()
        else:
            external.append(url)
            route.abort("internetdisconnected")

    def websocket(ws) -> None:  # not routed: recorded
        seen.append(ws.url)
        if not is_loopback(ws.url, app_host):
            external.append(ws.url)

    context.route("**/*", guard)
    page.on("websocket", websocket)
    page.goto(app_url)
    wait_idle(page)
    # every page of the navigation is in PAGES (a page added to app.py and not here fails this line)
    expect(page.get_by_test_id("stSidebarNav").get_by_test_id("stSidebarNavLink")).to_have_count(len(PAGES))
    fonts: dict[str, str] = {}
    for title, heading, name in PAGES:
        open_page(page, title, heading)
        page.wait_for_load_state("networkidle")
        page.evaluate("() => document.fonts.ready")
        fonts.update(page.evaluate(FONTS_JS))
        page.screenshot(path=str(screenshot_dir / f"offline-{name}.png"))
    print(f"\n{len(seen)} requests, {len(set(seen))} distinct; fonts: {sorted(fonts)}")
    assert external == [], f"requests leaving the machine: {sorted(set(external))}"
    assert any(u.startswith(("ws://", "wss://")) for u in seen) and len(seen) > 20  # the guard saw the app
    assert fonts and "error" not in fonts.values(), f"fonts that failed to load: {fonts}"
    # the icons of the navigation are Material Symbols ligatures, drawn from the app's own font file
    assert any(re.search(r"material", f, re.I) and s == "loaded" for f, s in fonts.items()), fonts


def focused(page: Page) -> dict:
    return page.evaluate(
        "() => { const e = document.activeElement;"
        " return {tag: e.tagName, text: (e.innerText || e.getAttribute('aria-label') || '').trim(), id: e.id}; }"
    )


def test_run_on_the_lab_is_a_few_keys_from_the_top(page: Page, app_url: str):
    page.goto(app_url)
    wait_idle(page)
    skip = page.locator("#mlvis-skip-run")
    expect(skip).to_be_hidden()  # Home has no Run button: no link, Streamlit's "Skip to main content" comes first
    host = page.locator('[data-testid="stElementContainer"]:has(#mlvis-skip-run-host)')
    expect(host).to_have_count(1)
    expect(host).to_be_hidden()  # the frame's element that draws the link takes no room on the page
    open_page(page, "Attack Lab", "Attack Lab")
    expect(page.get_by_role("button", name="Run attack", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    # start where a visitor starts: nothing focused, the sequential focus at the top of the document
    page.evaluate("() => { document.activeElement?.blur(); document.body.tabIndex = -1; document.body.focus();"
                  " document.body.removeAttribute('tabindex'); }")  # fmt: skip
    keys: list[str] = []
    while len(keys) < 80 and not (focused(page)["tag"] == "BUTTON" and focused(page)["text"] == "Run attack"):
        if focused(page)["id"] == "mlvis-skip-run":
            expect(skip).to_have_text("Skip to Run")
            expect(skip).to_be_in_viewport()  # shown while it has the focus
            keys.append("Enter")
            page.keyboard.press("Enter")
        else:
            keys.append("Tab")
            page.keyboard.press("Tab")
    print(f"\nkeys from the top of the Lab to Run: {len(keys)} ({' '.join(keys)})")
    assert focused(page)["text"] == "Run attack", f"Run not reached in {len(keys)} key presses"
    assert len(keys) <= MAX_KEYS_TO_RUN, f"{len(keys)} key presses to reach Run: {' '.join(keys)}"
    expect(page.get_by_role("button", name="Run attack", exact=True)).to_be_in_viewport()


def test_a_link_straight_to_a_page_opens_it_in_the_frame_on_a_cold_server(page: Page, fresh_app_url: str):
    # the first visit after the server starts, a shared link to the landscape page with another model: Streamlit
    # ran the pages/ file on its own here (no sidebar, a RuntimeError's traceback) until the frame had run once
    page.goto(f"{fresh_app_url}/landscape?model=demo-q2l")
    expect(page.get_by_role("heading", name="Label landscape", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    wait_idle(page)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stSidebarNav").get_by_test_id("stSidebarNavLink")).to_have_count(len(PAGES))
    expect(page.get_by_test_id("stSidebarNav").get_by_role("link", name="Label landscape")).to_be_visible()
    expect(page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").locator("input")).to_have_value("demo-q2l")
    expect(page).to_have_url(f"{fresh_app_url}/landscape?model=demo-q2l")
