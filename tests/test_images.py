"""Uploaded images (mlvis.data.images): formats, limits, odd modes, resizing, 16-bit PNGs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mlvis.attacks import save_png16
from mlvis.data import images as mi

SIZE = (64, 64)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def rgb(w: int = 64, h: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_an_rgb_png_of_the_right_size_is_exact():
    arr = rgb()
    out = mi.load_image(encode(Image.fromarray(arr), "PNG"), SIZE, name="a.png")
    assert out.array.shape == (3, 64, 64) and out.array.dtype == np.float32
    np.testing.assert_array_equal(out.array, arr.transpose(2, 0, 1).astype(np.float32) / 255)
    assert out.format == "PNG" and out.mode == "RGB" and out.notes == () and not out.resized


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_load(fmt):
    out = mi.load_image(encode(Image.fromarray(rgb()), fmt), SIZE, name=f"x.{fmt.lower()}")
    assert out.format == fmt and out.array.shape == (3, 64, 64)
    assert 0 <= out.array.min() and out.array.max() <= 1


def test_a_wide_image_is_centre_cropped_then_resized_and_stays_on_the_8_bit_grid():
    arr = np.zeros((100, 300, 3), np.uint8)
    arr[:, 100:200] = 200  # the centre square is uniform grey 200
    out = mi.load_image(encode(Image.fromarray(arr), "PNG"), SIZE, name="wide.png")
    assert out.original_size == (300, 100) and out.resized
    assert out.notes == ("centre-cropped to 100×100", "resized from 300×100 to 64×64")
    np.testing.assert_allclose(out.array, 200 / 255, atol=1e-6)
    np.testing.assert_array_equal(np.round(out.array * 255) / 255, out.array)  # an 8-bit file holds it exactly
    stretched = mi.load_image(encode(Image.fromarray(arr), "PNG"), SIZE, fit="stretch")
    assert stretched.notes == ("resized from 300×100 to 64×64",)
    assert stretched.array.min() < 0.1  # the black sides are kept


def test_non_square_model_sizes():
    out = mi.load_image(encode(Image.fromarray(rgb(80, 80)), "PNG"), (32, 48))
    assert out.array.shape == (3, 32, 48)


@pytest.mark.parametrize(
    ("mode", "note"),
    [
        ("L", "grey image converted to RGB"),
        ("P", "palette image converted to RGB"),
        ("1", "black-and-white image converted to RGB"),
        ("CMYK", "CMYK image converted to RGB"),
    ],
)
def test_odd_modes_are_converted_to_rgb(mode, note):
    im = Image.fromarray(rgb()).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = mi.load_image(encode(im, fmt), SIZE)
    assert out.mode == mode and note in out.notes and out.array.shape == (3, 64, 64)
    if mode == "L":
        np.testing.assert_array_equal(out.array[0], out.array[1])


def test_transparency_is_flattened_onto_white():
    arr = np.zeros((64, 64, 4), np.uint8)
    arr[..., 0] = 255
    arr[:, :32, 3] = 255  # left half opaque red, right half fully transparent
    out = mi.load_image(encode(Image.fromarray(arr, "RGBA"), "PNG"), SIZE)
    assert out.mode == "RGBA" and "its transparent parts were flattened onto white" in out.notes
    np.testing.assert_allclose(out.array[:, :, :32].reshape(3, -1).mean(1), [1, 0, 0])
    np.testing.assert_allclose(out.array[:, :, 32:], 1.0)
    opaque = mi.load_image(encode(Image.fromarray(rgb()).convert("RGBA"), "PNG"), SIZE)
    assert opaque.notes == ()  # an alpha channel with nothing transparent is not worth a note


def test_16_bit_grey_is_scaled():
    grey = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    im = Image.fromarray(grey)
    assert im.mode.startswith("I")
    out = mi.load_image(encode(im, "PNG"), SIZE)
    np.testing.assert_allclose(out.array[0], grey / 65535, atol=1e-6)


def test_a_16_bit_rgb_png_keeps_all_its_bits(tmp_path):
    x = np.random.default_rng(1).random((3, 64, 64)).astype(np.float32)
    data = save_png16(tmp_path / "adv.png", x).read_bytes()
    out = mi.load_image(data, SIZE, name="adv.png")
    assert out.mode == "RGB;16"
    np.testing.assert_array_equal(out.array, np.round(x.astype(np.float64) * 65535).astype(np.float32) / 65535)
    small = mi.load_image(data, (32, 32))  # resized in float, not through 8 bits
    assert small.array.shape == (3, 32, 32)
    assert not np.array_equal(np.round(small.array * 255) / 255, small.array)


def test_an_animation_keeps_its_first_frame():
    frames = [Image.fromarray(np.full((64, 64, 3), v, np.uint8)) for v in (10, 250)]
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], lossless=True)
    out = mi.load_image(buf.getvalue(), SIZE)
    assert "an animation: its first frame is used" in out.notes
    np.testing.assert_allclose(out.array, 10 / 255, atol=1 / 255)


def test_exif_orientation_is_applied():
    arr = np.zeros((40, 80, 3), np.uint8)  # wide
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90°: the picture is tall
    out = mi.load_image(encode(im, "JPEG", exif=exif), (80, 40), fit="stretch")
    assert out.notes == ()  # 40 x 80 after rotation: no resize needed


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "a.png: the file is empty."),
        (
            b"definitely not an image",
            "a.png: this is not a PNG, JPEG or WebP image that can be read (or it is corrupt).",
        ),
        (encode(Image.fromarray(rgb()), "GIF"), "a.png: this is a GIF image; upload PNG, JPEG or WebP."),
        (encode(Image.fromarray(rgb()), "BMP"), "a.png: this is a BMP image; upload PNG, JPEG or WebP."),
    ],
)
def test_bad_files_get_one_sentence(data, message):
    with pytest.raises(mi.ImageError) as e:
        mi.load_image(data, SIZE, name="a.png")
    assert str(e.value) == message


def test_a_truncated_file_is_reported():
    data = encode(Image.fromarray(rgb(256, 256)), "PNG")
    with pytest.raises(mi.ImageError, match=r"^cut\.png: the image is corrupt or truncated"):
        mi.load_image(data[: len(data) // 2], SIZE, name="cut.png")
    jpeg = encode(Image.fromarray(rgb(256, 256)), "JPEG")
    with pytest.raises(mi.ImageError, match=r"^cut\.jpg: "):
        mi.load_image(jpeg[: len(jpeg) // 3], SIZE, name="cut.jpg")


def test_huge_images_are_refused_before_decoding(monkeypatch):
    # a 10000 x 5000 PNG of zeros compresses to a few kB: the header alone decides
    data = encode(Image.new("L", (10_000, 5_000)), "PNG")
    assert len(data) < 200_000
    with pytest.raises(mi.ImageError) as e:
        mi.load_image(data, SIZE, name="bomb.png")
    assert str(e.value) == "bomb.png: the image is 10000×5000 = 50 megapixels; the limit is 40 megapixels."
    monkeypatch.setattr(mi, "MAX_BYTES", 1000)
    with pytest.raises(mi.ImageError, match=r"^big\.png: the file is 0\.0 MB; the limit is 0 MB\.$"):
        mi.load_image(encode(Image.fromarray(rgb()), "PNG"), SIZE, name="big.png")


def test_load_images_keeps_the_good_ones_and_reports_the_bad():
    good = encode(Image.fromarray(rgb()), "PNG")
    files = [("a.png", good), ("b.txt", b"hello"), ("c.png", good)]
    images, errors = mi.load_images(files, SIZE)
    assert [im.name for im in images] == ["a.png", "c.png"]
    assert errors == ["b.txt: this is not a PNG, JPEG or WebP image that can be read (or it is corrupt)."]
    assert mi.to_batch(images).shape == (2, 3, 64, 64)
    images, errors = mi.load_images([("x.png", good)] * 5, SIZE, max_files=3)
    assert len(images) == 3
    assert errors == ["Only 3 images are attacked at once; the last 2 files were left out."]
    assert images[0].digest == images[1].digest == mi.image_digest(images[2].array)


def test_bad_arguments():
    with pytest.raises(ValueError, match="fit must be"):
        mi.load_image(b"x", SIZE, fit="zoom")
    with pytest.raises(ValueError, match="size must be"):
        mi.load_image(b"x", (0, 64))
