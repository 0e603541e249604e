"""Profiles know their norm (issue 12 §1): the L2 probe is the L2 attack, an L2 attack reads the L2 profile at its
radius, a profile of the other norm is refused with a sentence, the L2 evaluation grid is made of fractions of the
L2 eps_max, and the shipped L2 profiles sit beside the untouched L-inf ones."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest
import torch
from attack_models import LinearMultiLabel

import mlvis
from mlvis import recipe as rc
from mlvis.analysis import artifacts
from mlvis.analysis.profiles import (
    FlipProfile,
    default_max_eps,
    fit_profile,
    images_sha,
    probe,
    probe_image_steps,
)
from mlvis.attacks import Budget, l2_step
from mlvis.errors import ProfileMismatch


def _toy():
    model = LinearMultiLabel(num_labels=5)
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return model, x


def _l2_fit(model, x, **kw):
    return mlvis.profile(model, x, norm="l2", degree=3, interval=2, max_eps=1.0, patience=2, **kw)


# ------------------------------------------------------------------------------------------------ the probe


def test_the_l2_probe_points_are_exactly_the_engine_l2_attacks_at_those_radii():
    model, x = _toy()
    p = probe(model, x, interval=3, max_eps=1.0, patience=2, norm="l2")
    step = l2_step(1 / 2560, 3 * 8 * 8)
    assert p["eps"][1] == pytest.approx(3 * step)  # radii: three L2 steps of a sign step's length
    radii = list(p["eps"][1:])
    for loss, key in (("bce", "per_image_bce"), ("linear", "per_image_linear")):
        res = mlvis.attack(model, x, loss, radii, norm="l2")
        assert np.array_equal(res.flips, p[key][1:]), loss
        assert (res.l2 <= np.asarray(radii)[:, None] + 1e-5).all()  # adv is stored in float32
    linf = probe(model, x, interval=3, max_eps=1.0, patience=2)  # the L-inf probe: sign steps of alpha
    assert linf["eps"][1] == pytest.approx(3 / 2560)


def test_the_l2_defaults_and_the_cost_estimate_count_l2_steps():
    dims = 3 * 64 * 64
    assert default_max_eps("linf") == 0.5
    assert default_max_eps("l2", dims) == pytest.approx(1280 * l2_step(1 / 2560, dims))  # 55.4: the same 1,280 steps
    assert probe_image_steps(10, default_max_eps("l2", dims), 1 / 2560, "l2", dims) == 2 * 10 * 1280
    model, x = _toy()
    with pytest.raises(ValueError, match="max_eps"):  # an L2 radius beyond the [0, 1] cube's diagonal
        mlvis.profile(model, x, norm="l2", max_eps=1e3, cache=False)


# -------------------------------------------------------------------------------------- the profile object


def test_a_profile_records_its_norm_and_old_documents_read_as_linf(tmp_path):
    eps = np.linspace(0, 2.0, 8)
    l2 = fit_profile(eps, 3 * eps, 2 * eps, labels=24, degree=3, norm="l2")
    l2.save(tmp_path / "l2.json")
    assert FlipProfile.load(tmp_path / "l2.json").norm == "l2"
    linf = fit_profile(eps / 10, 30 * eps, 20 * eps, labels=24, degree=3)
    assert linf.norm == "linf" and "norm" not in linf.to_dict()  # written exactly as before profiles had a norm
    assert FlipProfile.from_dict(linf.to_dict()).norm == "linf"
    with pytest.raises(ValueError, match="norm is linf or l2"):
        FlipProfile.from_dict({**linf.to_dict(), "norm": "l1"})


def test_l2_and_linf_profiles_are_cached_side_by_side_and_served_by_norm():
    model, x = _toy()
    with pytest.raises(ValueError, match="No L2 profile.*norm='l2'.*--norm l2"):
        mlvis.profile(model, norm="l2")
    linf = mlvis.profile(model, x, degree=3, interval=2, max_eps=0.1, patience=2)
    with pytest.raises(ValueError, match="No L2 profile"):  # the L-inf one is never served for L2
        mlvis.profile(model, norm="l2")
    l2 = _l2_fit(model, x)
    assert mlvis.profile(model).norm == "linf" and mlvis.profile(model).eps_max == linf.eps_max
    served = mlvis.profile(model, norm="l2")
    assert served.norm == "l2" and served.eps_max == l2.eps_max and served.settings["norm"] == "l2"
    docs = {p.name: json.loads(p.read_text()) for p in mlvis.store.cache_dir().rglob("profile-*.json")}
    schemas = sorted((d["profile"].get("norm", "linf"), d["schema"]) for d in docs.values())
    # an L2 profile is schema 2 (an older mlvis refuses it instead of reading it as L-inf); L-inf stays 1
    assert schemas == [("l2", 2), ("linf", 1)] and artifacts.SCHEMA == 2
    assert all(d["checksum"] == artifacts.checksum(d) for d in docs.values())


# -------------------------------------------------------------------------------------- attacks read it


@pytest.fixture(scope="module")
def asl():
    return mlvis.create_model("demo-asl", device="cpu")


def test_an_l2_slam_attack_reads_the_l2_profile_at_its_radius(asl):
    """The issue's bug: SLAM at an L2 radius of 0.537 with a profile gave exactly p = 1.0 (it read the L-inf
    profile, whose eps_max is 0.234, at 0.537)."""
    x, _ = mlvis.data.demo_batch(2)
    l2prof = mlvis.profile(asl, norm="l2")
    assert l2prof.norm == "l2" and 0.537 < l2prof.eps_max
    res = mlvis.attack(asl, x, "slam", 0.537, norm="l2", profile=l2prof)
    p = l2prof.flip_ratio(0.537)
    assert 0 < p < 1
    same_p = mlvis.attack(asl, x, "slam", 0.537, norm="l2", p=p)
    np.testing.assert_array_equal(res.adv, same_p.adv)
    at_one = mlvis.attack(asl, x, "slam", 0.537, norm="l2", p=1.0)
    assert not np.array_equal(res.adv, at_one.adv)


@pytest.mark.parametrize("method", ["slam", "class", "random"])
def test_a_profile_of_the_other_norm_is_refused_with_a_sentence(asl, method):
    x, _ = mlvis.data.demo_batch(1)
    opts = {"correlations": mlvis.correlations(asl, direction="up")} if method == "class" else {}
    with pytest.raises(ProfileMismatch, match=r"L∞ flip profile, but the attack is L2.*norm='l2'"):
        mlvis.attack(asl, x, method, 0.5, norm="l2", profile=mlvis.profile(asl), **opts)
    with pytest.raises(ProfileMismatch, match=r"L2 flip profile, but the attack is L∞"):
        mlvis.attack(asl, x, method, 0.004, profile=mlvis.profile(asl, norm="l2"), **opts)


def test_the_lab_resolves_the_same_p_from_the_l2_profile(asl):
    recipe = rc.Recipe("demo-asl", ("slam", "class"), 0.01, rc.ImageSource(count=2), norm="l2")
    dims = 3 * 64 * 64
    radius = recipe.budget(dims)
    spec_p = rc.resolve_specs(recipe, asl)[0].options["p"]
    assert spec_p == mlvis.profile(asl, norm="l2").flip_ratio(radius)
    with pytest.raises(ProfileMismatch):  # the recipe's L2 budget with the L-inf profile: refused, not converted
        rc.resolve_specs(recipe, asl, rc.Artifacts("demo-asl", profile=mlvis.profile(asl)))
    assert "no L2 flip profile" in rc.Artifacts("x", norm="l2").problem("slam")
    assert "--norm l2" in rc.Artifacts("x", norm="l2").problem("slam")
    assert Budget.of(radius, "l2", dims).for_profile(mlvis.profile(asl, norm="l2")) == pytest.approx([radius])


# ------------------------------------------------------------------------------------------ the evaluation


def test_the_l2_evaluation_grid_is_made_of_fractions_of_the_l2_eps_max(asl):
    x, _ = mlvis.data.demo_batch(2)
    l2prof = mlvis.profile(asl, norm="l2")
    table = mlvis.evaluate(asl, x, ["bce", "slam"], [0.05, 1.0], norm="l2")
    np.testing.assert_allclose(table.eps, np.array([0.05, 1.0]) * l2prof.eps_max)
    assert table.config["eps_max"] == l2prof.eps_max
    with pytest.raises(ProfileMismatch):
        mlvis.evaluate(asl, x, ["bce"], [0.05], norm="l2", profile=mlvis.profile(asl))


# ------------------------------------------------------------------------------------------ shipped files


SHIPPED_L2_IMAGES = {"demo-asl": 50, "demo-q2l": 20}


def test_the_demo_models_ship_an_l2_profile_beside_the_untouched_linf_one():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("demo-asl", "demo-q2l"):
            model = mlvis.create_model(name, device="cpu")
            doc = artifacts.find("profile", model, norm="l2")
            assert doc is not None and doc["schema"] == 2 and doc["checksum"] == artifacts.checksum(doc)
            assert artifacts.shipped_path("profile", name, "l2").name == f"{name}.profile-l2.json"
            prof = FlipProfile.from_dict(doc["profile"])
            n = SHIPPED_L2_IMAGES[name]  # fewer than the L-inf profiles' 100: see docs/decisions.md
            assert prof.norm == "l2" and prof.settings["images"] == n and prof.settings["converged"]
            assert prof.per_image_bce.shape == (len(prof.eps), n)
            assert doc["settings"]["images_sha"] == images_sha(mlvis.data.demo_batch(n)[0])  # the first n test scenes
            # radii far beyond the L-inf eps_max: an L2 ball of radius r holds L-inf perturbations of r / sqrt(d)
            assert prof.eps_max > 10 * mlvis.profile(model).eps_max
            assert 0 < prof.expected_flips(0.5 * prof.eps_max) <= prof.expected_flips(prof.eps_max) <= 24
            assert mlvis.profile(model).norm == "linf"


LINF_PROFILE_SHA256 = {
    "demo-asl": "7c9c15f0ddad29660c93024da7725ee0144183706ee8ae1417007b4ffd6b4afa",
    "demo-q2l": "970244101e41694cecb423b280d944356a1602899a249a88bc9101e072d931ca",
}
"""The shipped L-inf profiles as they were before profiles knew their norm (the fixed points docs/ was measured on)."""


def test_the_shipped_linf_profiles_are_byte_identical():
    for name, digest in LINF_PROFILE_SHA256.items():
        data = artifacts.shipped_path("profile", name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
        assert b'"norm"' not in data and json.loads(data)["schema"] == 1


# ------------------------------------------------------------------------------------------------ the CLI


def test_the_cli_evaluates_on_the_l2_grid_and_compares_the_norms(tmp_path, capsys, asl):
    from mlvis.cli import main

    l2prof = mlvis.profile(asl, norm="l2")
    argv = ["evaluate", "--model", "demo-asl", "--images", "2", "--methods", "bce,slam", "--fractions", "0.05"]
    assert main([*argv, "--norm", "l2", "--format", "json", "--device", "cpu"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["eps"] == pytest.approx([0.05 * l2prof.eps_max]) and doc["config"]["norm"] == "l2"
    x, _ = mlvis.data.demo_batch(2)
    want = mlvis.evaluate(asl, x, ["bce", "slam"], [0.05], norm="l2")
    assert np.asarray(doc["flips"]).tolist() == want.flips.tolist()
    # Fig. 12 from the CLI: the numbers of linf_vs_l2, and the images written
    out = tmp_path / "fig12"
    assert main(["compare-norms", "--model", "demo-asl", "--images", "1", "--eps", "0.002", "--out", str(out)]) == 0
    cmp = mlvis.analysis.linf_vs_l2(asl, x[:1], 0.002)
    assert cmp.to_markdown() in capsys.readouterr().out
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["radius"] == pytest.approx(cmp.radius) and saved["rows"] == cmp.rows()
    assert len(list((out / "l2").glob("*_eps0_img0.png"))) == 1  # the 16-bit adversarial
    assert len(list(out.glob("perturbation_*_img0_x*.png"))) == 2
