"""The registry and the shipped demo models, judged from the shipped weights (no training here)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import mlvis
from mlvis.analysis import absent_confidence_correlation
from mlvis.data import LABELS, demo_batch, scene_statistics
from mlvis.metrics import mean_average_precision
from mlvis.models import registry
from mlvis.models.demo import card_path, load_demo, weights_path

DEMOS = ["demo-asl", "demo-q2l"]


def test_registry_lists_the_demo_models():
    assert mlvis.list_models("demo-*") == DEMOS
    assert mlvis.list_models("nothing-*") == []


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown model 'resnet9000'.*demo-asl"):
        mlvis.create_model("resnet9000")


def test_register_model_adds_a_factory_and_warns_on_overwrite():
    @mlvis.register_model(name="test-tiny")
    def tiny():
        return load_demo("demo-asl")

    try:
        assert "test-tiny" in mlvis.list_models("test-*")
        assert mlvis.create_model("test-tiny", device="cpu").spec.name == "demo-asl"
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            mlvis.register_model(lambda: None, name="test-tiny")
        assert any("registered twice" in str(x.message) for x in w)
    finally:
        registry._entrypoints.pop("test-tiny", None)


@pytest.mark.parametrize("name", DEMOS)
def test_demo_model_contract(name, demo_models):
    model = demo_models[name]
    assert isinstance(model, mlvis.MultiLabelModel) and not model.training
    assert all(not p.requires_grad for p in model.parameters())
    spec = model.spec
    assert spec.name == name and spec.labels == LABELS and spec.input_size == (64, 64)
    assert spec.threshold == 0.5 and model.device == torch.device("cpu")
    x, _ = demo_batch(3)
    logits = model(x)
    assert logits.shape == (3, len(LABELS)) and logits.dtype == torch.float32
    # normalisation lives inside the wrapper: the raw network sees (x - mean) / std
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    assert torch.allclose(logits, model.net((x - mean) / std), atol=1e-5)
    assert torch.allclose(model.predict_proba(x), torch.sigmoid(logits), atol=1e-6)


@pytest.mark.parametrize("name", DEMOS)
def test_weights_are_small_safetensors(name):
    path = weights_path(name)
    assert path.stat().st_size <= 5 * 2**20
    assert path.read_bytes()[8:9] == b"{"  # safetensors: 8-byte header length, then JSON (no pickle)


def test_missing_weights_say_how_to_reproduce_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="mlvis train-demo --model demo-asl"):
        load_demo("demo-asl", weights_dir=tmp_path)


@pytest.mark.parametrize("name", DEMOS)
def test_held_out_map_from_shipped_weights(name, held_out, held_out_probs):
    m, _ = mean_average_precision(held_out_probs[name], held_out[1])
    assert m >= 0.80
    card = load_demo(name).spec.card
    assert card["test_images"] == 2000
    assert m == pytest.approx(card["test_mAP"], abs=2e-3)  # the card reports what the weights do


@pytest.mark.parametrize("name", DEMOS)
def test_observation_1_training_frequency_predicts_absent_confidence(name, held_out, held_out_probs):
    freq = scene_statistics("train", 6000).frequencies
    obs = absent_confidence_correlation(held_out_probs[name], held_out[1], freq)
    assert obs.r > 0.3  # the bar; r and its p-value are reported in docs/results.md


def test_absent_confidence_correlation_on_a_constructed_case():
    truth = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0]])
    probs = np.array([[0.9, 0.3, 0.1], [0.5, 0.2, 0.05], [0.4, 0.8, 0.02]])
    obs = absent_confidence_correlation(probs, truth, frequencies=np.array([0.5, 0.3, 0.1]))
    assert np.allclose(obs.mean_absent_confidence, [0.45, 0.25, (0.1 + 0.05 + 0.02) / 3])
    assert obs.r > 0.9
    with pytest.raises(ValueError):
        absent_confidence_correlation(probs, np.ones_like(truth), np.ones(3))


def test_card_path_sits_beside_the_weights():
    assert card_path("demo-asl").parent == weights_path("demo-asl").parent
