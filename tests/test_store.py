"""mlvis.store: the one atomic write, orphaned temporary files, confined names, --out and cache checks."""

from __future__ import annotations

import os
import stat
import time

import pytest

from mlvis import store
from mlvis.store import StoreError, atomic_write, check_cache_dir, check_out, clean_orphans, confined, safe_stem


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _ours(folder):
    return [p for p in folder.iterdir() if p.name.endswith(store.TMP_SUFFIX)]


def test_atomic_write_gives_a_readable_file_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        path = atomic_write(tmp_path / "a.txt", "hello")
        atomic_write(tmp_path / "b.bin", b"\x00\x01")
        atomic_write(tmp_path / "c.bin", lambda p: open(p, "wb").write(b"xyz"))
    finally:
        os.umask(old)
    assert path.read_text() == "hello" and (tmp_path / "c.bin").read_bytes() == b"xyz"
    assert {_mode(tmp_path / n) for n in ("a.txt", "b.bin", "c.bin")} == {0o644}
    assert not _ours(tmp_path)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = atomic_write(tmp_path / "a.txt", "old")

    def broken(p):
        open(p, "w").write("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text() == "old" and not _ours(tmp_path)


def test_writing_over_a_folder_is_a_sentence(tmp_path):
    with pytest.raises(StoreError, match="is a folder"):
        atomic_write(tmp_path, "x")


def test_orphaned_temporary_files_are_cleaned_up_by_the_next_write(tmp_path):
    orphan = tmp_path / f".a.txt.k1l2m3{store.TMP_SUFFIX}"  # what a writer killed by -9 leaves behind
    young = tmp_path / f".b.txt.x9y8z7{store.TMP_SUFFIX}"  # a writer that may still be running
    foreign = tmp_path / ".a.txt.tmp"  # not ours: never touched
    for p in (orphan, young, foreign):
        p.write_text("partial")
    hour_ago = time.time() - store.ORPHAN_AGE_S - 60
    os.utime(orphan, (hour_ago, hour_ago))
    os.utime(foreign, (hour_ago, hour_ago))
    atomic_write(tmp_path / "a.txt", "done")
    assert not orphan.exists() and young.exists() and foreign.exists()
    assert clean_orphans(tmp_path, max_age_s=0) == [young]


def test_confined_refuses_absolute_names_dot_dot_and_links_that_leave(tmp_path):
    inside = tmp_path / "in"
    inside.mkdir()
    (inside / "a.png").write_bytes(b"a")
    (tmp_path / "secret.txt").write_text("s")
    (inside / "link-out.png").symlink_to(tmp_path / "secret.txt")
    (inside / "link-in.png").symlink_to(inside / "a.png")
    (inside / "dir-out").symlink_to(tmp_path)
    assert confined(inside, "a.png") == inside / "a.png"
    assert confined(inside, "link-in.png").read_bytes() == b"a"  # a link that stays inside is fine
    assert confined(inside, "new/b.png") == inside / "new" / "b.png"
    for name, why in [
        ("../secret.txt", "climbs out"),
        ("sub/../../secret.txt", "climbs out"),
        (str(tmp_path / "secret.txt"), "absolute"),
        ("link-out.png", "leads outside"),
        ("dir-out/secret.txt", "leads outside"),
        ("", "not a file name"),
    ]:
        with pytest.raises(StoreError, match=why):
            confined(inside, name)


def test_safe_stems_are_plain_and_distinct():
    names = ["slam q=0.25", "slam q=0.5", "slam_q=0.25", "../escaped", "a/b", "a_b", "CLASS(γ=0.5)", "..", "BCE"]
    stems = [safe_stem(n) for n in names]
    assert len(set(stems)) == len(names)
    assert safe_stem("BCE") == "BCE" and safe_stem("slam_q=0.25") == "slam_q=0.25"  # safe names are kept
    for s in stems:
        assert "/" not in s and " " not in s and not s.startswith(".") and s == s.strip()


def test_out_rules_never_create_folders_from_the_root(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(StoreError, match="does not exist; create it first"):
        check_out(missing / "dir" / "p.json", "file")
    with pytest.raises(StoreError, match="does not exist; create it first"):
        check_out(missing / "dir", "folder")
    assert not missing.exists()
    with pytest.raises(StoreError, match="is a folder"):
        check_out(tmp_path, "file")
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        check_out(tmp_path / "f", "folder")
    assert check_out(tmp_path / "p.json", "file") == tmp_path / "p.json"
    assert check_out(tmp_path / "new", "folder") == tmp_path / "new"  # one new level is fine ...
    assert not (tmp_path / "new").exists()  # ... and created by the first write, not by the check
    assert not _ours(tmp_path)


def test_the_cache_folder_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("MLVIS_CACHE", str(tmp_path / "a" / "b"))
    assert check_cache_dir() == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("MLVIS_CACHE", str(tmp_path / "file"))
    with pytest.raises(StoreError, match="is a file, not a folder.*MLVIS_CACHE"):
        check_cache_dir()
    monkeypatch.setenv("MLVIS_CACHE", str(tmp_path / "file" / "sub"))
    with pytest.raises(StoreError, match="cannot be created.*MLVIS_CACHE"):
        check_cache_dir()
