"""Fig. 9: the trees CLASS explored, recorded from the selector that chose the attacked subset."""

from __future__ import annotations

import numpy as np
import pytest

import mlvis
from mlvis.analysis.class_tree import class_tree
from mlvis.attacks.class_subset import select_subset
from mlvis.viz.class_tree import class_tree_figure, tree_layout


@pytest.fixture(scope="module")
def asl():
    model = mlvis.create_model("demo-asl", device="cpu")
    return model, mlvis.profile(model), mlvis.correlations(model, direction="up")


def test_the_tree_chooses_the_subset_the_attack_attacks(asl):
    model, prof, up = asl
    x, _ = mlvis.data.demo_batch(3)
    eps = float(prof.grid()[1])
    res = mlvis.attack(model, x, "class", eps, profile=prof, correlations=up, gamma=0.5)
    for i in range(3):
        tree = class_tree(model, x[i], eps, profile=prof, correlations=up, gamma=0.5)
        mask = np.zeros(model.num_labels)
        mask[tree.subset] = 1
        np.testing.assert_array_equal(mask, res.targets[0, i])
        assert tree.length == int(res.targets[0, i].sum())
        assert tree.root == int(np.argmax(tree.ease))


def test_recorded_nodes_are_the_search(asl):
    model, prof, up = asl
    x, _ = mlvis.data.demo_batch(1, seed=3)
    tree = class_tree(model, x[0], 0.05, length=7, correlations=up, gamma=0.3, branches=3, depth=2)
    assert len(tree.iterations) == 6 and len(tree.subset) == 7
    for k, it in enumerate(tree.iterations):
        nodes = tree.nodes(k)
        depth = min(2, 6 - k)  # the look-ahead never goes past the subset's length
        levels = [sum(n.level == d for n in nodes) for d in range(depth + 1)]
        assert levels == [3**d for d in range(depth + 1)]  # branches ** level
        leaves = [n for n in nodes if n.level == depth]
        best = max(leaves, key=lambda n: n.objective)
        assert best.on_path and sum(n.on_path for n in leaves) == 1
        # the first label on the best leaf's path is the one this iteration adds
        first = next(n for n in nodes if n.level == 1 and n.on_path)
        assert first.label == it["chosen"] == tree.subset[k + 1]
        assert it["root"] == list(tree.subset[: k + 1])
        # every leaf's objective is O of its set, recomputed from the recorded path
        up_n, down_n = (np.asarray(m) for m in mlvis.attacks.class_subset.correlation_pair(up))
        icm = mlvis.attacks.class_subset.instance_correlation(up_n, down_n, tree.target)
        for leaf in leaves:
            members, node = list(it["root"]), leaf
            while node.parent >= 0:
                members.append(node.label)
                node = nodes[node.parent]
            m = sorted(members)
            o = 0.3 * icm[np.ix_(m, m)].sum() + 0.7 * tree.ease[m].sum()
            assert leaf.objective == pytest.approx(o, rel=1e-12, abs=1e-12)


def test_trace_changes_nothing():
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = int(rng.integers(3, 12))
        ease, icm = rng.random(c), rng.normal(size=(c, c))
        length = int(rng.integers(1, c + 1))
        trace: list = []
        a = select_subset(ease, icm, length, 0.4, 3, 3)
        b = select_subset(ease, icm, length, 0.4, 3, 3, trace=trace)
        np.testing.assert_array_equal(a, b)
        assert [t["chosen"] for t in trace] == list(a[1:])


def test_figure_draws_every_node_and_the_chosen_path(asl):
    model, prof, up = asl
    x, _ = mlvis.data.demo_batch(1)
    tree = class_tree(model, x[0], 0.05, length=4, correlations=up)
    fig = class_tree_figure(tree, 1)
    nodes = next(t for t in fig.data if t.meta["kind"] == "nodes")
    assert len(nodes.x) == len(tree.nodes(1)) == 1 + 4 + 16
    path = next(t for t in fig.data if t.meta["kind"] == "path")
    assert sum(v is None for v in path.x) == 2  # two edges: root -> level 1 -> level 2 (the leaf)
    assert tree.labels[tree.iterations[1]["chosen"]] in fig.layout.title.text
    pos = tree_layout(tree.nodes(1))
    assert sorted(y for (xx, y) in pos.values() if xx == 2) == list(map(float, range(16)))
    with pytest.raises(ValueError, match="iterations 0 to 2"):
        tree.nodes(3)
    single = class_tree(model, x[0], 0.05, length=1, correlations=up)
    assert single.iterations == () and "no tree" in class_tree_figure(single).layout.title.text


def test_export_and_bad_input(asl):
    model, prof, up = asl
    x, _ = mlvis.data.demo_batch(2)
    d = class_tree(model, x[0], 0.05, length=3, correlations=up).to_dict()
    assert len(d["subset"]) == 3 and d["subset"][0] == d["iterations"][0]["root"][0]
    with pytest.raises(ValueError, match="profile"):
        class_tree(model, x[0], 0.05, correlations=up)
    with pytest.raises(ValueError, match="one float image"):
        class_tree(model, x, 0.05, length=2, correlations=up)
    with pytest.raises(ValueError, match="between 1"):
        class_tree(model, x[0], 0.05, length=99, correlations=up)
