"""The command line, run in-process on small settings into temporary folders."""

from __future__ import annotations

import json

import torch

import mlvis
from mlvis.cli import main


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
