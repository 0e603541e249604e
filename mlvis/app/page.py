"""What every page shares: the ``page_model()`` preamble, the demo scenes of the sidebar's seed block, the
parsing of comma-separated number lists, ``in_frame()`` (a cold link to a page still gets the frame) and the
"Skip to Run" link (``skip_link()``, drawn by app.py's frame)."""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

import mlvis
from mlvis.app import cache, state
from mlvis.errors import DataError, InvalidInput

FRAME_RERUN = "page._frame_rerun"  # set once a page asked for a rerun because app.py's frame had not run


def _leave_pages_directory_mode() -> None:
    """What ``st.navigation`` does first: Streamlit stops running ``pages/`` files as pages of their own.
    app.py always calls ``st.navigation``, so this only brings forward what its first run does."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # another Streamlit layout: the rerun alone is then the fallback
        return
    PagesManager.uses_pages_directory = False


def in_frame() -> None:
    """Make sure the page runs inside app.py's frame (sidebar, navigation); the first call on every page.

    A page can run without the frame once: on the first visit after the server starts, when it is a link
    straight to a page (``/landscape``). Streamlit then runs the file from ``pages/`` on its own (its old
    multipage mode, which lasts until the public ``st.navigation`` has run once in the process), with its own
    list of files in the sidebar and no model chosen. The page then ends that mode, as the frame's
    ``st.navigation`` would, and asks for one rerun, which goes through the frame and draws the same page
    with the same query parameters, instead of a traceback.
    """
    if state.MODEL in st.session_state:  # the frame's sidebar ran first
        return
    if not st.session_state.get(FRAME_RERUN):
        st.session_state[FRAME_RERUN] = True
        _leave_pages_directory_mode()
        st.rerun()
    st.error("Open the app from its start page: it draws the sidebar that chooses the model.")
    st.stop()


def page_model() -> tuple[str, mlvis.MultiLabelModel]:
    """The sidebar's model, loaded (cached): ``(name, model)``; when it cannot load, its one-sentence error
    is shown and the page stops there. Pages that start with it need no :func:`in_frame` of their own."""
    in_frame()
    name = state.model_name()
    model, error = cache.try_load_model(name)
    if model is None:
        st.error(error)
        st.stop()
    return name, model


DIMS = 3  # image-steps of L-inf jobs do not depend on the image size (the L2 step does)


def scenes(model: mlvis.MultiLabelModel, count: int, seed: int | None = None) -> np.ndarray:
    """The first ``count`` held-out demo scenes of the sidebar's seed block at the model's input size."""
    h, w = (int(v) for v in model.spec.input_size)
    if h != w:
        raise DataError(f"The demo scenes are square, but {model.spec.name} takes {h}×{w} images.")
    return cache.lab_scenes("test", state.seed() if seed is None else int(seed), 0, int(count), h)


def needs_demo_labels(model: mlvis.MultiLabelModel) -> bool:
    """True when the model's labels are the demo world's (so the dataset statistics apply)."""
    return tuple(model.spec.labels) == tuple(mlvis.data.LABELS)


def norm_radio(key: str, help: str) -> str:
    """The attack norm as a horizontal radio bound to the URL under ``key``: ``"linf"`` or ``"l2"``."""
    from mlvis.attacks.budget import NORM_TITLES

    return str(st.radio("Norm", ["linf", "l2"], format_func=NORM_TITLES.get, horizontal=True, key=key,
                        bind="query-params", help=help))  # fmt: skip


MAX_UPLOADS = 100  # images one upload box takes for a measurement (the paper measures on 100)
IMAGE_SOURCES = {"demo": "Demo test scenes", "upload": "My images"}


def image_uploads(model: mlvis.MultiLabelModel, key: str, label: str, purpose: str):
    """An upload box for the images a measurement runs on, resized by the model card's rule.

    Returns ``(images (N, 3, H, W) or None, digest of the files, error sentences)``; ``purpose`` ends the help
    text ("the model should be profiled on")."""
    import hashlib

    from mlvis.data import images as uploads

    pre = mlvis.models.preprocess_for(model.spec)
    h, w = (int(v) for v in model.spec.input_size)
    files = st.file_uploader(
        label,
        type=list(uploads.EXTENSIONS),
        accept_multiple_files=True,
        key=key,
        help=f"Up to {MAX_UPLOADS} images {purpose} (the paper uses 100 from the test set), {pre.describe()}.",
    )
    st.caption(f"Images are {pre.describe()}, as {model.spec.name} expects them.")
    if not files:
        return None, "", ()
    payload = tuple((f.name, f.getvalue()) for f in files)
    loaded, errors = cache.lab_uploads(payload, h, w, pre.fit, MAX_UPLOADS, pre.interpolation)
    digest = hashlib.sha256(b"".join(name.encode() + b"\0" + data for name, data in payload)).hexdigest()[:16]
    if not loaded:
        return None, digest, tuple(errors)
    return uploads.to_batch(loaded), digest, tuple(errors)


def parse_numbers(text: str, name: str, lo: float, hi: float, max_count: int = 12) -> tuple[float, ...]:
    """``"0.05, 0.1 0.2"`` -> ``(0.05, 0.1, 0.2)``, sorted, unique; ``InvalidInput`` with a sentence otherwise."""
    parts = [p for p in str(text).replace(";", ",").replace(" ", ",").split(",") if p.strip()]
    if not parts:
        raise InvalidInput(f"Give at least one value for {name}.")
    try:
        values = sorted({float(p) for p in parts})
    except ValueError:
        raise InvalidInput(f"Give {name} as numbers separated by commas, not {text!r}.") from None
    if any(not (math.isfinite(v) and lo < v <= hi) for v in values):
        raise InvalidInput(f"Every value of {name} must lie in ({lo:g}, {hi:g}].")
    if len(values) > max_count:
        raise InvalidInput(f"Give at most {max_count} values for {name}.")
    return tuple(values)


# The first stop of the Tab key on every page that has a Run button (the button of a
# ``mlvis.app.jobs.run_section``, keyed ``<section>.run``, which Streamlit writes as the CSS class
# ``st-key-<section>-run``): Enter moves the focus onto that button, past the sidebar and every widget's help
# icon (the Lab's Run was 41 Tab presses from the top of the page). Hidden, so not in the tab order, on pages
# without one, where Streamlit's own "Skip to main content" comes first. It lives outside Streamlit's React
# tree (prepended to <body>), so reruns and page switches keep it; the script is idempotent and looks the
# button up when the link is used, never a stale one.
SKIP_LINK_ID = "mlvis-skip-run"
SKIP_LINK_HTML = """
<span id="__ID__-host" hidden></span>
<script>
(() => {
  const doc = window.document;
  if (doc.getElementById("__ID__")) return;
  const runButton = () => {
    for (const el of doc.querySelectorAll('[data-testid="stMain"] [class*="-run"]')) {
      if ([...el.classList].some((c) => c.startsWith("st-key-") && c.endsWith("-run"))) {
        const button = el.querySelector("button:not([disabled])");
        if (button) return button;
      }
    }
    return null;
  };
  const style = doc.createElement("style");
  style.textContent = `
    #__ID__ { position: fixed; left: 0.75rem; top: 0.75rem; z-index: 1000200; padding: 0.5rem 1rem;
      border-radius: 0.5rem; background: #ff4b4b; color: #fff; font: 600 1rem/1.4 sans-serif;
      text-decoration: none; transform: translateY(-300%); }
    #__ID__:focus { transform: none; outline: 3px solid #1c83e1; outline-offset: 2px; }
    [data-testid="stElementContainer"]:has(#__ID__-host) { display: none; }`;
  const link = doc.createElement("a");
  link.id = "__ID__";
  link.href = "#";
  link.textContent = "Skip to Run";
  link.hidden = true;
  link.addEventListener("click", (event) => {
    event.preventDefault();
    const button = runButton();
    if (button) {
      button.scrollIntoView({ block: "center" });
      button.focus();
    }
  });
  let queued = false;
  const sync = () => {
    queued = false;
    link.hidden = runButton() === null;
  };
  new MutationObserver(() => {
    if (!queued) {
      queued = true;
      window.requestAnimationFrame(sync);
    }
  }).observe(doc.body, { childList: true, subtree: true });
  doc.head.appendChild(style);
  doc.body.prepend(link);
  sync();
})();
</script>
""".replace("__ID__", SKIP_LINK_ID)


def skip_link() -> None:
    """Draw the "Skip to Run" link (its script runs once per browser tab; its element takes no room)."""
    st.html(SKIP_LINK_HTML, unsafe_allow_javascript=True)
