"""The method registry is the one home of a method's knowledge (issue 9, section 1).

The acceptance test: a loss with a numeric parameter registered from a module outside the package
(``tests/plugin_hinge.py``) shows up with its parameter in the Lab (AppTest), in ``mlvis evaluate --methods``
and in the sweep, and every cost estimate equals the engine's own step count. Also: every built-in's
declared kind matches the plan it returns, SLAM's p is the same in the library and the Lab under L2, and
a job allocates nothing proportional to its step count.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import mlvis
from mlvis import cli
from mlvis import recipe as rc
from mlvis.app import jobs, lab, sweep_page
from mlvis.attacks import PER_EPS, SHARED, AttackSpec, Budget, get_method, plan, run_job

APP = Path(__file__).resolve().parents[1] / "app.py"
MODEL = "demo-asl"


@pytest.fixture(scope="module", autouse=True)
def hinge_plugin():
    """Import the plugin (that is all a plugin takes); conftest's registry fixture removes it after this module."""
    import importlib
    import sys

    module = sys.modules.get("plugin_hinge")
    yield importlib.reload(module) if module is not None else importlib.import_module("plugin_hinge")


@pytest.fixture(scope="module")
def model():
    return mlvis.create_model(MODEL, device="cpu")


def engine_steps(model, x, specs, eps, **job) -> int:
    """The image-steps the engine reports as its progress total."""
    seen = []
    run_job(model, x, specs, eps, progress=lambda done, total: seen.append(total), **job)
    return seen[-1] if seen else 0


def test_the_plugin_is_in_the_registry_with_its_option():
    info = get_method("hinge")
    assert info.title == "Hinge" and [o.name for o in info.exposed] == ["margin"]
    assert "hinge" in plan.lab_methods() and plan.method_title("hinge") == "Hinge"
    assert plan.row_name(AttackSpec("hinge", {"margin": 2.0})) == "Hinge(margin=2)"
    assert plan.unestimated(["hinge", "ml-cw"]) == ["ml-cw"] and plan.cost_note(["hinge"]) == ""
    assert plan.parse_method("hinge:2") == plan.parse_method("hinge:margin=2") == AttackSpec("hinge", {"margin": 2.0})
    with pytest.raises(ValueError, match=r"must lie in \[0, 5\]"):
        plan.parse_method("hinge:margin=9")


def test_the_plugin_in_mlvis_evaluate_methods(model, tmp_path, capsys):
    args = ["evaluate", "--model", MODEL, "--images", "2", "--device", "cpu", "--fractions", "0.05"]
    assert cli.main([*args, "--methods", "bce,hinge:margin=2", "--format", "json"]) == 0
    table = json.loads(capsys.readouterr().out)
    x, _ = mlvis.data.demo_batch(2)
    want = mlvis.evaluate(model, x, ["bce", ("hinge", {"margin": 2.0})], (0.05,))
    assert table["methods"] == ["BCE", "Hinge(margin=2)"] == list(want.methods)
    assert table["flips"] == want.flips.tolist()
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    assert "hinge[:margin]" in " ".join(capsys.readouterr().out.split())


def test_the_plugin_in_the_lab_with_its_slider_and_an_exact_cost(model, monkeypatch):
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page("pages/attack_lab.py").run()
    assert not at.exception
    assert "Hinge" in at.button_group(key=lab.LAB_METHODS).options  # shown by its registered title
    assert at.slider(key="lab.hinge.margin").disabled  # until Hinge is chosen
    at.button_group(key=lab.LAB_METHODS).set_value(["bce", "hinge"]).run()
    at.slider(key="lab.hinge.margin").set_value(2.0).run()
    assert not at.exception
    assert at.slider(key="lab.hinge.margin").label == "Hinge's margin"
    cost = next(c.value for c in at.caption if c.value.startswith("Cost:"))
    recipe = rc.Recipe(
        MODEL,
        ("bce", "hinge"),
        lab.DEFAULT_EPS,
        rc.ImageSource(start=lab.default_scene(MODEL)),
        options=(("hinge.margin", 2.0),),
    )
    images = rc.demo_images(recipe.images, model.spec.input_size)
    steps = engine_steps(model, images, rc.resolve_specs(recipe, model), recipe.budget_of(images[0].size))
    assert recipe.image_steps(len(images), images[0].size) == steps
    assert f"{steps:,} image-steps" in cost and "not counted" not in cost
    if not any(b.label == "Run attack" for b in at.button):  # ran at once (cheap): the run is the recipe's
        results = at.session_state[f"{lab.SECTION}._results"]
        run = results[next(reversed(results))]["result"]
        assert run.recipe == recipe
        want = mlvis.attack(model, images, "hinge", lab.DEFAULT_EPS, margin=2.0)
        np.testing.assert_array_equal(run.results[1].adv, want.adv)


