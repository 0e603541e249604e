"""Issue 14 §1: one configurable cap on work (image-steps), answered with a sentence naming the cap and
how to raise it, before anything is allocated."""

from __future__ import annotations

import json
import resource
import time

import pytest
import torch

import mlvis
from mlvis import errors
from mlvis.attacks import AttackSpec
from mlvis.attacks.geometry import DEFAULT_ALPHA
from mlvis.attacks.plan import runner_image_steps
from mlvis.cli import main


@pytest.fixture(scope="module")
def asl():
    return mlvis.create_model("demo-asl")


@pytest.fixture(scope="module")
def x():
    return mlvis.data.demo_batch(2)[0]


def test_a_million_eps_is_refused_at_once_without_allocating(asl, x):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    with pytest.raises(errors.WorkTooLarge, match=r"over the cap of 10,000,000.*MLVIS_MAX_IMAGE_STEPS"):
        mlvis.attack(asl, x, "bce", 1e6)
    assert time.perf_counter() - t < 1.0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200_000  # the job asked for 19 GiB of bookkeeping before issue 14


def test_the_cap_can_be_raised_and_lowered_on_purpose(asl, x, monkeypatch):
    n = 2 * 11  # 2 images x round(0.0043 * 2560) steps
    res = mlvis.attack(asl, x, "bce", 0.0043, max_image_steps=n)
    assert res.steps.sum() == n
    with pytest.raises(errors.WorkTooLarge, match="22 image-steps, over the cap of 21"):
        mlvis.attack(asl, x, "bce", 0.0043, max_image_steps=n - 1)
    monkeypatch.setenv("MLVIS_MAX_IMAGE_STEPS", str(n - 1))
    with pytest.raises(errors.WorkTooLarge):
        mlvis.attack(asl, x, "bce", 0.0043)
    monkeypatch.setenv("MLVIS_MAX_IMAGE_STEPS", "lots")
    with pytest.raises(errors.InvalidInput, match="MLVIS_MAX_IMAGE_STEPS must be a positive whole number"):
        mlvis.attack(asl, x, "bce", 0.0043)
    with pytest.raises(errors.InvalidInput, match="max_image_steps must be"):
        mlvis.attack(asl, x, "bce", 0.0043, max_image_steps=0.5)


def test_a_tiny_alpha_is_refused(asl, x):
    with pytest.raises(errors.WorkTooLarge):
        mlvis.attack(asl, x, "bce", 0.5, alpha=1e-8)
    with pytest.raises(errors.WorkTooLarge):
        mlvis.attack(asl, x, "bce", 0.5, alpha=1e-12)


def test_a_profile_over_the_cap_is_refused_before_the_probe(asl, x):
    with pytest.raises(errors.WorkTooLarge, match="This profile"):
        mlvis.profile(asl, x, alpha=1e-9, max_eps=0.5, cache=False)


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--model", "demo-asl", "--images", "2", "--fractions", "1e6"],
        ["correlations", "--model", "demo-asl", "--images", "2", "--eps", "1e6"],
        ["evaluate", "--model", "demo-asl", "--images", "2", "--max-work", "10"],
    ],
)
def test_the_cli_answers_with_the_cap(argv, capsys):
    t = time.perf_counter()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "over the cap" in err and "--max-work" in err and "Traceback" not in err
    assert time.perf_counter() - t < 20


def test_a_recipe_with_a_tiny_alpha_is_refused(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"recipe": "mlvis.attack-recipe/1", "model": "demo-asl", "methods": ["bce"],
                                "eps": 0.5, "alpha": 1e-8, "images": {"source": "demo", "count": 1}}))  # fmt: skip
    assert main(["attack", "--config", str(path)]) == 2
    assert "over the cap" in capsys.readouterr().err


def test_max_work_raises_the_cap_for_one_run_only(capsys, monkeypatch):
    monkeypatch.delenv("MLVIS_MAX_IMAGE_STEPS", raising=False)
    assert main(["evaluate", "--model", "demo-asl", "--images", "1", "--fractions", "0.05", "--max-work", "1e9"]) == 0
    import os

    assert "MLVIS_MAX_IMAGE_STEPS" not in os.environ
    assert main(["evaluate", "--model", "demo-asl", "--images", "1", "--max-work", "zero"]) == 2
    assert "must be a positive whole number of image-steps, not 'zero'" in capsys.readouterr().err


def test_with_the_cap_raised_the_bookkeeping_does_not_grow_with_the_steps(asl, x):
    """Issue 14 §1: 5·10^9 image-steps asked for 19 GiB before the loop's first step; now nothing measurable."""

    class Stop(Exception):
        pass

    def stop(done, total):
        raise Stop(total)

    mlvis.attack(asl, x, "bce", 0.004)  # warm up, so the peak below is the job's own
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(Stop, match="5120000000"):
        mlvis.attack(asl, x, "bce", 1e6, max_image_steps=10**15, progress=stop)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


# ------------------------------------------------------------------- the cap per CLI run, not per call


def test_a_scope_adds_up_its_calls_and_refuses_the_one_that_passes_its_cap(asl, x):
    """Two attacks of 22 image-steps each under a cap of 30 per run: the first runs, the second is refused
    before its first step (its progress callback is never called)."""
    calls = []
    with errors.work_scope(30, "This test run", "--max-work N") as ledger:
        mlvis.attack(asl, x, "bce", 0.0043)
        assert ledger.used == 22
        with pytest.raises(errors.WorkTooLarge, match=r"This test run would run 44 image-steps in all.*22.*"
                                                      r"over the cap of 30 per run.*--max-work N"):  # fmt: skip
            mlvis.attack(asl, x, "bce", 0.0043, progress=lambda d, t: calls.append(d))
    assert calls == [] and ledger.used == 22
    mlvis.attack(asl, x, "bce", 0.0043, max_image_steps=30)  # outside the scope each call has the cap alone


