"""AppTests of issue 10 §4 and issue 12 §1 on the pages: the Profiles page measures a profile on the user's own
photos for a real model (a small timm card with random weights), in either norm, with a cost estimate; the Lab's
SLAM then finds it; the Profiles and Sweep pages show and use the L2 profile (Table VIII, Fig. 12)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from apptools import metrics
from model_files import timm_card
from PIL import Image
from streamlit.testing.v1 import AppTest

import mlvis
from mlvis.app import lab, profiles_page, sweep_page
from mlvis.data import images as mi
from mlvis.models import cards

APP = Path(__file__).resolve().parents[1] / "app.py"
PROFILES = "pages/profiles.py"
SWEEP = "pages/sweep.py"
LAB = "pages/attack_lab.py"
TITLES = {"linf": "L∞", "l2": "L2"}


@pytest.fixture
def folder(tmp_path, monkeypatch, fresh_caches):
    path = tmp_path / "models"
    timm_card(path, name="tiny-photos")
    monkeypatch.setenv(cards.ENV, str(path))
    yield path
    monkeypatch.delenv(cards.ENV)
    cards.sync(force=True)


def photo(seed: int, w: int = 96, h: int = 72) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def open_app(query: dict, page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=180)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def clean(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_a_real_model_is_profiled_on_uploaded_photos_and_the_lab_finds_it(folder, norm):
    at = open_app({"model": "tiny-photos", profiles_page.PROF_NORM: TITLES[norm]}, PROFILES)  # the URL holds titles
    assert at.radio(key=profiles_page.PROF_SOURCE).value == "upload"  # a photo model: its own photos by default
    assert any("has no" in i.value for i in at.info)  # no shipped or cached profile in this norm yet
    files = [(f"p{i}.png", photo(i), "image/png") for i in range(2)]
    at.file_uploader(key=profiles_page.PROF_UPLOAD).set_value(files).run()
    clean(at)
    max_key = profiles_page.PROF_MAX_EPS_L2 if norm == "l2" else profiles_page.PROF_MAX_EPS
    max_eps = 0.5 if norm == "l2" else 0.02
    at.number_input(key=max_key).set_value(max_eps)
    at.number_input(key=profiles_page.PROF_INTERVAL).set_value(1)
    at.run()
    cost = " ".join(c.value for c in at.caption)
    steps = mlvis.analysis.profiles.probe_image_steps(2, max_eps, 1 / 2560, norm, 3 * 64 * 64)
    assert f"{steps:,} image-steps" in cost  # the estimate counts this norm's steps on these 2 photos
    at.button(key=f"{profiles_page.PROF_SECTION}.run").click().run()
    clean(at)
    model = mlvis.create_model("tiny-photos", device="cpu")
    x = np.stack([mi.load_image(d, (64, 64), fit="stretch", interpolation="bilinear").array for _, d, _ in files])
    want = mlvis.profile(model, torch.from_numpy(x), max_eps=max_eps, interval=1, norm=norm, cache=False)
    label = "ε_max (L2 radius)" if norm == "l2" else "ε_max"
    assert metrics(at)[label] == f"{want.eps_max:.4f}"
    # cached under the weights' fingerprint, in its norm: the library and the other pages find it
    found = mlvis.profile(model, norm=norm)
    assert found.norm == norm and found.eps_max == want.eps_max and found.settings["images"] == 2
    # the Lab's SLAM (in the same norm) now reads it instead of asking for a profile
    query = {"model": "tiny-photos", lab.LAB_SOURCE: "Upload images", lab.LAB_METHODS: ["SLAM"],
             lab.LAB_NORM: TITLES[norm]}  # fmt: skip
    at = open_app(query, LAB)
    at.file_uploader(key=lab.LAB_UPLOAD).set_value([files[0]]).run()
    clean(at)
    assert "SLAM: flips" in metrics(at)
    assert not any("cannot run" in w.value for w in at.warning)


def test_the_profiles_page_shows_the_shipped_l2_profile():
    model = mlvis.create_model("demo-asl", device="cpu")
    shipped = mlvis.profile(model, norm="l2")
    at = open_app({profiles_page.PROF_NORM: "L2"}, PROFILES)
    clean(at)
    m = metrics(at)
    assert m["ε_max (L2 radius)"] == f"{shipped.eps_max:.4f}"
    assert at.dataframe[0].value["ε"].tolist() == pytest.approx(shipped.grid().tolist())
    assert any("E(ε) under L2" in h.value for h in at.header)


def test_the_sweep_runs_table_viii_and_fig_12_under_l2(fresh_caches):
    model = mlvis.create_model("demo-asl", device="cpu")
    l2 = mlvis.profile(model, norm="l2")
    query = {sweep_page.SWEEP_NORM: "L2", sweep_page.SWEEP_N: "2", sweep_page.SWEEP_FRACTIONS: "0.05",
             sweep_page.SWEEP_METHODS: ["BCE", "SLAM"]}  # fmt: skip
    at = open_app(query, SWEEP)
    clean(at)
    assert [t.label for t in at.tabs][0] == "Table VIII (L2)"
    if at.session_state["sweep.table._results"] == {}:
        at.button(key="sweep.table.run").click().run()
    clean(at)
    results = at.session_state["sweep.table._results"]
    table = results[next(reversed(results))]["result"]
    np.testing.assert_allclose(table.eps, [0.05 * l2.eps_max])  # a fraction of the L2 eps_max
    assert table.config["norm"] == "l2" and table.config["eps_max"] == l2.eps_max
    x = mlvis.data.demo_batch(2)[0]
    want = mlvis.evaluate(model, x, ["bce", ("slam", {"q": 0.5})], [0.05], norm="l2")
    np.testing.assert_array_equal(table.flips, want.flips)
    # Fig. 12: BCE at L-inf 0.024 and at the equal-volume L2 radius
    at.number_input(key=sweep_page.SWEEP_NC_EPS).set_value(0.004).run()
    if not at.session_state["sweep.norms._results"]:
        at.button(key="sweep.norms.run").click().run()
    clean(at)
    cmp = mlvis.analysis.linf_vs_l2(model, x, 0.004)
    text = " ".join(md.value for md in at.markdown)
    assert cmp.to_markdown() in text
    assert cmp.radius == pytest.approx(mlvis.attacks.equal_volume_l2_radius(0.004, 3 * 64 * 64))


LANDSCAPE = "pages/landscape.py"


def test_a_real_model_gets_its_correlation_matrices_measured_on_uploaded_photos(folder):
    """Issue 10 §4: the Label landscape measures both matrices on the user's photos for a real model (the demo
    scenes are not its world), with equation 9's cost, and caches them for these weights."""
    from mlvis.app import landscape_page as lp

    at = open_app({"model": "tiny-photos", lp.LAND_EPS: "0.002"}, LANDSCAPE)
    assert at.radio(key=lp.LAND_SOURCE).value == "upload"  # a photo model: its own photos by default
    assert any("Upload the images" in i.value for i in at.info)
    files = [(f"p{i}.png", photo(10 + i), "image/png") for i in range(2)]
    at.file_uploader(key=lp.LAND_UPLOAD).set_value(files).run()
    clean(at)
    model = mlvis.create_model("tiny-photos", device="cpu")
    x = torch.from_numpy(
        np.stack([mi.load_image(d, (64, 64), fit="stretch", interpolation="bilinear").array for _, d, _ in files])
    )
    from mlvis.analysis.correlation_matrices import correlation_image_steps

    steps = sum(correlation_image_steps(model, x, 0.002, d) for d in ("up", "down"))  # the jobs' exact count
    assert f"both matrices {steps:,} image-steps" in " ".join(cap.value for cap in at.caption)
    at.button(key=f"{lp.LAND_SECTION}.run").click().run()
    clean(at)
    for direction in ("up", "down"):
        want = mlvis.correlations(model, x, eps=0.002, direction=direction, cache=False)
        found = mlvis.correlations(model, direction=direction)  # cached under the weights' fingerprint
        assert found.images == 2 and found.eps == 0.002
        np.testing.assert_allclose(found.matrix, want.matrix, atol=1e-6)
