"""Fig. 21: the gallery of adversarial examples is, cell for cell, what ``mlvis.attack`` gives at those budgets."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import mlvis
from mlvis.analysis.evaluation import DEFAULT_METHODS
from mlvis.analysis.gallery import PAPER_FIG21_EPS, gallery, gallery_budgets
from mlvis.attacks.plan import as_spec
from mlvis.viz.adversarial_gallery import gallery_factor, gallery_layout, gallery_png, gallery_svg

FRACTIONS = (0.05, 0.1)


@pytest.fixture(scope="module")
def asl():
    model = mlvis.create_model("demo-asl", device="cpu")
    prof, up = mlvis.profile(model), mlvis.correlations(model, direction="up")
    x, _ = mlvis.data.demo_batch(2)
    return model, prof, up, x[1]


@pytest.fixture(scope="module")
def grid(asl):
    model, prof, up, image = asl
    return gallery(model, image, eps_fractions=FRACTIONS, profile=prof, correlations=up)


def test_every_cell_is_the_attack_of_its_method_at_its_budget(asl, grid):
    model, prof, up, image = asl
    np.testing.assert_array_equal(grid.eps, prof.grid(FRACTIONS))  # Table IV's columns: fractions of eps_max
    np.testing.assert_array_equal(grid.fractions, FRACTIONS)
    assert grid.methods == ("BCE", "SLAM(q=0.5)", "Random subset", "CLASS(γ=0)", "CLASS(γ=0.5)", "CLASS(γ=1)")
    for m, method in enumerate(DEFAULT_METHODS):
        spec = as_spec(method)
        needs = mlvis.attacks.methods.get_method(spec.method).needs
        extra = {"profile": prof} if "profile" in needs else {}
        extra |= {"correlations": up} if "correlations" in needs else {}
        res = mlvis.attack(model, image[None], spec.method, list(grid.eps), **spec.options, **extra)
        np.testing.assert_array_equal(grid.adv[m], res.adv[:, 0])
        np.testing.assert_array_equal(grid.adv_8bit[m], res.adv_8bit[:, 0])
        np.testing.assert_array_equal(grid.adv_probs[m], res.adv_probs[:, 0])
        np.testing.assert_array_equal(grid.flips[m], res.flips[:, 0])
        np.testing.assert_array_equal(grid.flips_8bit[m], res.flips_8bit[:, 0])
        for k in range(len(grid.eps)):
            cell = grid.cell(m, k)
            np.testing.assert_array_equal(cell.image_8bit, res.adv_8bit[k, 0])
            clean, after = res.clean_pred[0], res.adv_pred[k, 0]
            assert cell.flipped_up == tuple(res.labels[i] for i in np.flatnonzero(after & ~clean))
            assert cell.flipped_down == tuple(res.labels[i] for i in np.flatnonzero(~after & clean))
            assert len(cell.flipped_up) + len(cell.flipped_down) == cell.flips == res.flips[k, 0]
    np.testing.assert_array_equal(grid.clean, image.numpy())
    assert grid.flips.shape == (6, 2) and grid.flips.sum() > 0  # something flips at these budgets


def test_the_mark_of_a_subset_that_is_every_label(asl):
    model, prof, up, image = asl
    c = model.num_labels
    g = gallery(model, image, ["bce", ("class", {"length": c})], eps=[0.004], profile=prof, correlations=up)
    assert g.same_as_baseline.tolist() == [[False], [True]]
    np.testing.assert_array_equal(g.flips[1], g.flips[0])  # every label targeted: the attack is BCE's
    d = g.to_dict()
    assert d["same_as_baseline"] == [[False], [True]] and d["fractions"] == [pytest.approx(0.004 / prof.eps_max)]


def test_budgets_and_bad_input(asl):
    model, prof, up, image = asl
    eps, fr = gallery_budgets(prof)
    np.testing.assert_array_equal(eps, prof.grid())
    eps, fr = gallery_budgets(None, eps=PAPER_FIG21_EPS)
    assert eps.tolist() == list(PAPER_FIG21_EPS) and np.isnan(fr).all()
    with pytest.raises(ValueError, match="fractions of the model's eps_max"):
        gallery_budgets(None)
    with pytest.raises(ValueError, match="one image"):
        gallery(model, image[None].repeat(2, 1, 1, 1), ["bce"], eps=[0.004])
    with pytest.raises(ValueError, match="non-empty list"):
        gallery(model, image, "bce", eps=[0.004])
    with pytest.raises(ValueError, match="each eps"):
        gallery(model, image, ["bce"], eps=[2.0])
    # methods that read no profile need none when the budgets are explicit
    g = gallery(model, image, ["bce", "linear"], eps=[0.004, 0.008])
    assert np.isnan(g.fractions).all() and g.methods == ("BCE", "Linear")
    frame = g.to_frame()
    assert len(frame) == 4 and frame["flips"].tolist() == g.flips.T.reshape(-1).tolist()


def up2(chw: np.ndarray) -> np.ndarray:
    return chw.transpose(1, 2, 0).repeat(2, 0).repeat(2, 1)


def test_the_slide_shows_each_cells_image_and_flips(grid):
    (width, height), prims = gallery_layout(grid, scale=2)
    tiles = [p for p in prims if p[0] == "image"]
    assert len(tiles) == len(grid.eps) * (1 + len(grid.methods))
    for k in range(len(grid.eps)):
        row = tiles[k * (1 + len(grid.methods)) : (k + 1) * (1 + len(grid.methods))]
        np.testing.assert_array_equal(row[0][5], up2(grid.clean_8bit))
        for m in range(len(grid.methods)):
            np.testing.assert_array_equal(row[m + 1][5], up2(grid.adv_8bit[m, k]))
    texts = [p[3] for p in prims if p[0] == "text"]
    for m in range(len(grid.methods)):
        for k in range(len(grid.eps)):
            n = int(grid.flips[m, k])
            assert any(t.startswith(f"{n} flip") for t in texts)
    frames = [p for p in prims if p[0] == "frame"]
    assert len(frames) == sum(int((grid.flips[:, k] == grid.flips[:, k].max()).sum()) for k in range(2)
                              if grid.flips[:, k].max() > 0)  # fmt: skip
    png = Image.open(io.BytesIO(gallery_png(grid, scale=2)))
    assert png.size == (width, height) and png.mode == "RGB"
    x0, y0 = tiles[1][1], tiles[1][2]  # BCE's tile at the first budget, pixel for pixel in the PNG
    np.testing.assert_array_equal(np.asarray(png)[y0 : y0 + tiles[1][4], x0 : x0 + tiles[1][3]], tiles[1][5])
    svg = gallery_svg(grid, scale=2)
    assert svg.count("<image ") == len(tiles) and "CLASS(γ=0.5)" in svg


def test_the_perturbation_view_uses_one_factor(grid):
    factor = gallery_factor(grid)
    _, prims = gallery_layout(grid, show="perturbation", scale=1)
    tiles = [p[5] for p in prims if p[0] == "image"]
    d = grid.adv_8bit[0, 1].astype(np.float64) / 255 - grid.clean_8bit.astype(np.float64) / 255
    expect = (np.clip(0.5 + factor * d, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)
    np.testing.assert_array_equal(tiles[1 + len(grid.methods) + 1], expect)
    biggest = np.abs(grid.adv_8bit.astype(int) - grid.clean_8bit.astype(int)).max()
    assert factor * biggest / 255 <= 0.5 + 1e-9
    with pytest.raises(ValueError, match="show must be"):
        gallery_layout(grid, show="noise")
    with pytest.raises(ValueError, match="upscaling"):
        gallery_layout(grid, scale=0)


def test_the_q2l_demo_model_too():
    model = mlvis.create_model("demo-q2l", device="cpu")
    prof, up = mlvis.profile(model), mlvis.correlations(model, direction="up")
    x, _ = mlvis.data.demo_batch(1, seed=2)
    g = gallery(model, x[0], ["slam", ("class", {"gamma": 0.5})], (0.05,), profile=prof, correlations=up)
    np.testing.assert_array_equal(g.eps, prof.grid((0.05,)))
    slam = mlvis.attack(model, x, "slam", list(g.eps), profile=prof)
    cls = mlvis.attack(model, x, "class", list(g.eps), profile=prof, correlations=up, gamma=0.5)
    np.testing.assert_array_equal(g.adv_8bit[0], slam.adv_8bit[:, 0])
    np.testing.assert_array_equal(g.adv_8bit[1], cls.adv_8bit[:, 0])
    np.testing.assert_array_equal(g.flips[:, 0], [slam.flips[0, 0], cls.flips[0, 0]])


def test_a_real_model_card_without_artifacts(tmp_path, monkeypatch):
    from model_files import timm_card

    from mlvis.models import cards

    timm_card(tmp_path / "models", name="tiny-gallery")
    monkeypatch.setenv(cards.ENV, str(tmp_path / "models"))
    cards.sync(force=True)
    try:
        model = mlvis.create_model("tiny-gallery", device="cpu")
        x = np.random.default_rng(0).random((3, 64, 64)).astype(np.float32)
        g = gallery(model, x, ["bce", "linear"], eps=[0.004, 0.008])
        res = mlvis.attack(model, x[None], "linear", [0.004, 0.008])
        np.testing.assert_array_equal(g.adv_8bit[1], res.adv_8bit[:, 0])
        assert g.labels == ("cat", "dog", "car", "tree")
        with pytest.raises(ValueError, match="profile"):
            gallery(model, x, ["slam"], eps=[0.004])
    finally:
        monkeypatch.delenv(cards.ENV)
        cards.sync(force=True)