def test_scopes_are_per_thread(asl, x):
    """An app job's ledger is its own: another thread (another session's job) is not charged to it."""
    import threading

    with errors.work_scope(30) as ledger:
        t = threading.Thread(target=lambda: mlvis.attack(asl, x, "bce", 0.0043))
        t.start()
        t.join()
        assert ledger.used == 0


EVAL = ["evaluate", "--model", "demo-asl", "--images", "4", "--methods", "bce,slam", "--fractions", "0.05,0.1"]


@pytest.mark.parametrize("chunked", [False, True])
def test_an_evaluation_over_the_cap_in_total_is_refused_before_any_work(chunked, tmp_path, capsys):
    """BCE + SLAM x 2 budgets x 4 images is 600 image-steps; in chunks of one image each engine call is 150,
    under a cap of 400, but the run is refused as a whole before its first chunk."""
    out = tmp_path / "run"
    extra = ["--out", str(out), "--chunk", "1"] if chunked else []
    assert main([*EVAL, *extra, "--max-work", "400"]) == 2
    cap = capsys.readouterr()
    assert "This mlvis evaluate run would run 600 image-steps in all (2 methods x 2 budgets x 4 images)" in cap.err
    assert "over the cap of 400 per run" in cap.err and "--max-work" in cap.err and "Traceback" not in cap.err
    assert "%" not in cap.err  # no progress bar: nothing ran
    assert not out.exists() or not any(out.rglob("*.npz"))
    assert main([*EVAL, *extra, "--max-work", "599"]) == 2
    assert "600 image-steps in all" in capsys.readouterr().err
    assert main([*EVAL, *extra, "--max-work", "600"]) == 0  # exactly the total: it runs


# ------------------------------------------- runs of many calls are counted as a whole before the first one


def test_a_related_attack_is_counted_by_its_own_iterations_before_any_forward(asl, x):
    """ML-CW, ML-DeepFool and MLA-LP run their own optimisers, which the loop's dry run does not see: their
    ``work`` rules count them (ML-CW binary_steps x max_iter, a Jacobian of the 24 labels per DeepFool / LP
    step), so ten million iterations are refused before the model runs once."""
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.labels, self.threshold = inner, inner.labels, inner.threshold
            self.eval()

        def forward(self, t):
            calls.append(t.shape[0])
            return self.inner(t)

    m = Counting(asl)
    for spec, per_image in (
        (AttackSpec("ml-cw", {"binary_steps": 2, "max_iter": 10**7}), 2 * 10**7),
        (AttackSpec("ml-deepfool", {"max_iter": 10**6}), 25 * 10**6),
        (AttackSpec("mla-lp", {"max_iter": 10**6}), 25 * 10**6),
    ):
        with pytest.raises(errors.WorkTooLarge, match=f"would run {2 * per_image:,} image-steps"):
            mlvis.attacks.run_job(m, x, [spec], [1.0])
    assert calls == []
    assert runner_image_steps([AttackSpec("ml-cw", {"preset": "fast"})], 24, 3) == 3 * 5 * 100
    assert runner_image_steps(["ml-deepfool", "bce"], 24, 2) == 2 * 20 * 25  # the loop's BCE counts 0 here
    with errors.work_scope(10**9) as ledger:
        mlvis.attacks.run_job(m, x, [AttackSpec("ml-deepfool", {"max_iter": 2})], [1.0])
    assert ledger.used == 2 * 2 * 25  # charged as counted: 2 images x 2 steps x (24 labels + 1)


def test_a_comparison_with_the_related_attacks_is_refused_as_a_whole_before_the_first(asl, x):
    """compare_related runs each related attack and then MI-FGSM and SLAM at the budget it reached; today's
    count takes that budget at its largest (the whole pixel range), so a run that cannot fit is refused before
    the first attack, not after it (the ledger refused only the call that passed the cap)."""
    from mlvis.analysis.related import compare_related

    calls = []
    most = 2 * 20 * 25 + mlvis.attacks.plan.image_steps(["bce", "slam"], [1.0], 2, alpha=DEFAULT_ALPHA,
                                                         dims=x[0].numel())  # 2 images: DeepFool, then BCE + SLAM
    with errors.work_scope(most - 1, "This test run") as ledger:
        with pytest.raises(errors.WorkTooLarge, match=f"would run {most:,} image-steps in all .at most: ml-deepfool"):
            compare_related(asl, x, ["ml-deepfool"], progress=lambda d, t: calls.append(d))
    assert calls == [] and ledger.used == 0
    with errors.work_scope(most) as ledger:
        cmp = compare_related(asl, x, ["ml-deepfool"], progress=lambda d, t: calls.append(d))
    assert 0 < ledger.used <= most and cmp.flips.shape == (1, 2)


def test_findings_are_counted_as_a_whole_and_exactly_before_the_first_attack():
    """paper_findings makes three jobs (the table, the gamma search, Fig. 7's target counts): their sum is
    checked before the first, and it is exactly what the jobs then charge."""
    from attack_models import linear_findings_inputs

    from mlvis.analysis.findings import paper_findings

    model, x, inputs = linear_findings_inputs(4)
    with errors.work_scope(10**9) as ledger:
        paper_findings(model, x, gamma_step=0.5, **inputs)
    total = ledger.used
    calls = []
    with errors.work_scope(total - 1, "This findings run") as ledger:
        with pytest.raises(errors.WorkTooLarge, match=f"would run {total:,} image-steps in all .7 methods x 3 budgets"):
            paper_findings(model, x, gamma_step=0.5, progress=lambda d, t: calls.append(d), **inputs)
    assert calls == [] and ledger.used == 0
