"""Issue 14 §1: one configurable cap on work (image-steps), answered with a sentence naming the cap and
how to raise it, before anything is allocated."""

from __future__ import annotations

import json
import resource
import time

import pytest

import mlvis
from mlvis import errors
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
    with pytest.raises(errors.WorkTooLarge, match=r"over the cap of 1e\+07.*MLVIS_MAX_IMAGE_STEPS"):
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
