"""Model cards in the models folder, the mlvis.models entry point, and the preprocessing a card names."""

from __future__ import annotations

import io
import json
import textwrap

import numpy as np
import pytest
import torch
from model_files import timm_card
from PIL import Image

import mlvis
from mlvis.data.images import load_image
from mlvis.models import CheckpointError, cards, preprocess_for
from mlvis.models.registry import model_source


def test_a_card_dropped_in_the_folder_registers_and_builds(models_dir):
    assert "tiny-photos" not in mlvis.list_models()
    timm_card(models_dir)
    assert "tiny-photos" in mlvis.list_models()  # synced on the next call, no restart
    assert model_source("tiny-photos") == f"card {models_dir / 'tiny-photos.json'}"
    model = mlvis.create_model("tiny-photos", device="cpu")
    spec = model.spec
    assert spec.labels == ("cat", "dog", "car", "tree") and spec.input_size == (64, 64)
    assert (spec.resize, spec.interpolation, spec.world) == ("stretch", "bilinear", "photos")
    assert spec.card["licence"] == "none" and spec.source == "random weights (tests)"
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 4)
    (models_dir / "tiny-photos.json").unlink()
    assert "tiny-photos" not in mlvis.list_models()


def test_card_errors_are_sentences_and_do_not_hide_the_good_cards(models_dir):
    timm_card(models_dir)
    (models_dir / "broken.json").write_text("{not json")
    (models_dir / "odd.json").write_text(json.dumps({"family": "keras:resnet"}))
    (models_dir / "demo.json").write_text(json.dumps({"name": "demo-asl", "family": "timm:resnet10t"}))
    names = mlvis.list_models()
    assert "tiny-photos" in names and "demo-asl" in names and model_source("demo-asl") == "built in"
    errors = cards.card_errors()
    assert any(e.startswith("The model card broken.json is not valid JSON") for e in errors)
    assert any("odd.json: family must be" in e for e in errors)
    assert any("demo.json takes the name 'demo-asl' of a built in model; it is ignored" in e for e in errors)


def test_paths_that_leave_the_models_folder_are_refused(models_dir, tmp_path):
    outside = tmp_path / "elsewhere"
    timm_card(outside, name="far")
    for rel in ("../elsewhere/far.safetensors", str(outside / "far.safetensors")):
        (models_dir / "escape.json").write_text(
            json.dumps({"family": f"timm:{'mobilenetv3_small_050'}", "checkpoint": rel})
        )
        with pytest.raises(CheckpointError, match="leaves the models folder"):
            mlvis.create_model("escape", device="cpu")
    (models_dir / "linked.safetensors").symlink_to(outside / "far.safetensors")
    (models_dir / "escape.json").write_text(json.dumps({"family": "timm:mobilenetv3_small_050",
                                                        "checkpoint": "linked.safetensors"}))  # fmt: skip
    with pytest.raises(CheckpointError, match="symbolic link"):
        mlvis.create_model("escape", device="cpu")
    card = {"family": "timm:mobilenetv3_small_050", "checkpoint": "x.safetensors", "labels": "../labels.txt"}
    (models_dir / "escape.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="the labels file '../labels.txt' leaves the models folder"):
        mlvis.create_model("escape", device="cpu")
    (models_dir / "card-link.json").symlink_to(outside / "far.json")
    mlvis.list_models()
    assert any("card-link.json is a symbolic link" in e for e in cards.card_errors())
    assert "far" not in mlvis.list_models()


def test_write_card_is_atomic_validated_and_registers(models_dir):
    timm_card(models_dir, name="base")
    data = json.loads((models_dir / "base.json").read_text()) | {"name": "copy", "threshold": 0.7}
    path = cards.write_card(data)
    assert path == models_dir / "copy.json" and not list(models_dir.glob(".*.tmp"))
    assert mlvis.create_model("copy", device="cpu").threshold == 0.7
    with pytest.raises(cards.CardError, match="already in"):
        cards.write_card(data)
    with pytest.raises(cards.CardError, match="threshold must be a number between 0 and 1"):
        cards.write_card(data | {"name": "bad", "threshold": 3})
    with pytest.raises(cards.CardError, match="'demo-q2l' is already registered"):
        cards.write_card(data | {"name": "demo-q2l"})
    with pytest.raises(CheckpointError, match="leaves the models folder"):
        cards.write_card(data | {"name": "esc", "checkpoint": "../x.pth"})
    assert not (models_dir / "bad.json").exists()


def test_an_entry_point_of_an_installed_package_registers_its_factory(tmp_path, monkeypatch):
    site = tmp_path / "site"
    dist = site / "mlvis_fake_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mlvis-fake-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mlvis.models]\nfake-plugin = mlvis_fake_plugin:make\n")
    (site / "mlvis_fake_plugin.py").write_text(textwrap.dedent('''
        import torch
        import mlvis

        def make():
            """A linear plugin model."""
            spec = mlvis.ModelSpec(name="fake-plugin", labels=("a", "b"), input_size=(8, 8), world="photos")
            net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
            return mlvis.MultiLabelModel(net, spec)
    '''))  # fmt: skip
    monkeypatch.syspath_prepend(str(site))
    try:
        assert cards.load_entry_points(force=True) == ["fake-plugin"]
        assert "fake-plugin" in mlvis.list_models()
        assert model_source("fake-plugin") == "plugin mlvis-fake-plugin"
        model = mlvis.create_model("fake-plugin", device="cpu")
        assert model.labels == ("a", "b") and not model.training
    finally:
        mlvis.models.registry.unregister_model("fake-plugin")
        monkeypatch.undo()
        cards.load_entry_points(force=True)
    assert "fake-plugin" not in mlvis.list_models()


