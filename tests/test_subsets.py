"""The CLASS look-ahead selector, on hand-made matrices and against a plain node-by-node tree."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlvis.attacks.class_subset import select_subset, subset_length, target_ease


def reference_select(ease, icm, length, gamma, branches, depth):
    """Algorithm 3 written the slow way: explicit nodes, breadth-first, first leaf wins ties."""
    C = len(ease)
    chosen = [int(np.argmax(ease))]
    while len(chosen) < length:
        parents = [list(chosen)]
        for _ in range(min(depth, length - len(chosen))):
            children = []
            for s in parents:
                z = sum(icm[:, j] + icm[j, :] for j in s)
                scale = np.abs(z).max()
                zn = z / scale if scale > 0 else np.zeros(C)
                score = gamma * zn + (1 - gamma) * ease
                ranking = [j for j in np.argsort(-score, kind="stable") if j not in s]
                children += [s + [j] for j in ranking[:branches]]
            parents = children
        best, best_value = None, -np.inf
        for s in parents:
            members = sorted(s)  # a set's value must not depend on the order it was built in
            value = gamma * icm[np.ix_(members, members)].sum() + (1 - gamma) * ease[members].sum()
            if value > best_value:
                best, best_value = s, value
        chosen.append(best[len(chosen)])
    return chosen


def test_gamma_zero_picks_the_easiest_labels_in_order():
    ease = np.array([0.2, 1.0, 0.5, 0.9, 0.1])
    icm = np.random.default_rng(0).random((5, 5))
    assert select_subset(ease, icm, 3, gamma=0.0).tolist() == [1, 3, 2]


def test_gamma_one_follows_the_correlations_from_the_root():
    ease = np.array([1.0, 0.9, 0.8, 0.1])
    icm = np.zeros((4, 4))
    icm[0, 3] = icm[3, 0] = 1.0  # label 3 is hard but strongly tied to the root
    assert select_subset(ease, icm, 2, gamma=1.0).tolist() == [0, 3]
    assert select_subset(ease, icm, 2, gamma=0.0).tolist() == [0, 1]


def test_look_ahead_sees_a_pair_that_greedy_misses():
    # from root 0: label 1 looks best alone, but 2 and 3 together are worth far more
    ease = np.array([1.0, 0.5, 0.45, 0.45])
    icm = np.zeros((4, 4))
    icm[0, 1] = icm[1, 0] = 0.3
    icm[0, 2] = icm[2, 0] = 0.25
    icm[2, 3] = icm[3, 2] = 5.0
    greedy = select_subset(ease, icm, 3, gamma=0.5, branches=4, depth=1)
    ahead = select_subset(ease, icm, 3, gamma=0.5, branches=4, depth=2)
    assert greedy.tolist() == [0, 1, 2]
    assert ahead.tolist() == [0, 2, 3]


def test_never_fails_when_every_score_is_non_positive():
    ease = np.zeros(6)
    icm = -np.ones((6, 6))
    out = select_subset(ease, icm, 4, gamma=0.7)
    assert len(out) == 4 and len(set(out.tolist())) == 4
    out = select_subset(np.zeros(3), np.zeros((3, 3)), 3, gamma=0.5)
    assert sorted(out.tolist()) == [0, 1, 2]


@settings(max_examples=60, deadline=None)
@given(
    C=st.integers(2, 9),
    length=st.integers(1, 9),
    gamma=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
    branches=st.integers(1, 4),
    depth=st.integers(1, 4),
    seed=st.integers(0, 10_000),
    signed=st.booleans(),
)
def test_matches_the_node_by_node_tree(C, length, gamma, branches, depth, seed, signed):
    rng = np.random.default_rng(seed)
    ease = rng.random(C)
    icm = rng.normal(size=(C, C)) if signed else rng.random((C, C))
    length = min(length, C)
    out = select_subset(ease, icm, length, gamma, branches, depth)
    assert out.tolist() == reference_select(ease, icm, length, gamma, branches, depth)
    assert len(set(out.tolist())) == length


def test_ease_and_length_helpers():
    probs = np.array([[0.1, 0.6, 0.45]])
    target = np.array([[1.0, 0.0, 1.0]])  # flip the first and last up, the middle down
    assert np.allclose(target_ease(probs, target), [[0.1 / 0.45, 0.4 / 0.45, 1.0]])
    assert subset_length(3.0, 24) == 4 and subset_length(100, 24) == 24 and subset_length(0, 24) == 1


@pytest.mark.parametrize("bad", [dict(gamma=1.5), dict(branches=0), dict(icm=np.zeros((2, 3)))])
def test_bad_arguments(bad):
    kwargs = dict(ease=np.ones(3), icm=np.zeros((3, 3)), length=2) | bad
    with pytest.raises(ValueError):
        select_subset(**kwargs)
