"""The command line, run in-process on small settings into temporary folders."""

from __future__ import annotations

import io
import json

import torch

import mlvis
from mlvis.cli import ProgressBar, main


def test_models_lists_the_registry(capsys):
    assert main(["models", "demo-*"]) == 0
    out = capsys.readouterr().out
    assert "demo-asl" in out and "demo-q2l" in out


def test_train_demo_writes_loadable_weights_and_card(tmp_path, capsys):
    args = ["train-demo", "--model", "demo-q2l", "--out", str(tmp_path), "--train-images", "256", "--epochs", "1"]
    assert main(args + ["--eval-images", "64"]) == 0
    card = json.loads((tmp_path / "demo-q2l.json").read_text())
    assert card["training"]["train_images"] == 256 and card["test_images"] == 64
    assert len(card["labels"]) == 24 and 0 <= card["test_mAP"] <= 1
    model = mlvis.create_model("demo-q2l", device="cpu", weights_dir=tmp_path)
    assert model.spec.source.endswith("demo-q2l.safetensors")
    shipped = mlvis.create_model("demo-q2l", device="cpu")
    x, _ = mlvis.data.demo_batch(2)
    assert not torch.allclose(model(x), shipped(x))  # really the freshly trained weights
    assert "test mAP" in capsys.readouterr().out


def test_bad_arguments_are_one_clear_sentence(tmp_path, capsys):
    assert main(["train-demo", "--model", "demo-asl", "--out", str(tmp_path), "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert "epochs must be a positive integer" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_profile_correlations_and_evaluate_commands(tmp_path, capsys):
    base = ["--model", "demo-asl", "--images", "3", "--device", "cpu"]
    assert main(["profile", *base, "--max-eps", "0.03", "--interval", "5", "--out", str(tmp_path / "p.json")]) == 0
    prof = mlvis.analysis.FlipProfile.load(tmp_path / "p.json")
    assert prof.model == "demo-asl" and prof.eps[1] == 5 / 2560 and "eps_max" in capsys.readouterr().out
    assert main(["correlations", *base, "--images", "2", "--eps", "0.002", "--out", str(tmp_path)]) == 0
    up = mlvis.analysis.CorrelationMatrix.load(tmp_path / "demo-asl.correlations-up.json")
    down = mlvis.analysis.CorrelationMatrix.load(tmp_path / "demo-asl.correlations-down.json")
    assert up.matrix.shape == (24, 24) and up.images == 2 and down.direction == "down"
    assert (up.matrix.diagonal() >= 0).all() and (down.matrix.diagonal() <= 0).all()
    out = tmp_path / "eval"
    args = ["evaluate", *base, "--methods", "bce,slam,class:0.5", "--fractions", "0.05,0.1", "--out", str(out)]
    assert main(args) == 0
    table = json.loads((out / "table.json").read_text())
    assert table["methods"] == ["BCE", "SLAM(q=0.5)", "CLASS(γ=0.5)"] and len(table["eps"]) == 2
    assert (out / "table.md").read_text().startswith("| Method |") and (out / "table.csv").exists()
    assert main(["evaluate", *base, "--methods", "bce,class:x"]) == 2
    assert "is not a number" in capsys.readouterr().err


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_bar_redraws_on_a_terminal_and_writes_ten_lines_to_a_log():
    term, log = _Stream(True), _Stream(False)
    for stream in (term, log):
        bar = ProgressBar("job", stream)
        for done in range(0, 1001):
            bar(done, 1000)
    assert term.getvalue().count("\r") == 101 and term.getvalue().count("\n") == 1
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [line.split("%")[0].split()[-1] for line in lines] == [str(p) for p in range(0, 101, 10)]
    assert lines[-1] == f"job [{'#' * 25}] 100% (1000/1000)"
