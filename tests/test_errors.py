"""Issue 14 §2: one error hierarchy, every error a sentence before any work, and a CLI that never shows a
traceback. Each probe of the issue has a test here that failed on the code before it."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

import mlvis
from mlvis import errors
from mlvis.cli import main


@pytest.fixture(scope="module")
def asl():
    return mlvis.create_model("demo-asl")


@pytest.fixture(scope="module")
def x():
    return mlvis.data.demo_batch(2)[0]


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.err


def assert_sentence(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if not line.startswith(("findings", "profile", "attack "))]
    assert len(lines) == 1 and lines[0].endswith("."), err
    for w in words:
        assert w in lines[0], (w, err)


# ----------------------------------------------------------------------------------------- the hierarchy


def test_every_error_class_of_mlvis_is_an_mlvis_error_and_a_value_error():
    from mlvis.data.datasets import DatasetError
    from mlvis.data.images import ImageError
    from mlvis.models.cards import CardError
    from mlvis.models.labels import LabelsError
    from mlvis.models.loading import CheckpointError, ModelTooLargeError, UnsafeCheckpointError
    from mlvis.runs import RunError
    from mlvis.store import StoreError

    for cls in (DatasetError, ImageError, CardError, LabelsError, CheckpointError, ModelTooLargeError,
                UnsafeCheckpointError, RunError, StoreError, errors.InvalidInput, errors.WorkTooLarge):  # fmt: skip
        assert issubclass(cls, mlvis.MlvisError) and issubclass(cls, ValueError), cls
    assert issubclass(ImageError, errors.DataError) and issubclass(CheckpointError, errors.ModelLoadError)
    assert mlvis.errors is errors and "MlvisError" in mlvis.__all__


# ----------------------------------------------------------------------------------------- library probes


@pytest.mark.parametrize(
    ("method", "options", "words"),
    [
        ("bce", {"eps": "0.004"}, "eps must be a number"),
        ("bce", {"eps": ["0.004"]}, "eps must be a number"),
        ("class", {"factor": float("nan")}, "factor must be finite"),
        ("class", {"branches": 2.5}, "branches must be a whole number"),
        ("ml-cw", {"abort_early": "no"}, "abort_early must be True or False"),
        ("ml-deepfool", {"max_iter": 2.5}, "max_iter must be a whole number"),
        ("slam", {"q": "0.5"}, "q must be a number"),
        ("bce", {"seed": 2.5}, "seed must be a whole number"),
        ("bce", {"max_batch": 2.5}, "max_batch must be a whole number"),
        ("bce", {"autocast": "no"}, "autocast must be True or False"),
    ],
)
def test_bad_attack_options_are_sentences_not_silently_wrong_runs(asl, x, method, options, words):
    options = dict(options)
    eps = options.pop("eps", 0.004)
    if method == "class":
        options |= {"correlations": mlvis.correlations(asl, direction="up"), "profile": mlvis.profile(asl)}
    if method == "slam":
        options |= {"profile": mlvis.profile(asl)}
    with pytest.raises(errors.InvalidInput, match=words):
        mlvis.attack(asl, x, method, eps, **options)


def test_a_nan_correlation_matrix_is_refused(asl, x):
    up = mlvis.correlations(asl, direction="up").matrix.copy()
    up[0, 1] = np.nan
    with pytest.raises(errors.InvalidInput, match="NaN or infinite"):
        mlvis.attack(asl, x, "class", 0.004, correlations=up, length=2)


@pytest.mark.parametrize(("name", "size"), [("demo-q2l", (32, 64)), ("demo-asl", (1, 1))])
def test_images_of_a_size_the_model_cannot_take_are_a_sentence(name, size):
    model = mlvis.create_model(name)
    with pytest.raises(errors.InvalidInput, match=rf"takes 64×64 images .* not {size[0]}×{size[1]}"):
        mlvis.attack(model, torch.rand(1, 3, *size), "bce", 0.004)
    with pytest.raises(errors.InvalidInput, match="takes 64×64 images"):
        mlvis.profile(model, torch.rand(1, 3, *size), cache=False)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"degree": 5}, "degree must be 3 or 4"),
        ({"patience": -1}, "patience must be"),
        ({"interval": 2.5}, "interval must be a whole number"),
        ({"max_eps": float("inf")}, "max_eps must be a finite number"),
        ({"alpha": "0.1"}, "alpha must be a number"),
    ],
)
def test_profile_settings_are_checked_before_the_probe_runs(asl, x, options, words):
    calls = []
    t = time.perf_counter()
    with pytest.raises(errors.InvalidInput, match=words):
        mlvis.profile(asl, x, cache=False, progress=lambda *a: calls.append(a), **options)
    assert calls == [] and time.perf_counter() - t < 1.0  # refused before any step ran


# ----------------------------------------------------------------------------------------- CLI probes


def test_cli_max_eps_inf_is_a_sentence(capsys):
    assert_sentence(*run_cli(capsys, "profile", "--model", "demo-asl", "--images", "2", "--max-eps", "inf"),
                    "max_eps")  # fmt: skip


def test_cli_a_device_this_machine_lacks_is_a_sentence(capsys):
    if torch.cuda.is_available():
        assert_sentence(*run_cli(capsys, "profile", "--model", "demo-asl", "--device", "cuda:99"), "GPU")
    else:
        assert_sentence(*run_cli(capsys, "profile", "--model", "demo-asl", "--device", "cuda"), "no usable CUDA GPU")
    assert_sentence(*run_cli(capsys, "evaluate", "--model", "demo-asl", "--device", "toaster"), "not a device")


def test_cli_out_naming_an_existing_folder_for_a_file_is_a_sentence(capsys, tmp_path):
    assert_sentence(*run_cli(capsys, "profile", "--model", "demo-asl", "--out", str(tmp_path)), "is a folder")


def test_cli_compare_related_profile_that_is_a_folder_is_a_sentence(capsys, tmp_path):
    assert_sentence(*run_cli(capsys, "compare-related", "--model", "demo-asl", "--images", "1",
                             "--profile", str(tmp_path)), "folder")  # fmt: skip


def test_cli_a_deeply_nested_recipe_is_a_sentence(capsys, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert_sentence(*run_cli(capsys, "attack", "--config", str(deep)), "nested too deeply")


def test_cli_findings_gamma_step_zero_is_refused_before_any_work(capsys):
    t = time.perf_counter()
    code, err = run_cli(capsys, "findings", "--model", "demo-asl", "--images", "2", "--gamma-step", "0")
    assert_sentence(code, err, "gamma-step")
    assert "findings demo-asl [" not in err and time.perf_counter() - t < 5  # no progress bar: no work ran


def test_cli_unexpected_errors_are_one_sentence_with_where_to_report_and_debug_shows_the_traceback(
    capsys, monkeypatch
):
    import mlvis.cli as cli

    def broken(args):
        raise KeyError("boom")

    help_, add, _ = cli.COMMANDS["models"]
    monkeypatch.setitem(cli.COMMANDS, "models", (help_, add, broken))
    code, err = run_cli(capsys, "models")
    assert code == 1 and "Traceback" not in err and "bug in mlvis" in err and "--debug" in err
    assert len(err.strip().splitlines()) == 1
    code, err = run_cli(capsys, "models", "--debug")
    assert code == 1 and "Traceback" in err and "KeyError" in err
    monkeypatch.setenv("MLVIS_DEBUG", "1")
    assert "Traceback" in run_cli(capsys, "models")[1]


def test_cli_keyboard_interrupt_is_a_sentence_and_exit_130(capsys, monkeypatch):
    import mlvis.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    help_, add, _ = cli.COMMANDS["models"]
    monkeypatch.setitem(cli.COMMANDS, "models", (help_, add, interrupted))
    code, err = run_cli(capsys, "models")
    assert code == 130 and err.strip() == "mlvis models: interrupted."


def test_cli_argument_errors_exit_2_with_a_sentence(capsys):
    with pytest.raises(SystemExit) as e:
        main(["profile", "--model", "demo-asl", "--images", "many"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "invalid int value" in err and "Traceback" not in err


def test_a_recipe_file_too_large_is_refused_before_parsing():
    from mlvis.recipe import MAX_RECIPE_CHARS, Recipe

    with pytest.raises(errors.InvalidInput, match="at most"):
        Recipe.from_json(json.dumps({"pad": "x" * MAX_RECIPE_CHARS}))


# ------------------------------------------------------- the remaining raw ValueErrors (issue 14 §2)


def raw_value_errors(source: str) -> list[int]:
    """The lines of ``source`` that raise a bare ``ValueError`` (called or not) instead of an mlvis.errors class."""
    import ast

    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "ValueError":
                lines.append(node.lineno)
    return sorted(lines)


def test_the_scan_finds_raw_value_errors():
    source = (
        "def f(x):\n    if x:\n        raise ValueError('no')\n    raise ValueError\n    raise InvalidInput('No.')\n"
    )
    assert raw_value_errors(source) == [3, 4]


def test_no_raw_value_error_is_raised_anywhere_in_the_package():
    """Every ``raise`` of a ValueError in mlvis (the library, the CLI, the app's glue in mlvis/app and the
    figures in mlvis/viz) is an mlvis.errors class, so a caller can tell mlvis's refusals from a bug's
    ValueError and every refusal is a sentence of its class."""
    from pathlib import Path

    root = Path(mlvis.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert {"cli.py", "app/page.py", "viz/gallery.py", "attacks/engine.py"} <= {
        p.relative_to(root).as_posix() for p in files
    }
    raw = [f"{p.relative_to(root)}:{line}" for p in files for line in raw_value_errors(p.read_text())]
    assert raw == []


def test_the_former_raw_value_errors_are_sentences_of_their_class():
    from mlvis.data.images import to_batch
    from mlvis.models.spec import ModelSpec
    from mlvis.models.training import TrainConfig

    with pytest.raises(errors.InvalidInput, match=r"^n must be an integer between 0 and \d+, not -1\.$"):
        mlvis.data.demo_batch(-1)
    with pytest.raises(errors.InvalidInput, match=r"^seed must be an integer between 0 and 999, not 1000\.$"):
        mlvis.data.demo_batch(1, seed=1000)
    with pytest.raises(errors.DataError, match=r"^There are no images to stack\.$"):
        to_batch([])
    with pytest.raises(errors.ModelLoadError, match=r"^resize must be one of .*, not 'squash'\.$"):
        ModelSpec(name="x", labels=("a",), input_size=(8, 8), resize="squash")
    with pytest.raises(errors.InvalidInput, match=r"^No training recipe for 'nope'"):
        TrainConfig.for_model("nope")
    from mlvis.models.asl import _side

    with pytest.raises(errors.ModelLoadError, match=r"^asl-tresnet-m takes a square input whose side is a multiple"):
        _side((100, 100), 224, "asl-tresnet-m")
    code, err = run_cli_plain(["evaluate", "--model", "demo-asl", "--images", "1", "--fractions", "x"])
    assert code == 2 and "--fractions must be comma-separated numbers, not 'x'." in err


def run_cli_plain(argv):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        code = main(argv)
    return code, buf.getvalue()


def test_the_former_raw_value_errors_of_the_app_and_the_figures_are_sentences_of_their_class(tmp_path):
    from mlvis import runs, viz
    from mlvis.app import default_view, hyperplane_page, page, state

    probes = [
        (lambda: page.parse_numbers("0.1, lots", "the fractions", 0.0, 1.0), errors.InvalidInput,
         r"^Give the fractions as numbers separated by commas, not '0\.1, lots'\.$"),
        (lambda: page.parse_numbers(" , ", "q", 0.0, 1.0), errors.InvalidInput, r"^Give at least one value for q\.$"),
        (lambda: hyperplane_page.parse_rows("a1,2,3"), errors.InvalidInput,
         r"^Part 1 \('a1,2,3'\) is not of the form name:w1,w2,b\.$"),
        (lambda: hyperplane_page.parse_rows("a:1,2,x"), errors.InvalidInput, r"^Part 1 .* not a number in w1,w2,b\.$"),
        (lambda: hyperplane_page.parse_rows(";"), errors.InvalidInput, r"^The table holds no boundaries; give"),
        (lambda: state.default_model([]), errors.ModelLoadError, r"^No models are registered.*register_model\.$"),
        (lambda: default_view.pick_scene({"a": [1], "b": []}, "a", "b"), errors.InvalidInput,
         r"^Give as many a as b flip counts \(at least one\)\.$"),
        (lambda: viz.upscale_image(np.zeros((4, 4))), errors.DataError,
         r"^An image must be \(3, H, W\) or \(H, W, 3\), not shape \(4, 4\)\.$"),
        (lambda: viz.upscale_image(np.zeros((3, 4, 4)), 0), errors.InvalidInput, r"^The upscaling factor .* not 0\.$"),
        (lambda: viz.confidence_bars([0.1], ["a", "b"], 0.5), errors.InvalidInput,
         r"^Give one confidence per label: got 1 confidences for 2 labels\.$"),
        (lambda: viz.profiles_figure([]), errors.InvalidInput, r"^Give at least one profile to draw\.$"),
        (lambda: viz.matrix_heatmap(np.zeros((2, 3)), ["a", "b"], "t", "up"), errors.InvalidInput,
         r"^The matrix must be 2 × 2 for 2 labels, not of shape \(2, 3\)\.$"),
        (lambda: runs.run_chunks(tmp_path / "run", {"x": object()}, 1, 1, lambda a, b: {}), runs.RunError,
         r"^A run manifest must hold only JSON values .*\(object is not JSON-serialisable\)\.$"),
    ]  # fmt: skip
    for call, cls, words in probes:
        with pytest.raises(cls, match=words) as e:
            call()
        assert str(e.value)[0].isupper() and str(e.value).endswith("."), e.value
