"""Profile fitting: the convergence rule, recovery of known polynomials, equation 7, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mlvis
from mlvis.analysis.profiles import FlipProfile, convergence_index, fit_profile, probe


def test_convergence_needs_a_run_of_flat_intervals():
    curve = np.array([0, 10, 18, 24, 24.05, 25, 25.02, 25.03, 25.04])
    # gains: 10, 8, 6, .05, .95, .02, .01, .01 -> one flat interval (index 3) is not enough
    assert convergence_index(curve, rel=0.01, patience=3) == 5
    assert convergence_index(curve, rel=0.01, patience=1) == 3
    assert convergence_index(np.array([0, 1, 2, 3, 4.0])) is None
    assert convergence_index(np.array([0, 0, 0, 0.0])) is None  # not started rising: not converged
    # the reference is the first positive gain: nothing flips in the first two intervals here
    assert convergence_index(np.array([0, 0, 0, 5, 9, 9, 9, 9.0]), patience=3) == 4


def test_recovers_a_known_quartic():
    coef = np.array([0.0, 300.0, 1.0e3, 5.0e3, 2.0e4])  # E(eps) rising ever faster: never converges
    eps = np.linspace(0, 0.06, 25)
    truth = np.polynomial.polynomial.polyval(eps, coef)
    profile = fit_profile(eps, truth, truth * 0.8, labels=24, degree=4)
    assert np.allclose(profile.coefficients, coef, rtol=1e-6, atol=1e-6)
    assert profile.settings["converged"] is False and profile.eps_max == pytest.approx(0.06)


def test_fit_uses_the_larger_curve_and_stops_at_convergence():
    eps = np.arange(0, 30) * 0.004
    bce = np.minimum(20.0, 400 * eps)  # rises to 20 at 0.05, then flat
    lin = np.minimum(12.0, 600 * eps)  # faster at first, saturates lower
    profile = fit_profile(eps, bce, lin, labels=24, degree=3, model="toy")
    assert np.array_equal(profile.points, np.maximum(bce, lin))
    assert profile.eps_max == pytest.approx(eps[13])  # the first flat interval, 0.052
    assert profile.settings["converged"] is True
    assert abs(profile.expected_flips(profile.eps_max) - 20) < 1.5


def test_expected_flips_and_p_follow_equation_7():
    profile = fit_profile(np.linspace(0, 0.1, 11), np.linspace(0, 30, 11), np.zeros(11), labels=24, degree=3)
    assert profile.expected_flips(0.0) == 0.0 and profile.expected_flips(-1.0) == 0.0
    assert profile.expected_flips(0.1) == 24.0  # clipped to C
    assert profile.flip_ratio(0.05) == pytest.approx(profile.expected_flips(0.05) / 24)
    assert profile.flip_ratio(0.2) == 1.0 and profile.flip_ratio(0.0) == 0.0
    assert np.allclose(profile.grid(), np.array([0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0]) * profile.eps_max)


def test_json_round_trip(tmp_path):
    eps = np.linspace(0, 0.05, 8)
    profile = fit_profile(eps, 300 * eps, 200 * eps, labels=24, degree=3, model="demo", cost={"forward": 10})
    path = tmp_path / "p.json"
    profile.save(path)
    back = FlipProfile.load(path)
    assert back.model == "demo" and back.cost == {"forward": 10} and back.eps_max == profile.eps_max
    assert np.array_equal(back.coefficients, profile.coefficients)
    with pytest.raises(ValueError, match="not a flip profile"):
        FlipProfile.from_dict({"model": "x"})


@pytest.mark.parametrize(
    "bad", [dict(degree=5), dict(eps=np.zeros(3), flips_bce=np.zeros(3), flips_linear=np.zeros(3))]
)
def test_bad_fits_are_clear_errors(bad):
    kwargs = dict(eps=np.linspace(0, 1, 6), flips_bce=np.arange(6.0), flips_linear=np.arange(6.0), labels=5) | bad
    with pytest.raises(ValueError):
        fit_profile(**kwargs)


# ---------------------------------------------------------------------------------- the probe


def _linear_toy():
    from attack_models import LinearMultiLabel

    model = LinearMultiLabel(num_labels=5)
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return model, x


def test_probe_points_are_exactly_the_engine_attacks_at_those_budgets():
    model, x = _linear_toy()
    p = probe(model, x, interval=3, max_eps=0.2, patience=2)
    eps = list(p["eps"][1:])
    for loss, key in (("bce", "per_image_bce"), ("linear", "per_image_linear")):
        res = mlvis.attack(model, x, loss, eps)
        assert np.array_equal(res.flips, p[key][1:]), loss
    assert p["eps"][1] == pytest.approx(3 / 2560)
    assert p["cost"]["backward"] == 2 * p["steps"]


def test_probe_stops_at_convergence_or_at_max_eps():
    model, x = _linear_toy()
    short = probe(model, x, interval=2, max_eps=0.05, patience=2)
    assert short["converged"] and short["steps"] < 0.05 * 2560
    with pytest.raises(ValueError, match="too few steps"):
        probe(model, x, interval=10, max_eps=0.01)


def test_profile_is_cached_and_served_without_images(tmp_path):
    model, x = _linear_toy()
    with pytest.raises(ValueError, match="No profile"):
        mlvis.profile(model)
    fitted = mlvis.profile(model, x, degree=3, interval=2, max_eps=0.1, patience=2)
    again = mlvis.profile(model)
    assert again.eps_max == fitted.eps_max and np.allclose(again.coefficients, fitted.coefficients)
    assert fitted.cost["measured"]["backward"] == 2 * fitted.cost["steps"]
    assert fitted.cost["equation_19"]["backward"] == pytest.approx(fitted.eps_max * 2560)
    with torch.no_grad():  # other weights: the cached profile is not theirs
        model.weight.add_(1e-3)
    with pytest.raises(ValueError, match="No profile"):
        mlvis.profile(model)


def test_shipped_demo_profiles_load_and_are_sane():
    for name in ("demo-asl", "demo-q2l"):
        prof = mlvis.profile(mlvis.create_model(name, device="cpu"))
        assert prof.model == name and prof.labels == 24 and prof.settings["images"] == 100
        # converged, or stopped at the probe's cap (demo-q2l still gains at eps 0.5: it says so)
        assert prof.settings["converged"] or prof.eps_max == pytest.approx(prof.settings["max_eps"])
        assert prof.per_image_bce.shape == (len(prof.eps), 100)
        assert 0 < prof.expected_flips(0.5 * prof.eps_max) <= prof.expected_flips(prof.eps_max) <= 24
        assert np.all(np.diff(prof.points) > -2)  # the measured curve rises (up to probe noise)