def test_the_plugin_in_the_sweep_with_an_exact_cost(model, monkeypatch):
    monkeypatch.setattr(jobs, "AUTO_RUN_S", 0.0)
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page("pages/sweep.py").run()
    assert not at.exception
    at.number_input(key=sweep_page.SWEEP_N).set_value(2)
    at.text_input(key=sweep_page.SWEEP_FRACTIONS).set_value("0.05")
    at.button_group(key=sweep_page.SWEEP_METHODS).set_value(["hinge", "slam"])
    at.slider(key="sweep.hinge.margin").set_value(2.0)
    at.run()
    at.button(key="sweep.table.run").click().run()
    assert not at.exception and not at.error
    x, _ = mlvis.data.demo_batch(2)
    prof = mlvis.profile(model)
    want = mlvis.evaluate(model, x, [("hinge", {"margin": 2.0}), "slam"], (0.05,), profile=prof)
    assert want.methods == ("BCE", "Hinge(margin=2)", "SLAM(q=0.5)")
    assert want.to_markdown() in [m.value for m in at.markdown]
    settings = sweep_page.SweepSettings(("hinge", "slam"), (("hinge.margin", 2.0),), (0.05,), 2)
    specs = plan.evaluation_specs(["bce", *sweep_page.sweep_specs(settings)], prof, None)
    assert sweep_page.sweep_steps(settings, prof.eps_max) == engine_steps(model, x, specs, 0.05 * prof.eps_max)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_dry_run_costs_equal_the_engine_step_counts(model, norm):
    x, _ = mlvis.data.demo_batch(2)
    prof = mlvis.profile(model, norm=norm)  # an attack reads the profile of its own norm (issue 12)
    up = mlvis.correlations(model, direction="up")
    eps = [0.002, 0.005] if norm == "linf" else [0.2, 0.5]
    specs = plan.evaluation_specs(
        ["bce", "linear", "slam", ("slam", {"p": 0.2, "q": 0.3}), "class", "random", ("hinge", {"margin": 0.5}),
         ("closest", {"k": 3}), AttackSpec("bce", {"alpha": 1 / 1000}, name="bce-coarse")],
        prof, up,
    )  # fmt: skip
    dims = int(x[0].numel())
    assert plan.image_steps(specs, eps, 2, alpha=1 / 2560, norm=norm, dims=dims) == engine_steps(
        model, x, specs, eps, norm=norm
    )


def test_every_builtin_declares_the_kind_its_plan_has(model):
    """A method's declared kind (what dry runs count) matches the rows its plan really makes."""
    from mlvis.attacks.rows import RowTable

    x, _ = mlvis.data.demo_batch(2)
    prof, up = mlvis.profile(model), mlvis.correlations(model, direction="up")
    cases = {
        "bce": {}, "linear": {}, "slam": {"profile": prof}, "class": {"profile": prof, "correlations": up},
        "random": {"profile": prof}, "closest": {"k": 2}, "single-label": {"labels": [0, 1]}, "hinge": {},
    }  # fmt: skip
    cases["slam-p"] = {"p": 0.3}
    seen: dict[str, int] = {}
    table_add = RowTable.add

    def spy(self, s, plan_, ctx, *a, **k):
        table_add(self, s, plan_, ctx, *a, **k)
        seen["rows"] = self.num_rows

    for name, opts in cases.items():
        method = name.removesuffix("-p")
        RowTable.add = spy
        try:
            run_job(model, x, [AttackSpec(method, opts)], [0.001, 0.002])
        finally:
            RowTable.add = table_add
        kind = get_method(method).kind_for(opts)
        assert kind in (SHARED, PER_EPS)
        assert seen["rows"] == (2 if kind == SHARED else 4), name


def test_slam_reads_the_profile_at_the_same_budget_in_the_library_and_the_lab(model):
    """Issues 9 and 12's L2 bug: same settings, same p; an L2 attack reads the model's L2 profile at its radius."""
    prof = mlvis.profile(model, norm="l2")
    recipe = rc.Recipe(MODEL, ("slam", "class"), 0.004, rc.ImageSource(count=2), norm="l2")
    images = rc.demo_images(recipe.images, model.spec.input_size)
    dims = int(images[0].size)
    lab_slam, lab_class = rc.run_recipe(recipe, model, images)
    radius = recipe.budget(dims)
    assert radius > 0.2  # the Lab's L-inf width 0.004 as the equal-volume L2 radius
    spec_p = rc.resolve_specs(recipe, model)[0].options["p"]
    assert spec_p == prof.flip_ratio(radius) and 0 < spec_p < 1
    budget = Budget.from_linf(0.004, "l2", dims)
    lib = mlvis.attack(model, images, "slam", budget, profile=prof)
    np.testing.assert_array_equal(lib.adv, lab_slam.adv)
    # the radius given as a number: the same attack
    by_radius = mlvis.attack(model, images, "slam", radius, norm="l2", profile=prof)
    np.testing.assert_array_equal(by_radius.adv, lab_slam.adv)
    corr = rc.model_artifacts(model).correlations()
    cls = mlvis.attack(model, images, "class", budget, profile=prof, correlations=corr)
    np.testing.assert_array_equal(cls.targets, lab_class.targets)
    with pytest.raises(ValueError, match="L∞ flip profile, but the attack is L2"):
        mlvis.attack(model, images, "slam", budget, profile=mlvis.profile(model))


class _Stop(Exception):
    pass


def test_a_job_allocates_nothing_proportional_to_its_step_count(model):
    """``mlvis.attack(m, x, "bce", 1e3)`` (2.56 million steps) starts its loop without host arrays that long
    (the bookkeeping once held a list of one entry per step: about 100 MB here, 100 GB at eps = 1e6)."""
    x, _ = mlvis.data.demo_batch(1)

    def stop(done, total):
        assert total == 2_560_000
        raise _Stop

    mlvis.attack(model, x, "bce", 1e-3, progress=lambda d, t: None)  # warm-up (caches, lazy imports)
    tracemalloc.start()
    try:
        with pytest.raises(_Stop):
            mlvis.attack(model, x, "bce", 1e3, progress=stop)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20, f"{peak / 2**20:.0f} MiB traced before the first step"
