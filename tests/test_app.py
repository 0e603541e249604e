"""AppTest of the dashboard frame and its Home page.

Expected confidences are computed here with the library (``mlvis.create_model`` + ``demo_batch``),
never hard-coded, so these tests hold for whatever weights ship.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from apptools import chart_specs, plotly_array
from streamlit.testing.v1 import AppTest

import mlvis
import mlvis.models.demo
from mlvis.app import cache, state

APP = Path(__file__).resolve().parents[1] / "app.py"
GALLERY_SIZE = 6  # pages/home.py shows six scenes (mlvis.app.home_page.GALLERY_SIZE)
MODELS = mlvis.list_models()
DEFAULT = state.default_model(MODELS)
OTHER = next(m for m in MODELS if m != DEFAULT)


pytestmark = pytest.mark.usefixtures("fresh_caches")  # every test starts with empty Streamlit caches


@pytest.fixture(scope="module")
def expected():
    """``expected(model, seed)`` -> (label names, (n, C) confidences, (n, C) ground truth), via the library."""
    models: dict[str, mlvis.MultiLabelModel] = {}
    memo: dict[tuple[str, int], tuple] = {}

    def compute(name: str, seed: int = 0):
        if (name, seed) not in memo:
            model = models.setdefault(name, mlvis.create_model(name, device="cpu"))
            images, labels = mlvis.data.demo_batch(GALLERY_SIZE, split="test", seed=seed)
            memo[name, seed] = (model.spec.labels, model.predict_proba(images).numpy(), labels.numpy(), model.spec)
        return memo[name, seed]

    return compute


def run_app(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


def assert_gallery_matches(at: AppTest, labels, probs, truth, spec) -> None:
    """Each chart shows the model's own confidences for its labels, the threshold and the truth."""
    figs = chart_specs(at)
    assert len(figs) == GALLERY_SIZE
    for i, fig in enumerate(figs):
        bars = [t for t in fig["data"] if t["type"] == "bar"]
        assert len(bars) == 1
        names = list(bars[0]["y"])
        values = plotly_array(bars[0]["x"]).astype(float)
        assert len(values) == len(names) > 0  # one bar per label shown
        assert len(set(names)) == len(names) and set(names) <= set(labels)
        idx = [labels.index(n) for n in names]
        np.testing.assert_allclose(values, probs[i, idx], atol=1e-4)
        # every label predicted present and every ground-truth label is on the chart
        must_show = {labels[j] for j in np.flatnonzero((probs[i] >= spec.threshold) | (truth[i] > 0.5))}
        assert must_show <= set(names)
        lines = [s for s in fig["layout"]["shapes"] if s["type"] == "line"]
        assert [(s["x0"], s["x1"]) for s in lines] == [(spec.threshold, spec.threshold)]
        marked_truth = {
            n for t in fig["data"] if t["type"] == "scatter" and t["name"].startswith("in ground truth") for n in t["y"]
        }
        assert marked_truth == {labels[j] for j in np.flatnonzero(truth[i] > 0.5)}


def test_home_runs_and_shows_the_gallery(expected):
    at = run_app()
    assert not at.exception
    assert not at.error
    labels, probs, truth, spec = expected(DEFAULT)
    assert_gallery_matches(at, labels, probs, truth, spec)
    assert len(at.get("image")) == GALLERY_SIZE
    assert f"Model: {DEFAULT}" in [h.value for h in at.header]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Input size"] == "×".join(map(str, spec.input_size))
    assert metrics["Test mAP"] == f"{spec.card['test_mAP']:.3f}"
    text = " ".join(m.value for m in at.markdown)
    assert "Champagne Taste on a Beer Budget" in text and "SLAM" in text and "CLASS" in text
    # the sidebar: model picker over list_models(), seed, device
    assert at.sidebar.selectbox(key=state.MODEL).options == MODELS
    assert at.sidebar.selectbox(key=state.MODEL).value == DEFAULT
    assert at.sidebar.number_input(key=state.SEED).value == state.DEFAULT_SEED
    assert [c.value for c in at.sidebar.caption] == [f"Device: {cache.device_label()} · float32 weights"]


def test_switching_the_model_changes_the_charts(expected):
    at = run_app()
    before = chart_specs(at)
    at.sidebar.selectbox(key=state.MODEL).set_value(OTHER).run()
    assert not at.exception
    assert at.session_state[state.MODEL] == OTHER
    assert f"Model: {OTHER}" in [h.value for h in at.header]
    labels, probs, truth, spec = expected(OTHER)
    assert_gallery_matches(at, labels, probs, truth, spec)
    assert chart_specs(at) != before


def test_changing_the_seed_changes_the_scenes(expected):
    at = run_app()
    at.sidebar.number_input(key=state.SEED).set_value(3).run()
    assert not at.exception
    labels, probs, truth, spec = expected(DEFAULT, 3)
    assert_gallery_matches(at, labels, probs, truth, spec)
    first_scene = 3 * mlvis.data.BLOCK
    assert at.get("image")[0].proto.imgs[0].caption.startswith(f"Scene {first_scene} ")


def test_query_params_choose_model_and_seed(expected):
    at = run_app({state.MODEL: OTHER, state.SEED: "2"})
    assert not at.exception
    assert at.sidebar.selectbox(key=state.MODEL).value == OTHER
    assert at.sidebar.number_input(key=state.SEED).value == 2
    labels, probs, truth, spec = expected(OTHER, 2)
    assert_gallery_matches(at, labels, probs, truth, spec)


@pytest.mark.parametrize(
    "query",
    [
        {state.MODEL: "no-such-model"},
        {state.MODEL: "", state.SEED: "abc"},
        {state.SEED: "5000"},
        {state.SEED: "-1"},
    ],
    ids=["unknown-model", "empty-model-text-seed", "seed-too-large", "seed-negative"],
)
def test_invalid_query_params_fall_back_to_defaults(query, expected):
    at = run_app(query)
    assert not at.exception
    assert not at.error
    assert at.sidebar.selectbox(key=state.MODEL).value == DEFAULT
    assert at.sidebar.number_input(key=state.SEED).value == state.DEFAULT_SEED
    labels, probs, truth, spec = expected(DEFAULT)
    assert_gallery_matches(at, labels, probs, truth, spec)


def test_invalid_session_state_values_fall_back_to_defaults(expected):
    """A page that wrote a value the sidebar cannot take does not break the app (``state.init_state``)."""
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state[state.MODEL] = "model-that-was-removed"
    at.session_state[state.SEED] = 10_000
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox(key=state.MODEL).value == DEFAULT
    assert at.sidebar.number_input(key=state.SEED).value == state.DEFAULT_SEED
    labels, probs, truth, spec = expected(DEFAULT)
    assert_gallery_matches(at, labels, probs, truth, spec)


def test_missing_weights_show_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(mlvis.models.demo, "WEIGHTS_DIR", tmp_path)  # an empty weights folder
    at = run_app()
    assert not at.exception
    assert len(at.error) == 1
    message = at.error[0].value
    assert message.startswith(f"Could not load the model {DEFAULT!r}")
    assert "missing" in message and "mlvis train-demo" in message
    assert not at.get("plotly_chart")
    # the sidebar still works, so the user can pick another model
    assert at.sidebar.selectbox(key=state.MODEL).options == MODELS
