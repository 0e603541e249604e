"""AppTests of the Paper figures page: each section draws what the analysis computes, on a demo model and on a
dropped-in random-weight timm model card (no profile, no correlation matrices)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from apptools import plotly_array
from model_files import timm_card
from streamlit.testing.v1 import AppTest

import mlvis
from mlvis.analysis.class_tree import class_tree
from mlvis.analysis.gallery import gallery
from mlvis.analysis.loss_curves import bce_curves, slam_curves
from mlvis.app import figures_page as fp
from mlvis.models import cards
from mlvis.recipe import ImageSource, demo_images

APP = Path(__file__).resolve().parents[1] / "app.py"
PAGE = "pages/figures.py"


def open_page(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=300)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def scene(k: int, size: int = 64) -> np.ndarray:
    return demo_images(ImageSource("demo", "test", 0, k, 1), (size, size))[0]


def traces(spec: dict, kind: str) -> list[dict]:
    return [t for t in spec["data"] if t.get("meta", {}).get("kind") == kind]


def chart(at: AppTest, key: str) -> dict:
    for c in at.get("plotly_chart"):
        if key in c.proto.id:
            return json.loads(c.proto.spec)
    raise AssertionError(f"no chart {key}")


def has_chart(at: AppTest, key: str) -> bool:
    return any(key in c.proto.id for c in at.get("plotly_chart"))


def table_with(at: AppTest, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def markdown(at: AppTest) -> str:
    return " ".join(m.value for m in at.markdown)


def test_demo_model_every_section_draws_the_analysis(fresh_caches):
    at = open_page({fp.FIG_SCENE: "2", fp.TREE_GAMMA: "0.3"})
    assert [h.value for h in at.header][:5] == [
        "Fig. 9 · CLASS's look-ahead tree (Algorithm 3)",
        "Fig. 13 · SLAM's derivative for different p·q (appendix D)",
        "Fig. 17 · The confidence space of three labels (appendix G)",
        "Fig. 19 · BCE and its limits (appendix K)",
        "Fig. 21 · Adversarial examples at the Table IV budgets (appendix M)",
    ]
    model = mlvis.create_model("demo-asl", device="cpu")
    prof = mlvis.profile(model)
    pair = (mlvis.correlations(model, direction="up"), mlvis.correlations(model, direction="down"))
    image = scene(2)
    # Fig. 9: the tree of this image at the default budget (10 % of eps_max), gamma from the URL
    tree = class_tree(model, image, float(prof.grid()[1]), correlations=pair, profile=prof, gamma=0.3)
    shown = {m.label: m.value for m in at.metric}
    assert shown["Subset length"] == str(tree.length) and shown["Trees explored"] == str(len(tree.iterations))
    assert shown["Root (easiest label)"] == tree.labels[tree.root]
    assert " → ".join(f"`{tree.labels[i]}`" for i in tree.subset) in markdown(at)
    ease = table_with(at, "ease P")  # every label's P, easiest first, with its place in the subset
    np.testing.assert_allclose(ease["ease P"].to_numpy(), np.sort(tree.ease)[::-1])
    assert ease["label"].iloc[0] == tree.labels[tree.root] and ease["joins the subset"].iloc[0] == 1
    spec = chart(at, "figs.tree.chart")
    nodes = traces(spec, "nodes")[0]
    assert len(plotly_array(nodes["x"])) == len(tree.nodes(0))
    assert tree.labels[tree.iterations[0]["chosen"]] in spec["layout"]["title"]["text"]
    if len(tree.iterations) > 1:  # the iteration slider redraws that iteration's tree
        at.slider(key=fp.TREE_ITERATION).set_value(2).run()
        spec = chart(at, "figs.tree.chart")
        assert len(plotly_array(traces(spec, "nodes")[0]["x"])) == len(tree.nodes(1))
    # Fig. 13: the derivative of each chosen p·q is slam_curves' data
    at.multiselect(key=fp.SLAM_SHARES).set_value([0.25, 0.75]).run()
    curves = slam_curves((0.25, 0.75))
    spec = chart(at, "figs.slam.chart")
    deriv = {t["meta"]["name"]: plotly_array(t["y"]) for t in traces(spec, "derivative")}
    np.testing.assert_allclose(deriv["p·q = 0.25"], curves.dlogit[0])
    np.testing.assert_allclose(deriv["p·q = 0.75"], curves.dlogit[1])
    peaks = table_with(at, "p·q")
    assert curves.peak_confidence[1] == 1.0  # from p·q = 0.5 on the derivative rises to the edge
    assert peaks["|dL/dx| peaks at confidence"].tolist() == [f"{curves.peak_confidence[0]:.3f}", "the edge (no peak)"]
    # ... and the model's own p·q at a budget joins them (equation 7 read off the profile)
    at.toggle(key=fp.SLAM_MODEL).set_value(True).run()
    eps = float(prof.grid()[1])
    share = round(float(prof.flip_ratio(np.array([eps]))[0]) * 0.5, 4)
    spec = chart(at, "figs.slam.chart")
    assert f"p·q = {share:g}" in {t["meta"]["name"] for t in traces(spec, "derivative")}
    # Fig. 19: BCE's curves and limits over the chosen range
    at.slider(key=fp.BCE_RANGE).set_value((-20.0, 20.0)).run()
    bce = bce_curves(logit_range=(-20.0, 20.0))
    spec = chart(at, "figs.bce.chart")
    loss = {t["meta"]["name"]: plotly_array(t["y"]) for t in traces(spec, "loss")}
    np.testing.assert_allclose(loss["t = 1"], bce.loss[1])
    limits = {t["meta"]["name"]: plotly_array(t["y"]) for t in traces(spec, "asymptote")}
    np.testing.assert_allclose(limits["t = 0"], bce.asymptote[0])
    # Fig. 21: two methods at two of Table IV's fractions, run, and the table shows the gallery's flips
    at.multiselect(key=fp.GAL_METHODS).set_value(["BCE", "CLASS(γ=0)"])
    at.multiselect(key=fp.GAL_FRACTIONS).set_value([0.05, 0.2]).run()
    at.button(key=f"{fp.GAL}.run").click().run()
    assert not at.exception, at.exception
    want = gallery(model, image, ["bce", ("class", {"gamma": 0.0})], eps=list(prof.grid((0.05, 0.2))),
                   profile=prof, correlations=pair)  # fmt: skip
    results = at.session_state[f"{fp.GAL}._results"]
    got = results[next(reversed(results))]["result"]
    np.testing.assert_array_equal(got.adv_8bit, want.adv_8bit)
    table = at.dataframe[-1].value
    assert table["BCE"].tolist() == [str(v) for v in want.flips[0]]
    assert table["CLASS(γ=0)"].tolist() == [str(v) for v in want.flips[1]]
    (img,) = at.get("image")
    assert img.proto.imgs[0].caption.startswith("scene 2: rows are budgets")


@pytest.fixture
def card_folder(tmp_path, monkeypatch, fresh_caches):
    path = tmp_path / "models"
    timm_card(path, name="tiny-figs")
    monkeypatch.setenv(cards.ENV, str(path))
    yield path
    monkeypatch.delenv(cards.ENV)
    cards.sync(force=True)


def test_a_real_model_card_gets_the_tree_and_the_gallery(card_folder):
    at = open_page({"model": "tiny-figs", fp.GAL_EPS: "0.004, 0.008"})
    model = mlvis.create_model("tiny-figs", device="cpu")
    # no correlation matrices: the tree section measures flip-up ones on demo scenes, then draws the tree
    assert any("has no correlation matrices yet" in i.value for i in at.info)
    if not has_chart(at, "figs.tree.chart"):  # the measurement did not run by itself: press Measure
        at.button(key=f"{fp.TREE_CORR}.run").click().run()
        assert not at.exception, at.exception
    assert has_chart(at, "figs.tree.chart")
    up = mlvis.correlations(model, _scenes(fp.CORR_IMAGES), eps=0.005)
    tree = class_tree(model, scene(1), 0.01, correlations=up, length=min(4, model.num_labels))
    shown = {m.label: m.value for m in at.metric}
    assert shown["Subset length"] == str(tree.length) and shown["Root (easiest label)"] == tree.labels[tree.root]
    assert " → ".join(f"`{tree.labels[i]}`" for i in tree.subset) in markdown(at)
    # the gallery offers what runs without a profile (BCE), says why the others do not, and runs at explicit eps
    assert at.multiselect(key=fp.GAL_METHODS).options == ["BCE"]
    assert any("has no flip profile" in c.value for c in at.caption)
    at.button(key=f"{fp.GAL}.run").click().run()
    assert not at.exception, at.exception
    want = gallery(model, scene(1), ["bce"], eps=[0.004, 0.008])
    results = at.session_state[f"{fp.GAL}._results"]
    got = results[next(reversed(results))]["result"]
    np.testing.assert_array_equal(got.adv_8bit, want.adv_8bit)
    assert got.labels == ("cat", "dog", "car", "tree")
    assert at.dataframe[-1].value["BCE"].tolist() == [str(v) for v in want.flips[0]]


def _scenes(n: int) -> np.ndarray:
    return demo_images(ImageSource("demo", "test", 0, 0, n), (64, 64))


def test_an_uploaded_picture_is_the_image_of_the_tree(fresh_caches):
    import io

    from PIL import Image

    from mlvis.data.images import load_image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(7).integers(0, 256, (72, 96, 3), dtype=np.uint8)).save(buf, format="PNG")
    at = open_page({fp.FIG_SOURCE: "upload"})
    assert any(i.value == "Upload a picture to attack." for i in at.info) and not at.metric
    at.file_uploader(key=fp.FIG_UPLOAD).set_value(("pic.png", buf.getvalue(), "image/png")).run()
    assert not at.exception, at.exception
    model = mlvis.create_model("demo-asl", device="cpu")
    pre = mlvis.models.preprocess_for(model.spec)
    x = load_image(buf.getvalue(), (64, 64), fit=pre.fit, interpolation=pre.interpolation).array
    prof = mlvis.profile(model)
    pair = (mlvis.correlations(model, direction="up"), mlvis.correlations(model, direction="down"))
    tree = class_tree(model, x, float(prof.grid()[1]), correlations=pair, profile=prof)
    assert {m.label: m.value for m in at.metric}["Root (easiest label)"] == tree.labels[tree.root]
    assert " → ".join(f"`{tree.labels[i]}`" for i in tree.subset) in markdown(at)


def test_fig17_draws_the_recorded_trajectories_of_this_image(fresh_caches):
    """The confidence-space section attacks the page's image at its budget and draws that run's own recording."""
    from mlvis.analysis.trajectory import pick_labels, record

    at = open_page({fp.FIG_SCENE: "3", "figs.space.eps": "0.03"})
    if not has_chart(at, "figs.space.space"):  # the estimate decides whether it runs by itself
        next(b for b in at.button if b.key == "figs.space.run").click().run()
    assert not at.exception, at.exception
    spec = chart(at, "figs.space.space")
    model = mlvis.create_model("demo-asl", device="cpu")
    rec = record(model, scene(3)[None], ["bce", "slam", "class"], 0.03, keep_images=False)
    picked = list(pick_labels(rec, 0))
    assert spec["layout"]["meta"]["labels"] == picked
    paths = {t["meta"]["method"]: t for t in traces(spec, "trajectory")}
    assert set(paths) == {t.name for t in rec.traces}
    for t in rec.traces:
        got = np.stack([plotly_array(paths[t.name][a]) for a in "xyz"], axis=1)
        assert np.allclose(got, t.probs[:, 0][:, picked], atol=1e-6), t.name
