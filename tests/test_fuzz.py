"""Issue 14 §2: hypothesis fuzzing of the public library functions and of every CLI subcommand.

The only allowed outcomes are success or an :class:`mlvis.MlvisError` (a ``ValueError`` with a sentence),
and for the CLI exit 0 or 2 with no traceback. Everything runs on the cheap demo model with one or two
64x64 images under a small work cap (``MLVIS_MAX_IMAGE_STEPS``), so nothing big runs; about a minute on
one core. ``COUNTS`` collects the cases run, printed at the end (docs/results.md, "Fuzzing").
"""

from __future__ import annotations

import collections
import json
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlvis
from mlvis.cli import main
from mlvis.errors import MlvisError

CAP = 3000  # image-steps: a few hundred milliseconds of the demo model
COUNTS: collections.Counter = collections.Counter()
FUZZ = settings(max_examples=int(os.environ.get("MLVIS_FUZZ_EXAMPLES", "10")), deadline=None, database=None,
                suppress_health_check=list(HealthCheck))  # fmt: skip

hostile = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.sampled_from(["0.5", "no", "", -1, 0, 2.5, 1e6, 1e300, -1e-9, float("nan"), [], [0.1, "x"], {}, (1, 2)]),
    st.lists(st.floats(-2, 2), max_size=3),
)


@pytest.fixture(scope="module", autouse=True)
def _small_cap():
    old = os.environ.get("MLVIS_MAX_IMAGE_STEPS")
    os.environ["MLVIS_MAX_IMAGE_STEPS"] = str(CAP)
    yield
    if old is None:
        os.environ.pop("MLVIS_MAX_IMAGE_STEPS", None)
    else:
        os.environ["MLVIS_MAX_IMAGE_STEPS"] = old
    print(f"\nfuzz cases: {dict(COUNTS)}, total {sum(v for k, v in COUNTS.items() if not k.startswith('!'))}")


@pytest.fixture(scope="module")
def asl():
    return mlvis.create_model("demo-asl")


@pytest.fixture(scope="module")
def x():
    return mlvis.data.demo_batch(2)[0]


def allowed(what: str, call) -> None:
    """Run ``call``: success or an MlvisError with a sentence; anything else fails the test."""
    COUNTS[what] += 1
    try:
        call()
    except MlvisError as e:
        assert str(e).strip() and "Traceback" not in str(e), repr(e)


ATTACK_OPTIONS = ["alpha", "norm", "seed", "max_batch", "memory_budget", "autocast", "q", "p", "gamma", "length",
                  "factor", "branches", "depth", "weights", "max_iter", "abort_early", "overshoot",
                  "max_image_steps"]  # fmt: skip


@FUZZ
@given(method=st.sampled_from(["bce", "linear", "slam", "class", "random", "ml-deepfool", "nope", ""]),
       eps=hostile, options=st.dictionaries(st.sampled_from(ATTACK_OPTIONS), hostile, max_size=3))  # fmt: skip
def test_fuzz_attack(asl, x, method, eps, options):
    allowed("attack", lambda: mlvis.attack(asl, x, method, eps, **options))


@FUZZ
@given(images=st.sampled_from(["x", "none", "int", "nan", "big", "5d", "empty", "1x1"]), eps=hostile)
def test_fuzz_attack_images(asl, x, images, eps):
    bad = {"x": x[:1], "none": None, "int": (x[:1] * 255).to(torch.uint8), "nan": x[:1] * float("nan"),
           "big": x[:1] * 3, "5d": x[None], "empty": x[:0], "1x1": torch.rand(1, 3, 1, 1)}[images]  # fmt: skip
    allowed("attack images", lambda: mlvis.attack(asl, bad, "bce", eps))


@FUZZ
@given(options=st.dictionaries(st.sampled_from(["seed", "alpha", "norm", "progress", "device", "max_batch",
                                                "max_image_steps"]), hostile, max_size=3),
       specs=st.lists(st.one_of(st.sampled_from(["bce", "linear", "slam"]), hostile), max_size=2))  # fmt: skip
def test_fuzz_run_job(asl, x, options, specs):
    from mlvis.attacks import run_job

    allowed("run_job", lambda: run_job(asl, x[:1], specs, 0.002, **options))