def _png(w: int, h: int) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_the_cards_preprocessing_is_what_load_image_does(models_dir):
    data = _png(120, 60)
    demo = mlvis.create_model("demo-asl", device="cpu")
    p = preprocess_for(demo.spec)
    assert (p.size, p.fit, p.interpolation) == ((64, 64), "crop", "lanczos")
    # the demo models' path is unchanged: the default arguments are their rule
    assert np.array_equal(load_image(data, p.size, fit=p.fit, interpolation=p.interpolation).array,
                          load_image(data, (64, 64)).array)  # fmt: skip
    timm_card(models_dir)
    spec = mlvis.create_model("tiny-photos", device="cpu").spec
    q = preprocess_for(spec)
    assert (q.fit, q.interpolation) == ("stretch", "bilinear") and q.describe() == "stretched to 64×64 (bilinear)"
    got = load_image(data, q.size, fit=q.fit, interpolation=q.interpolation).array
    want = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((64, 64), Image.Resampling.BILINEAR))
    assert np.array_equal(got, want.transpose(2, 0, 1).astype(np.float32) / 255.0)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        load_image(data, (8, 8), interpolation="cubic-ish")


def test_add_model_writes_three_files_or_none(models_dir, tmp_path):
    src = tmp_path / "src"
    timm_card(src, name="w")
    weights = (src / "w.safetensors").read_bytes()
    data = {"name": "weather", "family": "timm:mobilenetv3_small_050", "input_size": [64, 64]}
    seen = []
    path = cards.add_model(data, "w.safetensors", [weights[:1000], weights[1000:]], "sun\nrain\nfog\nsnow\n",
                           models_dir, progress=lambda f, s: seen.append(f))  # fmt: skip
    assert sorted(p.name for p in models_dir.iterdir()) == ["w.safetensors", "weather.json", "weather.labels.txt"]
    assert path == models_dir / "weather.json" and (models_dir / "w.safetensors").read_bytes() == weights
    assert seen[-1] == 1.0
    assert mlvis.create_model("weather", device="cpu").labels == ("sun", "rain", "fog", "snow")
    # a card whose labels do not fit the head: refused after loading once, and every file it wrote is gone
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(ValueError, match="3 labels were given but v.safetensors has 4 outputs"):
        cards.add_model(data | {"name": "bad"}, "v.safetensors", [weights], "a\nb\nc\n", other)
    assert list(other.iterdir()) == []
    with pytest.raises(cards.CardError, match="must be a plain file name"):
        cards.add_model(data | {"name": "bad"}, "../v.safetensors", [weights], None, other)
