"""The scene world: determinism, splits, shapes, and the COCO-like label statistics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mlvis.data import BLOCK, CONTEXTS, LABELS, NUM_LABELS, SceneConfig, SceneWorld, demo_batch, scene_statistics, world
from mlvis.data.scenes import COMMON


def test_same_seed_and_index_give_identical_pixels():
    a_img, a_lab = world(0).scene("train", 123)
    b_img, b_lab = SceneWorld(SceneConfig(seed=0)).scene("train", 123)  # a fresh world object
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert a_img.dtype == np.uint8 and a_img.shape == (64, 64, 3)


def test_scenes_differ_by_index_split_and_world_seed():
    base = world(0).scene("train", 5)[0]
    assert not np.array_equal(base, world(0).scene("train", 6)[0])
    assert not np.array_equal(base, world(0).scene("val", 5)[0])
    assert not np.array_equal(base, world(0).scene("test", 5)[0])
    assert not np.array_equal(base, world(1).scene("train", 5)[0])


def test_split_index_ranges_are_disjoint():
    from mlvis.data.scenes import SPLIT_BASE

    bases = sorted(SPLIT_BASE.values())
    assert all(b - a >= 10**9 for a, b in itertools.pairwise(bases))
    with pytest.raises(ValueError, match="index"):
        world(0).scene("train", 10**9)  # would run into the val range
    with pytest.raises(ValueError, match="split"):
        world(0).scene("holdout", 0)


def test_demo_batch_contract():
    x, y = demo_batch(5, split="test", seed=0)
    assert x.dtype == torch.float32 and x.shape == (5, 3, 64, 64)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert y.shape == (5, NUM_LABELS) and set(torch.unique(y).tolist()) <= {0.0, 1.0}
    assert (y.sum(1) >= 1).all()  # every scene holds at least one labelled object
    img, lab = world(0).scene("test", 3)
    assert torch.equal(x[3], torch.from_numpy(img).permute(2, 0, 1).float() / 255)
    assert torch.equal(y[3], torch.from_numpy(lab).float())


def test_demo_batch_seed_blocks_do_not_overlap():
    x0, _ = demo_batch(3, seed=0)
    x1, _ = demo_batch(3, seed=1)
    first_of_block1 = torch.from_numpy(world(0).scene("test", BLOCK)[0]).permute(2, 0, 1).float() / 255
    assert torch.equal(x1[0], first_of_block1)
    assert not torch.equal(x0, x1)


@pytest.mark.parametrize("bad", [dict(n=-1), dict(n=2.5), dict(n=3, seed=-1), dict(n=3, split="nope")])
def test_demo_batch_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        demo_batch(**bad)


def test_size_is_configurable():
    img, lab = SceneWorld(SceneConfig(size=96)).scene("test", 0)
    assert img.shape == (96, 96, 3) and lab.sum() >= 1


def test_labels_are_many_readable_and_unique():
    assert NUM_LABELS >= 20 and len(set(LABELS)) == NUM_LABELS
    assert all(name.replace(" ", "").isalpha() for name in LABELS)
    # objects differ by shape, colour and texture: some classes differ by texture alone
    assert {"blue square", "blue striped square", "blue checkered square"} <= set(LABELS)


def test_one_to_six_objects_per_scene():
    counts = [len(world(0).describe("train", i)["objects"]) for i in range(300)]
    assert min(counts) >= 1 and max(counts) <= 6
    assert len(set(counts)) >= 5  # the whole range is used


@pytest.fixture(scope="module")
def stats():
    return scene_statistics("train", 6000)


def test_label_frequency_imbalance(stats):
    f = stats.frequencies
    assert f.min() > 0
    assert f.max() / f.min() >= 10


def test_cooccurrence_structure(stats):
    co = stats.cooccurrence
    assert np.array_equal(co, co.T) and np.array_equal(np.diag(co), stats.counts)
    lift = stats.lift
    iu = np.triu_indices(NUM_LABELS, 1)
    supported = co[iu] >= 20  # enough scenes for a stable estimate
    assert ((lift[iu] >= 3) & supported).sum() >= 5
    assert (co[iu] == 0).sum() >= 5  # pairs that never meet


def test_pairs_that_never_meet_are_structural():
    """Two labels that share no context can never appear in one scene, at any sample size."""
    index = {n: i for i, n in enumerate(LABELS)}
    members = [set(COMMON) | set(m) for _, _, m in CONTEXTS]
    stats = scene_statistics("train", 6000)
    for a, b in itertools.combinations(LABELS, 2):
        if not any(a in m and b in m for m in members):
            assert stats.cooccurrence[index[a], index[b]] == 0, (a, b)


def test_statistics_are_exact_counts():
    y = np.stack([world(0).scene("train", i)[1] for i in range(200)]).astype(int)
    s = scene_statistics("train", 200)
    assert np.array_equal(s.counts, y.sum(0)) and np.array_equal(s.cooccurrence, y.T @ y)
