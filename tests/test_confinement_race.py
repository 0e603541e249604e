"""Issue 14 §4: a symbolic link swapped in between the confinement check and the opening (TOCTOU) is
refused. The race is made deterministic: ``mlvis.store._opening``, called between the check and the
``open``, is replaced by a function that swaps the checked file for a link to a file outside."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from model_files import timm_card

from mlvis import store
from mlvis.recipe import read_files_from


@pytest.fixture
def folders(tmp_path):
    inside, outside = tmp_path / "images", tmp_path / "secret"
    inside.mkdir()
    outside.mkdir()
    (inside / "a.png").write_bytes(b"inside")
    (outside / "key.txt").write_bytes(b"outside")
    return inside, outside


def swap_to(target):
    def swap(path):
        os.remove(path)
        os.symlink(target, path)

    return swap


def test_a_link_swapped_in_after_the_check_is_refused(folders, monkeypatch):
    inside, outside = folders
    assert store.read_confined(inside, "a.png") == b"inside"
    monkeypatch.setattr(store, "_opening", swap_to(outside / "key.txt"))
    with pytest.raises(store.StoreError, match="changed into a link that leads outside"):
        store.read_confined(inside, "a.png")
    assert (inside / "a.png").is_symlink()  # the swap happened: the check before it had passed


def test_a_recipe_image_swapped_for_a_link_is_refused(folders, monkeypatch):
    inside, outside = folders
    read = read_files_from(inside)
    assert read("a.png") == b"inside"
    monkeypatch.setattr(store, "_opening", swap_to(outside / "key.txt"))
    with pytest.raises(store.StoreError, match="leads outside"):
        read("a.png")


def test_a_folder_on_the_way_swapped_for_a_link_is_refused(tmp_path, monkeypatch):
    inside, outside = tmp_path / "runs", tmp_path / "elsewhere"
    (inside / "run1").mkdir(parents=True)
    outside.mkdir()
    (inside / "run1" / "manifest.json").write_text("{}")
    (outside / "manifest.json").write_text('{"planted": true}')

    def swap(path):
        (inside / "run1" / "manifest.json").unlink()
        (inside / "run1").rmdir()
        os.symlink(outside, inside / "run1")

    monkeypatch.setattr(store, "_opening", swap)
    with pytest.raises(store.StoreError, match="leads outside"):
        store.read_confined(inside, "run1/manifest.json")


def test_a_link_swapped_in_that_stays_inside_is_still_read(folders, monkeypatch):
    inside, _ = folders
    (inside / "b.png").write_bytes(b"other inside")
    monkeypatch.setattr(store, "_opening", swap_to(inside / "b.png"))
    assert store.read_confined(inside, "a.png") == b"other inside"


def test_missing_files_and_folders_are_not_files(folders):
    inside, _ = folders
    (inside / "sub").mkdir()
    with pytest.raises(FileNotFoundError):
        store.read_confined(inside, "nope.png")
    with pytest.raises(IsADirectoryError):
        store.read_confined(inside, "sub")
    with pytest.raises(FileNotFoundError, match="is not in"):
        read_files_from(inside)("sub")


# ----------------------------------------------------------- files opened without following any link


def test_open_without_links_refuses_every_link_even_one_that_stays_inside(tmp_path):
    inside = tmp_path / "models"
    (inside / "sub").mkdir(parents=True)
    (inside / "sub" / "w.pth").write_bytes(b"weights")
    (inside / "same.pth").symlink_to(inside / "sub" / "w.pth")
    (inside / "hop").symlink_to(inside / "sub")
    with store.open_without_links(inside, "sub/w.pth") as f:
        assert f.read() == b"weights"
    for name in ("same.pth", "hop/w.pth"):
        with pytest.raises(store.LinkRefused, match="is a symbolic link or is reached through one"):
            store.open_without_links(inside, name)
    assert store.read_confined(inside, "same.pth") == b"weights"  # open_confined allows links that stay inside
    (tmp_path / "link-to-models").symlink_to(inside)  # the folder itself may be a link: it is the caller's
    with store.open_without_links(tmp_path / "link-to-models", "sub/w.pth") as f:
        assert f.read() == b"weights"


def test_open_without_links_refuses_names_that_leave_and_files_that_are_not_files(tmp_path):
    (tmp_path / "sub").mkdir()
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(store.StoreError, match="climbs out"):
        store.open_without_links(tmp_path / "sub", "../pipe")
    with pytest.raises(store.StoreError, match="absolute path"):
        store.open_without_links(tmp_path, str(tmp_path / "pipe"))
    with pytest.raises(store.StoreError, match="is not a regular file"):  # and the opening did not block
        store.open_without_links(tmp_path, "pipe")
    with pytest.raises(IsADirectoryError):
        store.open_without_links(tmp_path, "sub")
    with pytest.raises(FileNotFoundError):
        store.open_without_links(tmp_path, "sub/nope.pth")


# ------------------------------------------------------------------------ the models folder's cards


@pytest.fixture
def loads(monkeypatch):
    """Every checkpoint loader call (torch.load, safetensors, torch.jit.load), recorded as (loader, first argument)."""
    import safetensors.torch
    import torch

    calls = []

    def recording(module, name):
        real = getattr(module, name)

        def record(*args, **kwargs):
            calls.append((name, args[0] if args else None, kwargs))
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, record)

    recording(torch, "load")
    recording(torch.jit, "load")
    recording(safetensors.torch, "load_file")
    recording(safetensors.torch, "load")
    return calls


def swap_after_check(monkeypatch, what, target):
    """``cards.resolve_inside`` that, right after it passed the file ``what`` names, swaps that file for a link
    to ``target`` (the race made deterministic)."""
    from mlvis.models import cards

    real = cards.resolve_inside

    def checked_then_swapped(folder, relative, label="the file"):
        path = real(folder, relative, label)
        if what in label:
            os.remove(path)
            os.symlink(target, path)
        return path

    monkeypatch.setattr(cards, "resolve_inside", checked_then_swapped)


def test_a_checkpoint_swapped_for_a_link_after_the_check_is_refused_and_never_loaded(
    models_dir, tmp_path, monkeypatch, loads
):
    import mlvis
    from mlvis.models import CheckpointError

    timm_card(models_dir, name="tiny")
    timm_card(tmp_path / "secret", name="tiny", seed=1)  # valid weights of another model, outside the folder
    swap_after_check(monkeypatch, "checkpoint", tmp_path / "secret" / "tiny.safetensors")
    with pytest.raises(CheckpointError, match=r"^tiny.safetensors in the models folder is a symbolic link"):
        mlvis.create_model("tiny", device="cpu")
    assert (models_dir / "tiny.safetensors").is_symlink()  # the swap happened after the check had passed
    assert loads == []  # nothing was loaded: the outside file was never read


def test_a_labels_file_swapped_for_a_link_after_the_check_is_refused(models_dir, tmp_path, monkeypatch):
    import mlvis
    from mlvis.models import CheckpointError

    timm_card(models_dir, name="tiny")
    (tmp_path / "secret.txt").write_text("w\nx\ny\nz\n")
    swap_after_check(monkeypatch, "labels", tmp_path / "secret.txt")
    with pytest.raises(CheckpointError, match=r"^tiny.labels.txt in the models folder is a symbolic link"):
        mlvis.create_model("tiny", device="cpu")


def test_a_torchscript_card_swapped_for_a_link_is_refused(models_dir, tmp_path, monkeypatch, loads):
    import json

    import torch

    import mlvis
    from mlvis.models import CheckpointError

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2)).eval()
    for folder in (models_dir, tmp_path):
        torch.jit.trace(net, torch.rand(1, 3, 8, 8)).save(str(folder / "net.pt"))
    (models_dir / "ts.json").write_text(json.dumps({"family": "torchscript", "checkpoint": "net.pt",
                                                    "input_size": [8, 8], "labels": ["a", "b"]}))  # fmt: skip
    model = mlvis.create_model("ts", device="cpu")  # the card works, from the very file opened
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))
    assert [(name, str(arg).startswith("/proc/self/fd/")) for name, arg, _ in loads] == [("load", True)]
    loads.clear()
    swap_after_check(monkeypatch, "checkpoint", tmp_path / "net.pt")
    with pytest.raises(CheckpointError, match=r"^net.pt in the models folder is a symbolic link"):
        mlvis.create_model("ts", device="cpu")
    assert loads == []


def test_a_cards_weights_are_read_bit_for_bit_and_memory_mapped_from_the_file_opened(models_dir, loads):
    import torch
    from safetensors.torch import load_file

    import mlvis

    timm_card(models_dir, name="tiny")
    model = mlvis.create_model("tiny", device="cpu")
    want = load_file(str(models_dir / "tiny.safetensors"))
    got = model.net.state_dict()
    assert all(torch.equal(got[k], v.float()) for k, v in want.items())
    name, arg, _ = loads[0]
    assert name == "load_file" and str(arg).startswith("/proc/self/fd/")  # the opened file, memory-mapped


def test_a_pth_in_a_cards_folder_is_memory_mapped_and_its_errors_name_the_file(tmp_path, loads):
    import torch

    from mlvis.models.loading import CheckpointError, read_checkpoint, reading_inside

    sd = {"w": torch.arange(12.0).reshape(3, 4), "n": torch.tensor(3)}
    torch.save(sd, tmp_path / "w.pth")
    with reading_inside(tmp_path):
        got = read_checkpoint(tmp_path / "w.pth")
    assert got.keys() == sd.keys() and all(torch.equal(got[k], v) for k, v in sd.items())
    name, arg, kwargs = loads[0]
    assert name == "load" and str(arg).startswith("/proc/self/fd/") and kwargs["mmap"] is True
    (tmp_path / "cut.pth").write_bytes((tmp_path / "w.pth").read_bytes()[:300])
    with reading_inside(tmp_path), pytest.raises(CheckpointError) as err:
        read_checkpoint(tmp_path / "cut.pth")
    assert str(err.value).startswith("cut.pth is not a PyTorch checkpoint") and "/proc/" not in str(err.value)
    with reading_inside(tmp_path), pytest.raises(FileNotFoundError, match="There is no checkpoint file at"):
        read_checkpoint(tmp_path / "gone.pth")


def test_a_query2label_config_beside_the_checkpoint_that_is_a_link_is_refused(tmp_path):
    from mlvis.models.loading import CheckpointError, reading_inside
    from mlvis.models.q2l import read_config

    (tmp_path / "secret.json").write_text('{"img_size": 448}')
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "config_new.json").symlink_to(tmp_path / "secret.json")
    assert read_config(tmp_path / "models" / "config_new.json") == {"img_size": 448}  # outside a card: followed
    with reading_inside(tmp_path / "models"), pytest.raises(CheckpointError, match="symbolic link"):
        read_config(tmp_path / "models" / "config_new.json")


def test_a_card_file_swapped_for_a_link_is_refused(models_dir, tmp_path):
    from mlvis.models import cards

    path = timm_card(models_dir, name="tiny")
    (tmp_path / "far.json").write_text(path.read_text())
    assert cards.read_card(path).name == "tiny"
    path.unlink()
    path.symlink_to(tmp_path / "far.json")
    with pytest.raises(cards.CardError, match="The model card tiny.json is a symbolic link, which is refused"):
        cards.read_card(path)


# ---------------------------------------------------------------------------- the runs folder's runs


def squares(start, stop):
    return {"square": np.arange(start, stop) ** 2}


@pytest.fixture
def runs(tmp_path):
    """A runs folder with a finished run ``good`` (2 chunks), and ``outside``: a copy of it elsewhere."""
    from mlvis.runs import make_manifest, run_chunks

    folder, outside = tmp_path / "runs", tmp_path / "outside"
    run_chunks(folder / "good", make_manifest("test", model="m0"), 4, 2, squares)
    shutil.copytree(folder / "good", outside)
    return folder, outside


def plant(link, target):
    """Replace ``link`` (a file or folder) by a symbolic link to ``target``."""
    shutil.rmtree(link) if link.is_dir() and not link.is_symlink() else link.unlink()
    link.symlink_to(target)


def test_a_manifest_that_is_a_link_leading_out_of_the_run_is_refused(runs, capsys):
    from mlvis.app import runs_page
    from mlvis.cli import main
    from mlvis.runs import Run, RunError, run_status

    folder, outside = runs
    shutil.copytree(folder / "good", folder / "planted")
    plant(folder / "planted" / "manifest.json", outside / "manifest.json")  # a manifest that reads fine
    sentence = r"planted/manifest.json leads outside the run directory through a symbolic link; it is not read\."
    with pytest.raises(RunError, match=sentence):
        run_status(folder / "planted")
    with pytest.raises(RunError, match=sentence):
        Run(folder / "planted").load()
    assert [r.name for r in runs_page.list_runs(folder)] == ["good"]  # skipped on the Runs page
    with pytest.raises(RunError, match=sentence):
        runs_page.status("planted", folder)
    capsys.readouterr()
    assert main(["table", str(folder / "planted")]) == 2
    assert "leads outside the run directory through a symbolic link" in capsys.readouterr().err
    assert run_status(folder / "good").finished


def test_a_chunk_that_is_a_link_leading_out_is_not_counted_nor_read(runs):
    from mlvis.app import runs_page
    from mlvis.runs import CHUNKS, Run, RunError, chunk_name, load_run, run_status

    folder, outside = runs
    good = folder / "good"
    plant(good / CHUNKS / chunk_name(1), outside / CHUNKS / chunk_name(1))  # the same bytes, outside
    st = run_status(good)
    assert (st.done, st.total, st.finished) == (1, 2, False)
    assert [(r.name, r.done, r.total) for r in runs_page.list_runs(folder)] == [("good", 1, 2)]
    assert Run(good).chunk(1) is None and Run(good).chunk(0) is not None
    with pytest.raises(RunError, match=r"chunk-000001.npz leads outside the run directory through a symbolic link"):
        load_run(good, partial=True)
    plant(good / CHUNKS, outside / CHUNKS)  # the whole folder of chunks
    assert run_status(good).done == 0
    with pytest.raises(RunError, match=r"chunk-000000.npz leads outside the run directory through a symbolic link"):
        load_run(good, partial=True)


def test_a_run_with_an_outside_chunk_link_is_refused_by_mlvis_table(tmp_path, capsys):
    import mlvis
    from mlvis.analysis.evaluation import evaluate_run
    from mlvis.cli import main
    from mlvis.runs import CHUNKS, DemoImages, chunk_name

    run, outside = tmp_path / "runs" / "eval", tmp_path / "outside"
    evaluate_run(mlvis.create_model("demo-asl"), DemoImages(2), run, ["bce"], [0.05], chunk_size=1)
    shutil.copytree(run, outside)
    capsys.readouterr()
    assert main(["table", str(run), "--format", "json"]) == 0
    plant(run / CHUNKS / chunk_name(0), outside / CHUNKS / chunk_name(0))
    capsys.readouterr()
    assert main(["table", str(run), "--partial"]) == 2
    assert "chunk-000000.npz leads outside the run directory through a symbolic link" in capsys.readouterr().err


def test_links_that_stay_inside_the_run_still_work(runs):
    from mlvis.runs import CHUNKS, chunk_name, load_run, run_status

    folder, _ = runs
    good = folder / "good"
    (good / "kept").mkdir()
    os.replace(good / "manifest.json", good / "kept" / "manifest.json")
    (good / "manifest.json").symlink_to(Path("kept") / "manifest.json")
    os.replace(good / CHUNKS / chunk_name(1), good / "kept" / chunk_name(1))
    (good / CHUNKS / chunk_name(1)).symlink_to(good / "kept" / chunk_name(1))
    assert run_status(good).finished
    assert load_run(good)["square"].tolist() == [0, 1, 4, 9]


def test_an_error_file_that_is_a_link_leading_out_is_said_not_read(runs):
    from mlvis.runs import run_status

    folder, outside = runs
    (outside / "secret.json").write_text('{"error": "the secret"}')
    (folder / "good" / "error.json").symlink_to(outside / "secret.json")
    st = run_status(folder / "good")
    assert "leads outside the run directory through a symbolic link" in st.error and "secret" not in st.error


def test_a_manifest_swapped_for_a_link_while_it_is_opened_is_refused(runs, monkeypatch):
    from mlvis.runs import RunError, run_status

    folder, outside = runs
    monkeypatch.setattr(store, "_opening", swap_to(outside / "manifest.json"))
    with pytest.raises(RunError, match="manifest.json leads outside the run directory through a symbolic link"):
        run_status(folder / "good")


def test_a_staged_runs_stages_and_result_that_lead_out_do_not_count(tmp_path):
    from mlvis.runs import claim_run, make_manifest, run_chunks, run_status, stage_dir, write_result

    run, outside = tmp_path / "staged", tmp_path / "outside"
    with claim_run(run, make_manifest("test", model="m0"), 4, 2, label="round", result="result.json") as path:
        for i in range(2):
            stage = make_manifest("test-round", model="m0", settings={"round": i})
            run_chunks(stage_dir(path, i), stage, 4, 2, squares)
        write_result(path, "result.json", b"{}")
    st = run_status(run)
    assert (st.done, st.total, st.finished, st.stage) == (4, 4, True, "round 2")
    shutil.copytree(run, outside)
    plant(stage_dir(run, 1), stage_dir(outside, 1))
    plant(run / "result.json", outside / "result.json")
    st = run_status(run)
    assert (st.done, st.total, st.finished, st.stage) == (2, 2, False, "round 1")


def test_without_descriptor_paths_the_opened_file_itself_is_read_to_the_same_weights(tmp_path, monkeypatch, loads):
    import torch
    from safetensors.torch import save_file

    import mlvis
    from mlvis.models import loading

    sd = {"w": torch.arange(12.0).reshape(3, 4), "n": torch.tensor(3)}
    torch.save(sd, tmp_path / "zip.pth")
    torch.save(sd, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    save_file(sd, str(tmp_path / "w.safetensors"))
    net = torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2)).eval())
    net.save(str(tmp_path / "net.pt"))
    x = torch.rand(2, 3, 8, 8)
    for fd_paths in (True, False):  # Linux's /proc/self/fd/N, and the file object where there is none
        monkeypatch.setattr(loading, "_FD_PATHS", fd_paths)
        with loading.reading_inside(tmp_path):
            for name in ("zip.pth", "legacy.pth", "w.safetensors"):
                got = loading.read_checkpoint(tmp_path / name)
                assert got.keys() == sd.keys() and all(torch.equal(got[k], v) for k, v in sd.items()), name
            model = mlvis.create_model("torchscript", checkpoint=tmp_path / "net.pt", device="cpu", input_size=8)
        with torch.no_grad():
            assert torch.equal(model(x), net(x))
        paths = [isinstance(arg, str) and arg.startswith("/proc/self/fd/") for _, arg, _ in loads]
        assert len(loads) == (5 if fd_paths else 4) and all(paths) == fd_paths and any(paths) == fd_paths
        loads.clear()


def test_saved_images_reached_through_a_link_leading_out_are_not_read(tmp_path):
    from mlvis.runs import Run, RunError, make_manifest, run_chunks

    def with_images(start, stop):
        idx = np.arange(start, stop)
        pixels = np.ones((len(idx), 3, 4, 4)) * idx[:, None, None, None]
        return {"x": idx, "images/adv": pixels.astype(np.uint8), "images/f": pixels.astype(np.float32)}

    run = run_chunks(tmp_path / "run", make_manifest("test", model="m0"), 2, 1, with_images)
    outside = tmp_path / "outside"
    shutil.copytree(run.path, outside)
    assert run.image_keys() == ["adv", "f"] and [i for i, _ in run.images("adv")] == [0, 1]
    plant(run.path / "images" / "adv" / "0000001.png", outside / "images" / "adv" / "0000001.png")
    plant(run.path / "images" / "f" / "chunk-0000000.npy", outside / "images" / "f" / "chunk-0000000.npy")
    for key in ("adv", "f"):
        with pytest.raises(RunError, match="leads outside the run directory through a symbolic link"):
            list(Run(run.path).images(key))
    plant(run.path / "images" / "f", outside / "images" / "f")
    assert run.image_keys() == ["adv"]
