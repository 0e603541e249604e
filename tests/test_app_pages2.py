"""AppTests of the Attack Lab, Profiles, Label landscape, Budget sweep and Confidence histograms pages.

Real interactions (widgets set, Run pressed), and every number the page shows is compared with the
library's own result for the same settings, computed here. The models' profile and correlation
matrices are the shipped ones when they exist; otherwise tiny ones are computed once for this module
into its own cache folder (the page and the test then read the same files).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from apptools import chart_specs, metrics, plotly_array
from PIL import Image
from streamlit.testing.v1 import AppTest

import mlvis
from mlvis import cli
from mlvis import recipe as rc
from mlvis.app import cache, histograms_page, jobs, lab, landscape_page, profiles_page, sweep_page
from mlvis.data import images as mi
from mlvis.viz import histograms as vh

APP = Path(__file__).resolve().parents[1] / "app.py"
LAB = "pages/attack_lab.py"
MODEL = "demo-asl"


@pytest.fixture(scope="module")
def artifact_folder(tmp_path_factory):
    """A cache folder with the model's artifacts: shipped ones are used as they are, missing ones computed
    small (3 scenes)."""
    folder = tmp_path_factory.mktemp("mlvis-artifacts")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLVIS_CACHE", str(folder))
        model = mlvis.create_model(MODEL, device="cpu")
        x, _ = mlvis.data.demo_batch(3, seed=7)
        try:
            mlvis.profile(model)
        except ValueError:
            mlvis.profile(model, x, max_eps=0.05, interval=5)
        for d in ("up", "down"):
            try:
                mlvis.correlations(model, direction=d)
            except ValueError:
                mlvis.correlations(model, x, eps=0.002, direction=d)
    return folder


@pytest.fixture(autouse=True)
def _private_cache(artifact_folder, monkeypatch):
    """Overrides conftest's: every test of this module reads (and writes) the module's artifact folder."""
    monkeypatch.setenv("MLVIS_CACHE", str(artifact_folder))


pytestmark = pytest.mark.usefixtures("fresh_caches")  # every test starts with empty Streamlit caches


@pytest.fixture(scope="module")
def model():
    return mlvis.create_model(MODEL, device="cpu")


def open_page(page: str, query: dict | None = None) -> AppTest:
    """The app opened at its root with ``query`` in the URL, then on ``page`` (as a shared link does once the
    frame is up; a cold deep link runs the page without app.py's frame, a Streamlit quirk with ``pages/``)."""
    at = AppTest.from_file(str(APP), default_timeout=120)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    at.switch_page(page)
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def expected(model, recipe: rc.Recipe, images: np.ndarray):
    return rc.run_recipe(recipe, model, images, artifacts=rc.model_artifacts(model, recipe.norm))


def lab_run(at: AppTest) -> lab.LabRun:
    """The run the page keeps in session state (the most recent one)."""
    results = at.session_state[f"{lab.SECTION}._results"]
    return results[next(reversed(results))]["result"]


def assert_lab_shows(at: AppTest, want, image: int = 0) -> None:
    """The metrics, summary table and confidence charts are the library's numbers for ``want``."""
    c = len(want[0].labels)
    m = metrics(at)
    for r in want:
        assert m[f"{r.name}: flips"] == f"{int(r.flips[0, image])} / {c}"
    table = at.dataframe[0].value
    assert table["method"].tolist() == [r.name for r in want]
    np.testing.assert_allclose(table["flips"], [r.flips[0].mean() for r in want])
    np.testing.assert_allclose(table["flips (8-bit)"], [r.flips_8bit[0].mean() for r in want])
    np.testing.assert_allclose(table["L∞"], [r.linf[0].mean() for r in want], rtol=1e-6)
    np.testing.assert_allclose(table["SSIM"], [r.ssim[0].mean() for r in want], rtol=1e-6)
    conf = [f for f in chart_specs(at) if any((t.get("meta") or {}).get("kind") == "after" for t in f["data"])]
    assert len(conf) == len(want)
    for fig, r in zip(conf, want):
        after = next(t for t in fig["data"] if t["meta"]["kind"] == "after")
        flipped = [r.labels[j] for j in np.flatnonzero(r.adv_pred[0, image] != r.clean_pred[image])]
        assert after["meta"]["flipped"] == flipped
        assert fig["layout"]["title"]["text"] == r.name
        shown = [y.removeprefix("⇄ ") for y in after["y"]]
        idx = [r.labels.index(n) for n in shown]
        np.testing.assert_allclose(plotly_array(after["x"]), r.adv_probs[0, image, idx], rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Attack Lab


def test_lab_runs_its_defaults_at_once_and_matches_the_library(model):
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page(LAB).run()
    assert_clean(at)
    assert at.title[0].value == "Attack Lab"
    text = " ".join(m.value for m in at.markdown)
    assert "section V-A" in text and "section V-B" in text and "Algorithm 2" in text
    assert at.button_group(key=lab.LAB_METHODS).value == list(lab.DEFAULT_METHODS)
    assert at.number_input(key=lab.LAB_EPS).value == lab.DEFAULT_EPS
    recipe = rc.Recipe(MODEL, lab.DEFAULT_METHODS, lab.DEFAULT_EPS, rc.ImageSource(start=lab.default_scene(MODEL)))
    images = rc.demo_images(recipe.images, model.spec.input_size)
    want = expected(model, recipe, images)
    assert_lab_shows(at, want)
    assert lab_run(at).recipe == recipe
    # the other views of the same run: flips bars, heatmaps, downloads
    figs = chart_specs(at)
    flips = next(f for f in figs if f["data"][0].get("meta", {}).get("kind") == "flips")
    np.testing.assert_allclose(plotly_array(flips["data"][0]["y"]), [r.flips[0].mean() for r in want])
    heat = next(f for f in figs if f["data"][0].get("meta", {}).get("kind") == "heatmap")
    assert [t["meta"]["method"] for t in heat["data"]] == [r.name for r in want]
    assert len(at.get("download_button")) == 5 * len(want) + 3  # 16-bit, .npy, 8-bit, slide PNG and SVG
    captions = " ".join(c.value for c in at.caption)
    assert "8-bit level 1/255" in captions and "image-steps" in captions
    for w in (*at.radio, *at.slider, *at.number_input, *at.button_group, *at.checkbox):
        assert w.help, f"{w.label} has no tooltip"


def test_lab_follows_its_controls_and_keeps_the_result(model):
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page(LAB).run()
    at.button_group(key=lab.LAB_METHODS).set_value(["bce", "linear", "random"])
    at.number_input(key=lab.LAB_EPS).set_value(0.006)
    at.number_input(key=lab.LAB_COUNT).set_value(2)
    at.radio(key=lab.LAB_NORM).set_value("l2")
    at.run()
    assert_clean(at)
    assert at.slider(key=lab.LAB_EPS_SLIDER).value == pytest.approx(0.006)  # the slider follows the exact entry
    at.button(key="lab.run").click().run()
    assert_clean(at)
    source = rc.ImageSource(start=lab.default_scene(MODEL), count=2)
    recipe = rc.Recipe(MODEL, ("bce", "linear", "random"), 0.006, source, norm="l2")
    want = expected(model, recipe, rc.demo_images(recipe.images, model.spec.input_size))
    assert_lab_shows(at, want)
    radius = mlvis.attacks.equal_volume_l2_radius(0.006, 3 * 64 * 64)
    assert f"radius {radius:.4f}" in " ".join(c.value for c in at.caption)
    np.testing.assert_allclose(lab_run(at).results[0].eps, [radius])
    assert all((r.l2[0] <= radius + 1e-5).all() for r in want)
    # the second image
    at.selectbox(key=lab.LAB_SHOW).set_value(1).run()
    assert_clean(at)
    assert_lab_shows(at, want, image=1)
    # the one-level button sets ε, both widgets follow, and the last result stays until Run
    at.button(key="lab.eight_bit").click().run()
    assert at.number_input(key=lab.LAB_EPS).value == pytest.approx(1 / 255)
    assert at.slider(key=lab.LAB_EPS_SLIDER).value == pytest.approx(1 / 255)
    assert not at.exception


def test_lab_uploads_validate_and_attack(model):
    good = mlvis.data.world(0, 96).batch_uint8("test", range(1))[0][0]  # a 96x96 scene: resized to 64x64
    buf = io.BytesIO()
    Image.fromarray(good).save(buf, format="JPEG", quality=95)
    data = buf.getvalue()
    at = open_page(LAB, {lab.LAB_SOURCE: "Upload images", lab.LAB_METHODS: ["BCE", "Linear"]})
    assert not at.exception
    assert "Upload one or more images" in at.info[0].value
    at.file_uploader(key=lab.LAB_UPLOAD).set_value(
        [("scene.jpg", data, "image/jpeg"), ("broken.png", b"\x89PNG\r\n\x1a\nnot really", "image/png")]
    ).run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "broken.png: the image is corrupt or truncated and could not be decoded (Truncated File Read)."
    ]
    assert "scene.jpg: resized from 96×96 to 64×64." in [c.value for c in at.caption]
    loaded = mi.load_image(data, (64, 64), name="scene.jpg")
    recipe = rc.Recipe(MODEL, ("bce", "linear"), lab.DEFAULT_EPS, rc.ImageSource(kind="files", files=("scene.jpg",)))
    want = expected(model, recipe, loaded.array[None])
    m = metrics(at)
    assert (
        m["BCE: flips"] == f"{int(want[0].flips[0, 0])} / 24"
        and m["Linear: flips"] == f"{int(want[1].flips[0, 0])} / 24"
    )
    run = lab_run(at)
    assert run.recipe == recipe and run.names == ("scene.jpg",)
    # the lossless download reloads to the same flips
    png = lab.png16_bytes(run.results[0], 0)
    x = mi.load_image(png, (64, 64)).array
    probs = model.predict_proba(torch.from_numpy(x[None])).numpy()
    assert int(((probs >= 0.5) != run.results[0].clean_pred).sum()) == int(want[0].flips[0, 0])


def test_lab_transfer_and_the_recipe_reruns_from_the_cli(model, tmp_path, capsys):
    at = open_page(LAB, {lab.LAB_TRANSFER: "true", lab.LAB_METHODS: ["BCE", "SLAM"]})
    assert_clean(at)
    run = lab_run(at)
    other = lab.other_model(MODEL, mlvis.list_models())
    assert run.transfer_model == other
    table = next(d.value for d in at.dataframe if f"flips on {other}" in d.value.columns)
    for row, r in zip(table.to_dict("records"), run.results):
        t = mlvis.transfer(r, mlvis.create_model(other, device="cpu"))
        assert row[f"flips on {other}"] == pytest.approx(t.flips[0].mean())
        assert row[f"flips on {MODEL}"] == pytest.approx(r.flips[0].mean())
    # downloads: the CSV and JSON carry the numbers; the config reruns to the same flips
    frame = lab.results_frame(run)
    assert frame["flips"].tolist() == [int(r.flips[0, 0]) for r in run.results]
    assert f"flips_on_{other}" in frame.columns
    doc = json.loads(lab.json_bytes(run))
    assert doc["recipe"] == run.recipe.to_dict() and len(doc["results"]) == 2
    config = tmp_path / "recipe.json"
    config.write_bytes(lab.recipe_bytes(run))
    assert cli.main(["attack", "--config", str(config), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    for r in run.results:
        assert f"per image {r.flips[0].tolist()}" in out
    csv = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert csv[0].startswith("method,eps,image,flips") and len(csv) == 3


def test_lab_explains_what_cannot_run(monkeypatch):
    at = open_page(LAB)
    at.button_group(key=lab.LAB_METHODS).set_value([]).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Choose at least one attack method."]
    monkeypatch.setattr(cache, "lab_artifacts", lambda name, norm="linf": rc.Artifacts(name))  # no artifacts
    at = open_page(LAB, {lab.LAB_METHODS: ["BCE", "CLASS"]})
    assert not at.exception
    assert [e.value for e in at.error] == [
        f"CLASS cannot run: {MODEL} has no flip profile and no flip-up correlation matrix yet. Compute it on the "
        f"Profiles and Label landscape page (or with `mlvis profile --model {MODEL}` / "
        f"`mlvis correlations --model {MODEL}`)."
    ]


def test_recipe_round_trip_and_validation():
    r = rc.Recipe(MODEL, ("bce", "class"), 0.02, rc.ImageSource(kind="files", files=("a.png",)), norm="l2", q=0.25)
    assert rc.Recipe.from_json(r.to_json()) == r
    for bad, message in [
        ({"recipe": "x"}, "This is not an mlvis attack recipe"),
        ({**r.to_dict(), "eps": "big"}, "The recipe's eps must be a number"),
        ({**r.to_dict(), "eps": 2.0}, "ε must be a number above 0 and at most 0.5"),
        ({**r.to_dict(), "methods": []}, "Choose at least one attack method."),
        ({**r.to_dict(), "norm": "l1"}, "The norm must be linf or l2"),
        ({**r.to_dict(), "images": {"source": "web"}}, "images.source must be 'demo' or 'files'"),
        ({**r.to_dict(), "images": {"source": "demo", "count": 99}}, "images.count must lie in 1..16"),
    ]:
        with pytest.raises(ValueError) as e:
            rc.Recipe.from_dict(bad)
        assert message in str(e.value)
    assert "single-label" not in rc.lab_methods() and rc.lab_methods()[:3] == ["bce", "linear", "slam"]


def test_progress_reporter_eta_and_stop():
    clock = iter([0.0, 2.0, 2.0, 4.0, 4.0]).__next__
    state: dict = {}
    rep = jobs.ProgressReporter(state, "stop", "Attacking", clock=clock)
    rep(25, 100)
    assert rep.fraction == 0.25
    assert rep.text(25, 100) == "Attacking: 25% · 2.0 s elapsed · about 6.0 s left"
    state["stop"] = True
    with pytest.raises(jobs.Stopped):
        rep(50, 100)
    assert [jobs.format_seconds(s) for s in (0.42, 12.4, 185, 3720)] == ["0.4 s", "12 s", "3 min 5 s", "1 h 2 min"]


def test_a_finished_run_refines_only_its_own_kind_of_estimate(monkeypatch):
    """A slow sweep must not make the Lab's cheap defaults wait for a click (nor a fast run hide a slow one)."""
    monkeypatch.setattr(jobs, "_observed", lambda seen={}: seen)  # a fresh process-wide table
    monkeypatch.setattr(jobs, "step_seconds", lambda name: 0.004)
    assert jobs.estimate(MODEL, 75, "lab").seconds == pytest.approx(0.3)
    jobs.observe(MODEL, 1000, 600.0, "sweep.table")  # the first run of a kind pays one-time costs: ignored
    assert jobs.estimate(MODEL, 1000, "sweep.table").seconds == pytest.approx(4.0)
    jobs.observe(MODEL, 1000, 60.0, "sweep.table")  # 60 ms per image-step seen in a sweep
    lab_cost = jobs.estimate(MODEL, 75, "lab")
    assert lab_cost.seconds == pytest.approx(0.3) and lab_cost.seconds <= jobs.AUTO_RUN_S
    assert jobs.estimate(MODEL, 1000, "sweep.table").seconds == pytest.approx(60.0)
    jobs.observe(MODEL, 75, 7.0, "lab")  # the Lab's first run (warm-up): ignored
    assert jobs.estimate(MODEL, 75, "lab").seconds == pytest.approx(0.3)
    jobs.observe(MODEL, 75, 0.75, "lab")  # the Lab's own runs: 10 ms, averaged with later ones
    assert jobs.estimate(MODEL, 75, "lab").seconds == pytest.approx(0.75)
    jobs.observe(MODEL, 75, 0.45, "lab")
    assert jobs.estimate(MODEL, 75, "lab").seconds == pytest.approx(0.6)
    jobs.observe(MODEL, 10, 99.0, "lab")  # too small a run to say anything
    assert jobs.estimate(MODEL, 75, "lab").seconds == pytest.approx(0.6)
    assert jobs.estimate("demo-q2l", 75, "lab").seconds == pytest.approx(0.3)


# ----------------------------------------------------------------------------------------------------------------------
# Profiles

PROFILES = "pages/profiles.py"
LANDSCAPE = "pages/landscape.py"
SWEEP = "pages/sweep.py"
HISTOGRAMS = "pages/histograms.py"


def figure(at: AppTest, kind: str) -> dict:
    """The first chart with a trace of ``meta.kind == kind``."""
    for fig in chart_specs(at):
        if any((t.get("meta") or {}).get("kind") == kind for t in fig["data"]):
            return fig
    raise AssertionError(f"no chart with a {kind!r} trace")


def trace(fig: dict, kind: str) -> dict:
    return next(t for t in fig["data"] if (t.get("meta") or {}).get("kind") == kind)


def test_profiles_page_shows_the_profile_and_measures_a_new_one(model):
    shipped = mlvis.profile(model)
    at = open_page(PROFILES, {profiles_page.PROF_EPS: "0.02"})
    assert_clean(at)
    m = metrics(at)
    assert m["ε_max"] == f"{shipped.eps_max:.4f}"
    assert m["E(ε_max)"] == f"{shipped.expected_flips(shipped.eps_max):.2f} / 24"
    fig = figure(at, "fit")
    np.testing.assert_allclose(plotly_array(trace(fig, "points")["y"]), shipped.points)
    np.testing.assert_allclose(plotly_array(trace(fig, "bce")["y"]), shipped.flips_bce)
    grid = at.dataframe[0].value
    np.testing.assert_allclose(grid["ε"], shipped.grid())
    np.testing.assert_allclose(grid["E(ε)"], shipped.expected_flips(shipped.grid()))
    text = " ".join(md.value for md in at.markdown)
    assert f"**E = {shipped.expected_flips(0.02):.2f}** flips" in text and "equation 19" in text
    # measure a small profile on one scene
    at.number_input(key=profiles_page.PROF_N).set_value(1)
    at.number_input(key=profiles_page.PROF_MAX_EPS).set_value(0.05)
    at.number_input(key=profiles_page.PROF_INTERVAL).set_value(5)
    at.run()
    at.button(key=f"{profiles_page.PROF_SECTION}.run").click().run()
    assert_clean(at)
    x, _ = mlvis.data.demo_batch(1)
    mine = mlvis.profile(model, x, max_eps=0.05, interval=5, cache=False)
    if at.radio(key="prof.which") is not None:
        assert at.radio(key="prof.which").value == "computed"
    assert metrics(at)["ε_max"] == f"{mine.eps_max:.4f}"
    np.testing.assert_allclose(plotly_array(trace(figure(at, "fit"), "linear")["y"]), mine.flips_linear)
    cost = at.dataframe[1].value.set_index("passes per image")
    assert cost.loc["backward", "measured (both probes)"] == mine.cost["measured"]["backward"]
    # the look-up's 1/255 button (the shared budget control) sets one 8-bit level, and the URL keeps it
    at.button(key="prof.eight_bit").click().run()
    assert_clean(at)
    text = " ".join(md.value for md in at.markdown)
    assert f"At ε = {1 / 255:.4g}: **E = {mine.expected_flips(1 / 255):.2f}** flips" in text
    assert float(at.query_params[profiles_page.PROF_EPS]) == pytest.approx(1 / 255)


# ----------------------------------------------------------------------------------------------------------------------
# Label landscape


def test_landscape_page_shows_the_matrices_table_ii_and_measures(model):
    up, down = mlvis.correlations(model, direction="up"), mlvis.correlations(model, direction="down")
    at = open_page(LANDSCAPE, {landscape_page.LAND_SCENES: "1000", landscape_page.LAND_MEASURE: "P(column | row)"})
    assert_clean(at)
    for cm in (up, down):
        t = trace(figure(at, f"correlations_{cm.direction}"), f"correlations_{cm.direction}")
        z = plotly_array(t["z"]).astype(float)
        off = ~np.eye(24, dtype=bool)
        np.testing.assert_allclose(z[off], cm.matrix[off])
    stats = mlvis.data.scene_statistics("train", 1000)
    t = trace(figure(at, "cooccurrence_conditional"), "cooccurrence_conditional")
    off = ~np.eye(24, dtype=bool)
    np.testing.assert_allclose(plotly_array(t["z"]).astype(float)[off], stats.conditional[off])
    att = figure(at, "attackability_up")
    np.testing.assert_allclose(plotly_array(trace(att, "attackability_up")["y"]), up.attackability)
    frames = {tuple(d.value.columns)[0]: d.value for d in at.dataframe}
    table = frames["correlation"]
    want = mlvis.analysis.table_ii(up, down, stats.frequencies)
    r = want["flip up"]["attackability vs confidence"]
    assert table.loc[0, "flip up"] == f"{r.r:+.3f}" + ("" if r.significant else "*")
    assert table.loc[0, "flip up p-value"] == pytest.approx(r.p_value)
    # measure both matrices on one scene
    at.number_input(key=landscape_page.LAND_N).set_value(1)
    at.number_input(key=landscape_page.LAND_EPS).set_value(0.001)
    at.run()
    assert "24 labels × 1 images × 2 steps = 48 forward + 48 backward" in " ".join(c.value for c in at.caption)
    at.button(key=f"{landscape_page.LAND_SECTION}.run").click().run()
    assert_clean(at)
    x, _ = mlvis.data.demo_batch(1)
    mine = mlvis.correlations(model, x, eps=0.001, direction="down", cache=False)
    down = mlvis.analysis.correlation_matrices.correlation_image_steps(model, x, 0.001, "down")
    assert f"and {down:,} for flip-down" in " ".join(c.value for c in at.caption) and 0 < down < 48
    z = plotly_array(trace(figure(at, "correlations_down"), "correlations_down")["z"]).astype(float)
    np.testing.assert_allclose(z[off], mine.matrix[off], rtol=1e-6, atol=1e-9)
    assert "measured on this page (1 images" in " ".join(c.value for c in at.caption)


# ----------------------------------------------------------------------------------------------------------------------
# Budget sweep


def test_sweep_page_tables_iv_vi_and_the_other_experiments(model, monkeypatch):
    monkeypatch.setattr(jobs, "AUTO_RUN_S", 0.0)  # only what the test runs
    at = open_page(SWEEP)
    assert_clean(at)
    assert [i.value for i in at.info][:1] == ["Press Run to compute with these settings."]
    at.number_input(key=sweep_page.SWEEP_N).set_value(2)
    at.text_input(key=sweep_page.SWEEP_FRACTIONS).set_value("0.1, 0.05")
    at.button_group(key=sweep_page.SWEEP_METHODS).set_value(["bce", "slam", "class"])
    at.run()
    at.button(key="sweep.table.run").click().run()
    assert_clean(at)
    x, _ = mlvis.data.demo_batch(2)
    arts = rc.model_artifacts(model)
    table = mlvis.evaluate(
        model,
        x,
        ["bce", "slam", ("class", {"gamma": 0.5})],
        (0.05, 0.1),
        profile=arts.profile,
        correlations=arts.correlations(),
    )
    assert table.to_markdown() in [m.value for m in at.markdown]
    fig = figure(at, "method")
    np.testing.assert_allclose(plotly_array(trace(fig, "method")["y"]), table.mean[0])
    # Fig. 8 on its tab
    at.text_input(key=sweep_page.SWEEP_BL_EPS).set_value("0.004, 0.008").run()
    at.button(key="sweep.bl.run").click().run()
    assert_clean(at)
    want = mlvis.analysis.bce_vs_linear(model, x, [0.004, 0.008])
    fig = figure(at, "mean")
    for method in ("bce", "linear"):
        t = next(t for t in fig["data"] if t["meta"] == {"kind": "mean", "method": method})
        np.testing.assert_allclose(plotly_array(t["y"]), want[method][0])
    # a bad list gets a sentence
    at.text_input(key=sweep_page.SWEEP_FRACTIONS).set_value("0.1, lots").run()
    assert not at.exception
    assert "Give the fractions as numbers separated by commas, not '0.1, lots'." in [e.value for e in at.error]


# ----------------------------------------------------------------------------------------------------------------------
# Confidence histograms


def test_histograms_page_counts_the_confidences(model):
    at = open_page(HISTOGRAMS)
    assert not at.exception
    at.number_input(key=histograms_page.HIST_N).set_value(3)
    at.radio(key=histograms_page.HIST_DIRECTION).set_value("down")
    at.button_group(key=histograms_page.HIST_METHODS).set_value(["bce", "linear"])
    at.run()
    at.button(key=f"{histograms_page.HIST_SECTION}.run").click().run()
    assert_clean(at)
    x, _ = mlvis.data.demo_batch(3)
    want = rc.run_recipe(rc.Recipe(MODEL, ("bce", "linear"), 0.01, rc.ImageSource(count=3)), model, x)
    fig = figure(at, "before")
    before = trace(fig, "before")
    assert (
        before["meta"]["counts"]
        == vh.histogram_counts(want[0].clean_probs, want[0].clean_pred, 0.5, "down")["counts"].tolist()
    )
    afters = [t for t in fig["data"] if t["meta"]["kind"] == "after"]
    assert [t["meta"]["method"] for t in afters] == ["BCE", "Linear"]
    for t, r in zip(afters, want):
        h = vh.histogram_counts(r.adv_probs[0], r.clean_pred, 0.5, "down")
        assert t["meta"]["counts"] == h["counts"].tolist() and t["meta"]["flipped"] == h["flipped"]
    rows = at.dataframe[0].value
    np.testing.assert_allclose(rows["mean flips per scene (all labels)"], [r.flips[0].mean() for r in want])


def test_lab_waits_for_run_with_methods_it_cannot_estimate():
    others = rc.unestimated(rc.lab_methods())
    if not others:
        pytest.skip("no related-work method is registered")
    at = open_page(LAB)
    at.button_group(key=lab.LAB_METHODS).set_value(["bce", others[0]]).run()
    assert not at.exception
    cost = next(c.value for c in at.caption if c.value.startswith("Cost:"))
    assert f"{rc.method_title(others[0])} runs its own optimiser, not counted" in cost
    assert "belong to the last run" in " ".join(c.value for c in at.caption)  # the default run stays shown
