"""Issue 14 §4: a symbolic link swapped in between the confinement check and the opening (TOCTOU) is
refused. The race is made deterministic: ``mlvis.store._opening``, called between the check and the
``open``, is replaced by a function that swaps the checked file for a link to a file outside."""

from __future__ import annotations

import os

import pytest

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