@FUZZ
@given(options=st.dictionaries(st.sampled_from(["degree", "alpha", "interval", "max_eps", "rel", "patience"]),
                               hostile, max_size=3))  # fmt: skip
def test_fuzz_profile(asl, x, options):
    allowed("profile", lambda: mlvis.profile(asl, x[:1], cache=False, **options))


@FUZZ
@given(eps=hostile, direction=st.one_of(st.sampled_from(["up", "down"]), hostile),
       alpha=st.one_of(st.none(), hostile))  # fmt: skip
def test_fuzz_correlations(asl, x, eps, direction, alpha):
    allowed("correlations", lambda: mlvis.correlations(asl, x[:1], eps, direction, alpha=alpha, cache=False))


@FUZZ
@given(fractions=st.one_of(hostile, st.lists(st.floats(-1, 2), max_size=2)),
       methods=st.one_of(st.just(("bce", "slam")), st.lists(hostile, max_size=2)))  # fmt: skip
def test_fuzz_evaluate(asl, x, fractions, methods):
    allowed("evaluate", lambda: mlvis.evaluate(asl, x[:1], methods, fractions))


@FUZZ
@given(name=st.one_of(st.sampled_from(["demo-asl", "demo-q2l", "nope", "timm:nope"]), hostile),
       device=st.one_of(st.none(), st.sampled_from(["cpu", "cuda:7", "toaster"]), hostile))  # fmt: skip
def test_fuzz_create_model(name, device):
    allowed("create_model", lambda: mlvis.create_model(name, device=device))


@FUZZ
@given(kind=st.one_of(st.sampled_from(["coco", "voc", "nuswide", "folder"]), hostile),
       path=st.one_of(st.none(), st.sampled_from(["/nonexistent", "/tmp", "/etc/passwd", "."]), hostile))  # fmt: skip
def test_fuzz_open_dataset(kind, path):
    from mlvis.data.datasets import open_dataset

    allowed("open_dataset", lambda: open_dataset(kind, path))


# ------------------------------------------------------------------------------------------------ the CLI

CLI_OPTIONS = {
    "profile": ["--images", "--seed", "--degree", "--interval", "--max-eps", "--device", "--out", "--split"],
    "correlations": ["--images", "--eps", "--direction", "--device", "--out"],
    "evaluate": ["--images", "--fractions", "--methods", "--format", "--device", "--out", "--threshold"],
    "compare-related": ["--images", "--methods", "--profile", "--p", "--q", "--cw-iters", "--lp-basis", "--out"],
    "models": [],
    "attack": ["--images", "--out", "--device"],
}
cli_value = st.one_of(
    st.sampled_from(["0", "1", "-1", "2.5", "inf", "nan", "1e6", "1e300", "9" * 30, "", "x", "/", "/tmp",
                     "/nonexistent/a/b", "bce,nope", "class:gamma=nan", "slam:2", "cuda", "..", "md"]),
    st.text(max_size=6),
)  # fmt: skip


@FUZZ
@given(command=st.sampled_from(sorted(CLI_OPTIONS)), data=st.data())
def test_fuzz_cli(command, data, capsys, tmp_path_factory):
    argv = [command]
    if command == "attack":
        recipe = data.draw(st.dictionaries(st.sampled_from(["recipe", "model", "methods", "eps", "alpha", "norm",
                                                            "q", "gamma", "seed", "images", "options"]),
                                           hostile, max_size=6))  # fmt: skip
        recipe.setdefault("recipe", "mlvis.attack-recipe/1")
        path = tmp_path_factory.mktemp("recipe") / "r.json"
        path.write_text(json.dumps(recipe, default=str))
        argv += ["--config", str(path)]
    elif command != "models":
        argv += ["--model", data.draw(st.sampled_from(["demo-asl", "demo-q2l", "nope"])), "--images", "1"]
    for opt in data.draw(st.lists(st.sampled_from(CLI_OPTIONS[command] or ["--debug"]), max_size=2, unique=True)):
        argv += [opt] if opt == "--debug" else [opt, data.draw(cli_value)]
    argv += ["--max-work", str(CAP)] if data.draw(st.booleans()) else []
    COUNTS[f"cli {command}"] += 1
    try:
        code = main(argv)
    except SystemExit as e:  # argparse refused an argument: its usage line and one sentence
        code = e.code
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
