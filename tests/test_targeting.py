"""CLASS, the random subset, Fig. 7's closest-k targeting and SLAM with a profile, through mlvis.attack."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from attack_models import LinearMultiLabel

import mlvis
from mlvis.analysis import fit_profile
from mlvis.attacks import instance_correlation, normalise_correlations, select_subset
from mlvis.attacks.class_subset import subset_length, target_ease

C = 8


def _toy():
    model = LinearMultiLabel(num_labels=C)
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return model, x


def _profile(e_max=6.0):
    """E rises linearly to e_max flips at eps 0.02, then stays: a known E(eps) for subset lengths."""
    eps = np.linspace(0, 0.04, 21)
    flips = np.minimum(e_max, e_max * eps / 0.02)
    return fit_profile(eps, flips, flips, labels=C, degree=3, patience=3)


def _corr():
    rng = np.random.default_rng(0)
    return rng.normal(size=(C, C)) * 0.01 + np.eye(C) * 0.2


def test_class_attacks_the_selected_subset_of_the_right_length():
    model, x = _toy()
    prof, up = _profile(), _corr()
    eps = [0.002, 0.01]
    res = mlvis.attack(model, x, "class", eps, profile=prof, correlations=up, gamma=0.5)
    assert res.targets.shape == (2, 5, C)
    lengths = [subset_length(prof.expected_flips(e), C) for e in eps]
    assert (res.targets.sum(-1) == np.array(lengths)[:, None]).all()
    # the masks are exactly Algorithm 3's subsets on this image's ease and ICM
    probs = res.clean_probs
    target = (probs < 0.5).astype(float)
    norm_up = normalise_correlations(up)
    down = 1 - norm_up
    np.fill_diagonal(down, 0)
    for k, ln in enumerate(lengths):
        for i in range(5):
            icm = instance_correlation(norm_up, down, target[i])
            chosen = select_subset(target_ease(probs[i], target[i]), icm, ln, 0.5)
            assert set(np.flatnonzero(res.targets[k, i])) == set(chosen.tolist())
    # an untargeted label never moves: its weight is 0 (only through the shared perturbation)
    same = mlvis.attack(model, x, "bce", eps[0], weights=res.targets[0])
    assert np.array_equal(same.adv[0], res.adv[0])


def test_gamma_zero_picks_the_easiest_labels():
    model, x = _toy()
    res = mlvis.attack(model, x, "class", 0.002, correlations=_corr(), length=3, gamma=0.0)
    probs = res.clean_probs
    ease = target_ease(probs, (probs < 0.5).astype(float))
    for i in range(5):
        assert set(np.flatnonzero(res.targets[0, i])) == set(np.argsort(-ease[i], kind="stable")[:3].tolist())


def test_class_with_every_label_is_the_baseline_and_random_has_the_same_length():
    model, x = _toy()
    full = mlvis.attack(model, x, "class", 0.004, correlations=_corr(), length=C)
    bce = mlvis.attack(model, x, "bce", 0.004)
    assert np.array_equal(full.flips, bce.flips) and (full.targets == 1).all()
    prof = _profile()
    rnd = mlvis.attack(model, x, "random", [0.002, 0.01], profile=prof, seed=1)
    cls = mlvis.attack(model, x, "class", [0.002, 0.01], profile=prof, correlations=_corr())
    assert np.array_equal(rnd.targets.sum(-1), cls.targets.sum(-1))
    again = mlvis.attack(model, x, "random", [0.002, 0.01], profile=prof, seed=1)
    other = mlvis.attack(model, x, "random", [0.002, 0.01], profile=prof, seed=2)
    assert np.array_equal(again.targets, rnd.targets) and not np.array_equal(other.targets, rnd.targets)


def test_closest_targets_the_labels_nearest_the_threshold():
    model, x = _toy()
    res = mlvis.attack(model, x, "closest", 0.002, k=2)
    dist = np.abs(res.clean_probs - 0.5)
    for i in range(5):
        assert set(np.flatnonzero(res.targets[0, i])) == set(np.argsort(dist[i], kind="stable")[:2].tolist())


def test_slam_with_a_profile_equals_slam_with_its_p():
    model, x = _toy()
    prof = _profile()
    eps = [0.002, 0.03]
    a = mlvis.attack(model, x, "slam", eps, profile=prof, q=0.5)
    b = mlvis.attack(model, x, "slam", eps, p=[prof.flip_ratio(e) for e in eps], q=0.5)
    assert np.array_equal(a.adv, b.adv)
    assert prof.flip_ratio(0.03) == 1.0  # beyond eps_max: p = 1 (equation 7)
    assert a.config["options"]["profile"]["eps_max"] == prof.eps_max  # the config stays rerunnable


@pytest.mark.parametrize(
    "options, message",
    [
        ({}, "correlations"),
        ({"correlations": np.zeros((3, 3)), "length": 2}, "3 x 3"),
        ({"correlations": _corr()}, "profile"),
        ({"correlations": _corr(), "length": 2, "gamma": 2}, "gamma"),
    ],
)
def test_class_errors_are_clear(options, message):
    model, x = _toy()
    with pytest.raises(ValueError, match=message):
        mlvis.attack(model, x, "class", 0.002, **options)


def test_slam_needs_exactly_one_of_p_and_profile():
    model, x = _toy()
    with pytest.raises(ValueError, match="exactly one"):
        mlvis.attack(model, x, "slam", 0.002)
    with pytest.raises(ValueError, match="exactly one"):
        mlvis.attack(model, x, "slam", 0.002, p=0.1, profile=_profile())
