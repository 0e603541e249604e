"""The CLI on real models: add-model writes a card, models lists it with its source, profile runs on a folder
of photos with the card's preprocessing and caches the profile by the weights' fingerprint."""

from __future__ import annotations

import json

import numpy as np
import pytest
from model_files import timm_card
from PIL import Image

import mlvis
from mlvis.cli import main
from mlvis.models import cards


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv(cards.ENV, str(tmp_path / "models"))
    monkeypatch.setenv("MLVIS_CACHE", str(tmp_path / "cache"))
    yield tmp_path
    monkeypatch.undo()
    cards.sync(force=True)


def test_add_model_models_and_profile_on_photos(env, capsys):
    src = env / "downloads"
    timm_card(src, name="tiny")
    code = main(["add-model", "--family", "timm:mobilenetv3_small_050", "--checkpoint", str(src / "tiny.safetensors"),
                 "--labels", str(src / "tiny.labels.txt"), "--input-size", "64", "--resize", "stretch",
                 "--interpolation", "bilinear", "--name", "tiny-cli", "--source", "a test", "--licence",
                 "none"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "tiny-cli: timm:mobilenetv3_small_050, 4 labels, 64×64, stretch (bilinear)" in out
    folder = env / "models"
    card = json.loads((folder / "tiny-cli.json").read_text())
    assert card["checkpoint"] == "tiny.safetensors" and card["labels"] == "tiny-cli.labels.txt"
    assert (folder / "tiny.safetensors").read_bytes() == (src / "tiny.safetensors").read_bytes()
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "tiny-cli" in listing and f"[card {folder / 'tiny-cli.json'}]" in listing
    # the demo scenes are not a photo model's world
    assert main(["profile", "--model", "tiny-cli", "--images", "2"]) == 2
    assert "tiny-cli was trained on photos, not on the demo scenes; give --image-dir" in capsys.readouterr().err
    photos = env / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (50, 80, 3), dtype=np.uint8)).save(
            photos / f"{i}.png"
        )
    assert (
        main(["profile", "--model", "tiny-cli", "--image-dir", str(photos), "--images", "2", "--max-eps", "0.02"]) == 0
    )
    captured = capsys.readouterr()
    assert "2 image(s) from" in captured.err and "stretched to 64×64 (bilinear)" in captured.err
    assert captured.out.startswith("tiny-cli: eps_max")
    model = mlvis.create_model("tiny-cli", device="cpu")
    assert mlvis.profile(model).labels == 4  # cached under the weights' fingerprint


def test_add_model_refuses_a_card_that_does_not_load(env, capsys):
    src = env / "downloads"
    timm_card(src, name="tiny")
    code = main(["add-model", "--family", "timm:mobilenetv3_small_050", "--checkpoint", str(src / "tiny.safetensors"),
                 "--labels", "voc", "--name", "wrong"])  # fmt: skip
    assert code == 2
    assert "The card was not kept: 20 labels were given but tiny.safetensors has 4 outputs" in capsys.readouterr().err
    assert not (env / "models" / "wrong.json").exists()
    assert main(["add-model", "--family", "asl-tresnet-l"]) == 2
    assert "add-model needs --family and --checkpoint" in capsys.readouterr().err


def test_family_with_checkpoint_on_the_command_line(env, capsys):
    src = env / "downloads"
    timm_card(src, name="tiny")
    code = main(["profile", "--model", "timm:mobilenetv3_small_050", "--checkpoint", str(src / "tiny.safetensors"),
                 "--images", "1"])  # fmt: skip
    assert code == 2 and "was trained on photos" in capsys.readouterr().err
