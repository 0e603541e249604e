"""The evaluation table (Tables IV-VI), its t-tests, the sweeps and transfer, on small analytic runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from attack_models import LinearMultiLabel
from scipy import stats

import mlvis
from mlvis.analysis import bce_vs_linear, fit_profile, flips_vs_targets, gamma_search, q_sweep
from mlvis.attacks import AttackSpec

C = 8


def _setup(n=12):
    model = LinearMultiLabel(num_labels=C)
    x = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    eps = np.linspace(0, 0.04, 21)
    flips = np.minimum(6.0, 6.0 * eps / 0.02)
    prof = fit_profile(eps, flips, flips, labels=C, degree=3)
    corr = np.random.default_rng(1).normal(size=(C, C)) * 0.01
    return model, x, prof, corr


def test_table_matches_separate_runs_and_scipy():
    model, x, prof, corr = _setup()
    methods = ["bce", "linear", ("slam", {"q": 0.5}), ("class", {"gamma": 0.0}), "random"]
    table = mlvis.evaluate(model, x, methods, (0.1, 0.5, 1.0), profile=prof, correlations=corr)
    assert table.methods == ("BCE", "Linear", "SLAM(q=0.5)", "CLASS(γ=0)", "Random subset")
    assert np.allclose(table.eps, np.array([0.1, 0.5, 1.0]) * prof.eps_max)
    assert table.flips.shape == (5, 3, 12)
    lin = mlvis.attack(model, x, "linear", list(table.eps))
    bce = mlvis.attack(model, x, "bce", list(table.eps))
    assert np.array_equal(table.flips[1], lin.flips) and np.array_equal(table.flips[0], bce.flips)
    for k in range(3):
        d = table.flips[1, k] - table.flips[0, k]
        want = stats.ttest_rel(table.flips[1, k], table.flips[0, k]).pvalue if d.std() > 0 else (d[0] == 0) * 1.0
        assert table.p_values[1, k] == pytest.approx(want, nan_ok=True)
    assert np.isnan(table.p_values[0]).all()
    assert np.allclose(table.total, table.mean.sum(1))
    # at eps_max E = 6 flips -> length min(8, floor(9.96)) = 8 = C: CLASS and random equal the baseline (*)
    assert table.same_as_baseline[3, 2] and table.same_as_baseline[4, 2]
    assert not table.same_as_baseline[3, 0]
    md = table.to_markdown()
    assert md.count("\n") == 6 and "| CLASS(γ=0) |" in md and "| * |" in md
    frame = table.to_frame()
    assert len(frame) == 15 and set(frame.columns) >= {"mean", "std", "p_vs_baseline", "best"}


def test_best_is_marked_only_when_significant():
    model, x, prof, corr = _setup()
    table = mlvis.evaluate(model, x, ["bce", "linear"], (0.2,), profile=prof)
    forged = table.__class__(**{**table.__dict__, "flips": np.stack([np.zeros((1, 12)), np.ones((1, 12)) * 2])})
    forged = forged.__class__(**{**forged.__dict__, "p_values": np.array([[np.nan], [0.001]])})
    assert forged.best.tolist() == [[False], [True]]
    weak = forged.__class__(**{**forged.__dict__, "p_values": np.array([[np.nan], [0.2]])})
    assert weak.best.tolist() == [[False], [False]]


def test_sweeps_run_as_jobs_and_agree_with_direct_attacks():
    model, x, prof, corr = _setup(n=6)
    q = q_sweep(model, x, qs=(0.25, 1.0), profile=prof, eps_fractions=(0.2, 1.0))
    assert q.methods == ("BCE", "SLAM(q=0.25)", "SLAM(q=1)")
    best, g = gamma_search(model, x, step=0.5, profile=prof, correlations=corr, eps_fractions=(0.2,))
    assert g.methods[1:] == ("CLASS(γ=0)", "CLASS(γ=0.5)", "CLASS(γ=1)") and best in (0.0, 0.5, 1.0)
    assert g.total[1:][[0.0, 0.5, 1.0].index(best)] == g.total[1:].max()
    targets, mean, std = flips_vs_targets(model, x, [0.002, 0.004], targets=[1, 3, C])
    direct = mlvis.attack(model, x, "closest", [0.002, 0.004], k=3)
    assert np.allclose(mean[:, 1], direct.flips.mean(1))
    assert np.allclose(mean[:, 2], mlvis.attack(model, x, "bce", [0.002, 0.004]).flips.mean(1))  # k = C is BCE
    bl = bce_vs_linear(model, x, [0.002, 0.01])
    assert set(bl) == {"bce", "linear"} and bl["bce"][0].shape == (2,)


def test_duplicate_method_names_are_refused():
    model, x, prof, corr = _setup(n=2)
    with pytest.raises(ValueError, match="share a name"):
        mlvis.evaluate(model, x, ["bce", AttackSpec("slam", {"q": 0.5}), AttackSpec("slam", {"q": 0.5})], profile=prof)


def test_transfer_counts_flips_against_the_other_models_clean_prediction():
    model, x, prof, corr = _setup(n=4)
    res = mlvis.attack(model, x, "bce", [0.002, 0.02])
    self_transfer = mlvis.transfer(res, model)
    assert np.array_equal(self_transfer.flips, res.flips)
    other = LinearMultiLabel(num_labels=C, seed=7)
    t = mlvis.transfer(res, other)
    with torch.no_grad():
        clean = torch.sigmoid(other(torch.as_tensor(res.clean, dtype=torch.float64))) >= 0.5
        adv = torch.sigmoid(other(torch.as_tensor(res.adv[1], dtype=torch.float64))) >= 0.5
    assert np.array_equal(t.flips[1], (clean != adv).sum(1).numpy())
    assert t.summary()["source_flips"] == res.flips.mean(1).tolist()
