"""Cached and shipped artifacts cannot lie: a bad document is skipped with a warning, never served,
never a crash; the cache folder is checked before work; `mlvis profile --ship` ships the new profile."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
import warnings

import pytest
import torch
from attack_models import LinearMultiLabel

import mlvis
from mlvis.analysis import artifacts
from mlvis.analysis.artifacts import ArtifactWarning
from mlvis.cli import main
from mlvis.models import demo


def _toy(num_labels=5):
    model = LinearMultiLabel(num_labels=num_labels)
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return model, x


def _fit(model, x, **kw):
    return mlvis.profile(model, x, degree=3, interval=2, max_eps=0.1, patience=2, **kw)


def _cached(kind="profile"):
    return sorted(p for p in mlvis.store.cache_dir().rglob(f"{kind}-*.json"))


def _touch_later(path, seconds=5):
    t = time.time() + seconds
    os.utime(path, (t, t))


def test_saved_documents_carry_schema_and_a_checksum():
    model, x = _toy()
    _fit(model, x)
    (path,) = _cached()
    doc = json.loads(path.read_text())
    # the oldest schema that describes it: 1 for an L-inf profile (2 is for L2 profiles, tests/test_l2_profiles.py)
    assert doc["schema"] == 1 == artifacts.schema_for("profile", doc) and doc["checksum"] == artifacts.checksum(doc)
    assert doc["checksum"].startswith("sha256:") and stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize(
    "content",
    ["null", "[]", '"a string"', "42", "{", '{"fingerprint": 1}', "\ufeff\x00garbage"],
    ids=["null", "array", "string", "number", "truncated", "foreign-object", "binary"],
)
def test_a_document_that_is_not_an_artifact_is_skipped_with_a_warning(content):
    model, x = _toy()
    _fit(model, x)
    (path,) = _cached()
    path.write_text(content)
    with pytest.warns(ArtifactWarning, match="Skipped the artifact"):
        with pytest.raises(ValueError, match="No profile"):
            mlvis.profile(model)  # nothing valid left: the clear "compute one" sentence, not a crash


def _tamper(path, edit):
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_a_profile_for_another_label_count_is_not_served():
    """A document for these weights whose payload covers 3 labels is never served for a 5-label model,
    even when its checksum was recomputed to match (what a careless tool or a hand edit produces)."""
    model, x = _toy()
    _fit(model, x)
    (path,) = _cached()

    def three_labels(doc):
        doc["profile"]["labels"] = 3
        doc["checksum"] = artifacts.checksum(doc)

    _tamper(path, three_labels)
    with pytest.warns(ArtifactWarning, match="covers 3 labels, the model has 5"):
        assert artifacts.find("profile", model) is None


def test_a_bad_checksum_or_a_newer_schema_is_not_served():
    model, x = _toy()
    _fit(model, x)
    (path,) = _cached()
    good = path.read_text()
    _tamper(path, lambda d: d["profile"].update(eps_max=d["profile"]["eps_max"] * 2))  # a changed number
    with pytest.warns(ArtifactWarning, match="checksum does not match"):
        assert artifacts.find("profile", model) is None
    path.write_text(good)

    def newer(doc):
        doc["schema"] = artifacts.SCHEMA + 1
        doc["checksum"] = artifacts.checksum(doc)

    _tamper(path, newer)
    with pytest.warns(ArtifactWarning, match="newer than this mlvis reads"):
        assert artifacts.find("profile", model) is None
    path.write_text(good)
    _tamper(path, lambda d: [d.pop("schema"), d.pop("checksum")])  # an old cache file: unverifiable
    with pytest.warns(ArtifactWarning, match="no schema version or checksum"):
        assert artifacts.find("profile", model) is None


def test_a_newer_broken_file_does_not_hide_an_older_valid_one():
    model, x = _toy()
    fitted = _fit(model, x)
    (valid,) = _cached()
    for i, content in enumerate(["null", '{"schema": 1}', valid.read_text().replace('"profile"', '"prof"', 1)]):
        newer = valid.with_name(f"profile-broken{i}.json")
        newer.write_text(content)
        _touch_later(newer, 10 + i)  # the most recently written files
    with pytest.warns(ArtifactWarning):
        served = mlvis.profile(model)
    assert served.eps_max == fitted.eps_max and served.labels == 5


def test_a_correlation_matrix_with_other_label_names_is_not_served():
    model, x = _toy()
    mlvis.correlations(model, x, eps=0.01, direction="up")
    (path,) = _cached("correlations-up")

    def renamed(doc):
        doc["correlations"]["labels"][0] = "not-a-label"
        doc["checksum"] = artifacts.checksum(doc)

    _tamper(path, renamed)
    with pytest.warns(ArtifactWarning, match="label names differ"):
        with pytest.raises(ValueError, match="No flip-up correlation matrix"):
            mlvis.correlations(model, direction="up")


def test_the_shipped_artifacts_load_without_warnings_and_old_shipped_files_still_do(tmp_path, monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("demo-asl", "demo-q2l"):
            model = mlvis.create_model(name, device="cpu")
            for kind in ("profile", "correlations-up", "correlations-down"):
                doc = artifacts.find(kind, model)
                assert doc["schema"] == 1 and doc["checksum"] == artifacts.checksum(doc)
    # a shipped document written before the schema (no schema, no checksum) is part of the package: served
    for f in demo.WEIGHTS_DIR.glob("demo-asl.*"):
        shutil.copy(f, tmp_path / f.name)
    old = json.loads((tmp_path / "demo-asl.profile.json").read_text())
    del old["schema"], old["checksum"]
    (tmp_path / "demo-asl.profile.json").write_text(json.dumps(old))
    monkeypatch.setattr(demo, "WEIGHTS_DIR", tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mlvis.profile(mlvis.create_model("demo-asl", device="cpu")).labels == 24


def test_a_cache_that_cannot_be_written_does_not_lose_the_result(tmp_path, monkeypatch):
    model, x = _toy()
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    monkeypatch.setenv("MLVIS_CACHE", str(tmp_path / "cache"))
    with pytest.warns(ArtifactWarning, match="computed but not cached.*is a file"):
        fitted = _fit(model, x)
    assert fitted.labels == 5 and fitted.eps_max > 0


@pytest.mark.parametrize("kind", ["profile", "correlations"])
def test_the_library_says_before_the_work_that_a_broken_cache_will_not_keep_the_result(kind, tmp_path, monkeypatch):
    """The cache folder is checked before the probe or the attacks start: with the warning made an error,
    nothing has run when it is raised; as a warning it comes once and the result is returned."""
    model, x = _toy()
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    monkeypatch.setenv("MLVIS_CACHE", str(tmp_path / "cache"))
    steps = []

    def run():
        if kind == "profile":
            return _fit(model, x, progress=lambda d, t: steps.append(d))
        return mlvis.correlations(model, x, eps=0.002, direction="up", progress=lambda d, t: steps.append(d))

    with warnings.catch_warnings():
        warnings.simplefilter("error", ArtifactWarning)
        with pytest.raises(ArtifactWarning, match="will be computed but not cached.*is a file"):
            run()
    assert steps == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run()
    said = [str(w.message) for w in caught if issubclass(w.category, ArtifactWarning)]
    assert len(said) == 1 and "will be computed but not cached" in said[0]  # said once, before; not again after
    assert steps and result is not None  # the work ran and its result is returned


def test_the_cli_checks_the_cache_before_any_work(tmp_path, monkeypatch, capsys):
    (tmp_path / "cache").write_text("x")
    monkeypatch.setenv("MLVIS_CACHE", str(tmp_path / "cache"))
    t0 = time.perf_counter()
    for cmd in (["profile"], ["correlations"]):
        assert main([*cmd, "--model", "demo-asl", "--images", "50", "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert "is a file, not a folder" in err and "MLVIS_CACHE" in err and "Traceback" not in err
    assert time.perf_counter() - t0 < 5  # refused before the probes (they take minutes on 50 images)


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """The demo-asl weights, card and shipped artifacts in a private folder standing in for the package's."""
    folder = tmp_path / "weights"
    folder.mkdir()
    for f in demo.WEIGHTS_DIR.glob("demo-asl.*"):
        shutil.copy(f, folder / f.name)
    monkeypatch.setattr(demo, "WEIGHTS_DIR", folder)
    return folder


