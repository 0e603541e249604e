"""Files land only where they should, readable, and 16-bit PNGs from other tools read with all their bits."""

from __future__ import annotations

import dataclasses
import stat
import struct
import zlib

import numpy as np
import pytest
import torch
from attack_models import LinearMultiLabel

import mlvis
from mlvis import recipe as rc
from mlvis.attacks import load_png16, save_npy, save_png16
from mlvis.attacks.export import decode_png16
from mlvis.cli import main
from mlvis.data import images as mi
from mlvis.store import StoreError


@pytest.fixture(scope="module")
def result():
    model = LinearMultiLabel(num_labels=4)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return mlvis.attack(model, x, "bce", [0.002, 0.01])


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_exports_are_readable_files(tmp_path, result):
    files = [save_png16(tmp_path / "a.png", result.adv[0, 0]), save_npy(tmp_path / "a.npy", result.adv[0, 0])]
    files += [result.save(tmp_path / "r.npz"), *result.export(tmp_path / "png"), *result.export(tmp_path, "npy")]
    assert {_mode(p) for p in files} == {0o644}


def test_export_names_never_collide(tmp_path, result):
    """Four images of each of four methods whose names differ only after a dot: 16 files, not 4."""
    paths = []
    for name in ("slam q=0.25", "slam q=0.5", "slam q=0.75", "slam_q=0.25"):
        paths += dataclasses.replace(result, name=name).export(tmp_path)
    assert len(paths) == 16 and len(set(paths)) == 16
    assert sorted(tmp_path.iterdir()) == sorted(paths)
    for p in paths:
        assert " " not in p.name and p.suffix == ".png"
    back = load_png16(paths[3])  # the last image of the first method is still its own
    np.testing.assert_allclose(back, result.adv[1, 1], atol=1 / 65535)


def test_export_stays_inside_its_folder(tmp_path, result):
    out = tmp_path / "out"
    for name in ("../escaped", "/abs/olute", "..", "a/../../b"):
        paths = dataclasses.replace(result, name=name).export(out, "npy")
        assert all(p.parent == out for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing beside the export folder


def test_a_recipe_image_that_is_a_link_out_of_its_folder_is_refused(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (tmp_path / "private.png").write_bytes(b"not for the recipe")
    (folder / "scene.png").write_bytes(b"ok")
    (folder / "evil.png").symlink_to(tmp_path / "private.png")
    (folder / "alias.png").symlink_to(folder / "scene.png")
    read = rc.read_files_from(folder)
    assert read("scene.png") == b"ok" and read("alias.png") == b"ok"
    assert read("../../scene.png") == b"ok"  # only the base name is looked up
    with pytest.raises(StoreError, match="leads outside"):
        read("evil.png")


def test_cli_out_rules(tmp_path, capsys):
    base = ["--model", "demo-asl", "--images", "2", "--device", "cpu"]
    missing = tmp_path / "nonexistent"
    assert main(["profile", *base, "--out", str(missing / "dir" / "p.json")]) == 2
    assert "does not exist; create it first" in capsys.readouterr().err
    assert main(["evaluate", *base, "--out", str(missing / "a" / "b")]) == 2
    assert "does not exist; create it first" in capsys.readouterr().err
    assert not missing.exists()  # nothing created on the way
    assert main(["profile", *base, "--out", str(tmp_path)]) == 2  # a folder where a file is wanted
    err = capsys.readouterr().err
    assert "is a folder; give the name of the file" in err and "Traceback" not in err
    (tmp_path / "file").write_text("x")
    assert main(["evaluate", *base, "--out", str(tmp_path / "file")]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ 16-bit PNGs


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def filtered_png16(levels: np.ndarray, filters: list[int]) -> bytes:
    """A 16-bit RGB PNG of ``levels`` (H, W, 3) uint16 whose row ``y`` uses PNG filter ``filters[y]``,
    encoded here from the PNG specification (section 9), as other tools (libpng, OpenCV) write them."""
    h, w, _ = levels.shape
    raw = levels.astype(">u2").view(np.uint8).reshape(h, w * 6).astype(np.int64)
    zero_row, zero_px = np.zeros((1, w * 6), np.int64), np.zeros((h, 6), np.int64)
    up = np.vstack([zero_row, raw[:-1]])
    left = np.hstack([zero_px, raw[:, :-6]])
    up_left = np.hstack([zero_px, up[:, :-6]])
    p = left + up - up_left
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - up_left)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
    predicted = {0: 0, 1: left, 2: up, 3: (left + up) // 2, 4: paeth}
    rows = b"".join(
        bytes([f]) + ((raw[y] - (predicted[f] if f == 0 else predicted[f][y])) % 256).astype(np.uint8).tobytes()
        for y, f in enumerate(filters)
    )
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


@pytest.mark.parametrize("filters", ["paeth", "mixed"])
def test_a_16_bit_png_with_the_paeth_filter_keeps_all_its_bits(filters):
    levels = np.random.default_rng(5).integers(0, 65536, (64, 64, 3)).astype(np.uint16)
    levels[:, :32] = levels[:, :1]  # smooth parts, where Paeth predicts well
    rows = [4] * 64 if filters == "paeth" else [y % 5 for y in range(64)]
    data = filtered_png16(levels, rows)
    want = levels.transpose(2, 0, 1).astype(np.float32) / 65535
    np.testing.assert_array_equal(decode_png16(data), want)
    loaded = mi.load_image(data, (64, 64), name="paeth.png")  # the app's and the CLI's image path
    assert loaded.mode == "RGB;16" and "16-bit PNG read at 8 bits" not in loaded.notes
    np.testing.assert_array_equal(loaded.array, want)


def test_our_own_16_bit_png_round_trips_and_bad_files_are_sentences(tmp_path):
    x = np.random.default_rng(2).random((3, 5, 7)).astype(np.float32)
    back = load_png16(save_png16(tmp_path / "x.png", x))
    np.testing.assert_array_equal(back, (np.round(x.astype(np.float64) * 65535) / 65535).astype(np.float32))
    good = (tmp_path / "x.png").read_bytes()
    for bad in (b"GIF89a", good[:40], good[:-20] + b"\x00" * 20):
        with pytest.raises(ValueError):
            decode_png16(bad)
    big = filtered_png16(np.zeros((40, 50, 3), np.uint16), [0] * 40)
    with pytest.raises(ValueError, match="at most 1000"):
        decode_png16(big, max_pixels=1000)
