"""AppTests of real models: a card in a temporary models folder shows on the Models page and in the
sidebar, the upload form writes one, and the Lab attacks an uploaded photo through it with chips."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from apptools import metrics
from model_files import timm_card
from PIL import Image
from streamlit.testing.v1 import AppTest

import mlvis
from mlvis import cli
from mlvis.app import lab, models_page
from mlvis.data import images as mi
from mlvis.models import cards

APP = Path(__file__).resolve().parents[1] / "app.py"
LAB = "pages/attack_lab.py"
MODELS = "pages/models.py"


@pytest.fixture
def folder(tmp_path, monkeypatch, fresh_caches):
    path = tmp_path / "models"
    timm_card(path, name="tiny-photos")
    monkeypatch.setenv(cards.ENV, str(path))
    yield path
    monkeypatch.delenv(cards.ENV)
    cards.sync(force=True)


def photo(w: int = 96, h: int = 72) -> bytes:
    rng = np.random.default_rng(5)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def open_app(query: dict | None = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=180)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


def test_a_card_in_the_models_folder_is_in_the_picker_and_on_the_models_page(folder):
    at = open_app()
    assert "tiny-photos" in at.selectbox(key="model").options
    assert any(c.value.startswith("Device: CPU · float32 weights") for c in at.sidebar.caption)
    assert not any("is a real model" in c.value for c in at.sidebar.caption)  # demo-asl is chosen
    at.switch_page(MODELS).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value.set_index("field")
    col = table["tiny-photos"]
    spec = mlvis.create_model("tiny-photos", device="cpu").spec
    assert col["labels"] == "4" and col["input size"] == "64×64"
    assert col["family"] == "timm:mobilenetv3_small_050" and col["resize"] == "stretch (bilinear)"
    assert col["normalisation"].startswith("mean 0.485") and col["source"] == "random weights (tests)"
    assert col["licence"] == "none" and col["parameters"] == f"{spec.card['parameters'] / 1e6:.2f} M"
    assert col["registered by"] == f"card {folder / 'tiny-photos.json'}"
    assert table["demo-asl"]["world"] == "demo" and col["world"] == "photos"
    assert "tiny-photos" in [s.value for s in at.subheader]
    assert "stretched to 64×64 (bilinear)" in " ".join(c.value for c in at.caption)


def test_the_upload_form_writes_a_card_that_loads(folder, tmp_path):
    other = tmp_path / "src"
    timm_card(other, name="uploaded", labels=("sun", "rain", "snow"))
    at = open_app(page=MODELS)
    at.selectbox(key="models.up.family").set_value("timm:<arch>")
    at.text_input(key="models.up.arch").set_value("mobilenetv3_small_050")
    at.text_input(key="models.up.name").set_value("weather")
    at.file_uploader(key="models.up.ckpt").set_value(
        ("weather.safetensors", (other / "uploaded.safetensors").read_bytes(), "application/octet-stream")
    )
    at.selectbox(key="models.up.labels").set_value("a labels file")
    at.file_uploader(key="models.up.labels_file").set_value(("weather.txt", b"sun\nrain\nsnow\n", "text/plain"))
    at.number_input(key="models.up.size").set_value(96)
    at.text_input(key="models.up.source").set_value("a test upload")
    at.button[-1].click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["Added weather (weather.json); pick it in the sidebar."]
    card = json.loads((folder / "weather.json").read_text())
    assert card["family"] == "timm:mobilenetv3_small_050" and card["checkpoint"] == "weather.safetensors"
    assert card["labels"] == "weather.labels.txt" and card["input_size"] == [96, 96]
    model = mlvis.create_model("weather", device="cpu")
    assert model.labels == ("sun", "rain", "snow") and model.spec.input_size == (96, 96)
    # the same upload again is refused with a sentence, and the first card stays as it was
    before = sorted(p.name for p in folder.iterdir())
    at.button[-1].click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        f"The model was not added: A model card named 'weather' is already in {folder}."
    ]
    assert sorted(p.name for p in folder.iterdir()) == before


def test_the_lab_attacks_an_uploaded_photo_through_the_card_with_chips(folder, tmp_path, capsys):
    at = open_app({"model": "tiny-photos", lab.LAB_SOURCE: "Upload images", lab.LAB_METHODS: ["BCE"]}, LAB)
    data = photo()
    at.file_uploader(key=lab.LAB_UPLOAD).set_value([("cat.png", data, "image/png")]).run()
    assert not at.exception, at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "Images are stretched to 64×64 (bilinear), as tiny-photos was evaluated" in captions
    model = mlvis.create_model("tiny-photos", device="cpu")
    x = mi.load_image(data, (64, 64), fit="stretch", interpolation="bilinear").array[None]
    probs = model.predict_proba(torch.from_numpy(x)).numpy()[0]
    text = " ".join(m.value for m in at.markdown)
    assert "tiny-photos sees" in text
    assert models_page.chips_markdown(probs, model.labels, model.threshold) in text  # the chips of this photo
    results = at.session_state[f"{lab.SECTION}._results"]
    run = results[next(reversed(results))]["result"]
    want = mlvis.attack(model, x, "bce", lab.DEFAULT_EPS)
    assert metrics(at)["BCE: flips"] == f"{int(want.flips[0, 0])} / 4"
    assert run.names == ("cat.png",)
    assert "after BCE: " + models_page.chips_markdown(run.results[0].adv_probs[0, 0], model.labels, 0.5) in text
    assert not at.warning  # a photo fits a photo model's world
    # the Lab's recipe reruns from the CLI on the same file, resized by the card's rule: the same flips
    config = tmp_path / "recipe.json"
    config.write_bytes(lab.recipe_bytes(run))
    (tmp_path / "cat.png").write_bytes(data)
    capsys.readouterr()
    assert cli.main(["attack", "--config", str(config), "--images", str(tmp_path)]) == 0
    assert f"per image [{int(want.flips[0, 0])}]" in capsys.readouterr().out


def test_the_out_of_world_sentences(folder):
    at = open_app({"model": "demo-asl", lab.LAB_SOURCE: "Upload images"}, LAB)
    want = "demo-asl knows only the 24 shapes of the demo world; load a real model on the Models page to attack photos."
    assert want in [w.value for w in at.warning]
    at = open_app({"model": "tiny-photos"}, LAB)
    assert any(w.value.startswith("tiny-photos was trained on photos (4 labels such as cat, dog, car)")
               for w in at.warning)  # fmt: skip


@pytest.mark.parametrize(
    "page",
    ["pages/home.py", "pages/histograms.py", "pages/landscape.py", "pages/profiles.py", "pages/sweep.py", MODELS],
)
def test_every_page_opens_on_a_real_model(folder, page):
    at = open_app({"model": "tiny-photos"})
    assert any(c.value.startswith("tiny-photos is a real model (photos)") for c in at.sidebar.caption)
    at.switch_page(page).run()
    assert not at.exception, at.exception


def test_a_card_replaced_under_the_same_name_is_loaded_afresh(folder):
    from mlvis.app import cache

    first = cache.load_model("tiny-photos")
    assert cache.load_model("tiny-photos") is first  # cached while nothing changed
    timm_card(folder, name="tiny-photos", seed=1)  # new weights under the same name
    second = cache.load_model("tiny-photos")
    assert second is not first
    w1, w2 = (next(iter(m.parameters())) for m in (first, second))
    assert not torch.equal(w1, w2)