def test_profile_ship_writes_the_profile_just_measured(shipped_copy, capsys):
    shipped = shipped_copy / "demo-asl.profile.json"
    before = json.loads(shipped.read_text())
    assert before["settings"]["images"] == 100
    args = ["profile", "--model", "demo-asl", "--images", "2", "--max-eps", "0.01", "--interval", "5"]
    assert main([*args, "--device", "cpu", "--ship"]) == 0
    after = json.loads(shipped.read_text())
    assert after["settings"]["images"] == 2 and after["settings"]["max_eps"] == 0.01  # the new one, not the old
    assert after["profile"]["settings"]["images"] == 2 and after["checksum"] == artifacts.checksum(after)
    (cached,) = _cached()  # the same document mlvis.profile cached, under the same settings key
    assert json.loads(cached.read_text())["settings"] == after["settings"]
    assert stat.S_IMODE(shipped.stat().st_mode) == 0o644
    assert mlvis.profile(mlvis.create_model("demo-asl", device="cpu")).settings["images"] == 2


def test_ship_is_refused_for_other_models_before_any_work(capsys):
    assert main(["profile", "--model", "my-model", "--ship"]) == 2
    assert "for the demo models only" in capsys.readouterr().err


def test_train_demo_writes_into_the_package_only_with_ship(capsys):
    assert main(["train-demo", "--model", "demo-asl", "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert "--out FOLDER" in err and "--ship" in err
