"""The imperceptibility audit's builders: one amplification, level counts, blink/loupe HTML, slides."""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from mlvis.viz.attack import nice_factor
from mlvis.viz.audit import (
    amplified,
    blink_html,
    common_factor,
    level_counts,
    level_histogram_figure,
    loupe_html,
    png_bytes,
    slide_layout,
    slide_panel,
    slide_svg,
)

RNG = np.random.default_rng(0)
CLEAN = RNG.random((3, 8, 8))


def perturbed(eps):
    return np.clip(CLEAN + RNG.uniform(-eps, eps, CLEAN.shape), 0, 1)


def test_one_factor_for_the_row_is_set_by_the_strongest_method():
    weak, strong = perturbed(0.004), perturbed(0.09)
    f = common_factor(CLEAN, [weak, strong])
    assert f == nice_factor(float(np.abs(strong - CLEAN).max()))
    assert f < nice_factor(float(np.abs(weak - CLEAN).max()))  # the weak one alone would be amplified more
    # nothing leaves the display range at that factor, and the strong one fills about half of it
    for a in (weak, strong):
        d = 0.5 + f * (a - CLEAN)
        assert d.min() >= 0 and d.max() <= 1
    assert np.abs(amplified(CLEAN, strong, f).astype(int) - 128).max() > 60
    assert common_factor(CLEAN, [CLEAN]) == 1.0


def test_level_counts_count_every_channel_once():
    clean = (CLEAN * 255).round().astype(np.uint8)
    adv = clean.copy()
    adv[0, 0, :3] = np.clip(adv[0, 0, :3].astype(int) + 2, 0, 255)  # 3 channels, 2 levels (unless clipped)
    adv[1, 4, 4] = 255 - adv[1, 4, 4] if adv[1, 4, 4] < 128 else 0
    counts = level_counts(clean, adv)
    assert counts.sum() == clean.size and counts.shape == (256,)
    moved = np.abs(adv.astype(int) - clean.astype(int)).ravel()
    np.testing.assert_array_equal(counts, np.bincount(moved, minlength=256))
    fig = level_histogram_figure(clean, [adv, clean], ["a", "b"])
    assert [t.meta["method"] for t in fig.data] == ["a", "b"]
    assert fig.data[1].y[0] == clean.size and fig.layout.yaxis.type == "log"
    with pytest.raises(ValueError, match="differ in shape"):
        level_counts(clean, adv[:, :4])


def _inline_pngs(text):
    found = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)
    return [Image.open(io.BytesIO(base64.b64decode(m))) for m in found]


def test_blink_and_loupe_inline_their_images_and_fetch_nothing():
    adv = perturbed(0.05)
    page = blink_html(CLEAN, adv, caption="<b>x</b>")
    imgs = _inline_pngs(page)
    assert len(imgs) == 2 and imgs[0].size == (8, 8)
    clean_u8 = (CLEAN.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(imgs[1]), clean_u8)  # the clean image is on top
    assert "http" not in page and "&lt;b&gt;" in page and "pixelated" in page
    loupe = loupe_html(adv)
    assert len(_inline_pngs(loupe)) == 2 and "http" not in loupe
    with pytest.raises(ValueError, match="period"):
        blink_html(CLEAN, adv, period_ms=5)
    with pytest.raises(ValueError, match="zoom"):
        loupe_html(adv, zoom=100)


def test_slide_png_is_nearest_upscaled_and_names_the_flips():
    adv = perturbed(0.05)
    before = np.array([0.9, 0.2, 0.6, 0.1])
    after = np.array([0.8, 0.7, 0.3, 0.2])
    labels = ["cat", "dog", "sink", "cup"]
    size, prims = slide_layout(CLEAN, adv, before, after, labels, 0.5, 5.0, order=[1, 0, 2], title="t", scale=4)
    images = [p for p in prims if p[0] == "image"]
    assert len(images) == 3 and images[0][5].shape == (32, 32, 3)
    np.testing.assert_array_equal(images[0][5][::4, ::4], (CLEAN.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8))
    texts = [p for p in prims if p[0] == "text"]
    names = [p[3] for p in texts if p[3] in labels]
    assert names == ["dog", "cat", "sink"]  # the given order, "cup" left out
    red = {p[3] for p in texts if p[5] == (214, 39, 40)}
    assert red == {"dog", "sink"}  # the two flips
    assert any(p[3] == "perturbation x5" for p in texts)
    panel = slide_panel(CLEAN, adv, before, after, labels, 0.5, 5.0, order=[1, 0, 2], title="t", scale=4)
    assert panel.size == size
    tile = np.asarray(panel)[images[1][2] : images[1][2] + 32, images[1][1] : images[1][1] + 32]
    np.testing.assert_array_equal(tile, images[1][5])


def test_slide_svg_is_vector_text_and_bars():
    before, after = np.array([0.9, 0.2]), np.array([0.1, 0.7])
    svg = slide_svg(CLEAN, perturbed(0.03), before, after, ["a & b", "c"], 0.5, 10.0, title="SLAM")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text for t in root.iter(ns + "text")]
    assert "SLAM" in texts and "a & b" in texts
    assert len(list(root.iter(ns + "image"))) == 3 and len(list(root.iter(ns + "rect"))) >= 4
    with pytest.raises(ValueError, match="upscaling"):
        slide_svg(CLEAN, CLEAN, before, after, ["a", "c"], 0.5, 1.0, scale=0)
    with pytest.raises(ValueError, match="one confidence per label"):
        slide_panel(CLEAN, CLEAN, before, after[:1], ["a", "c"], 0.5, 1.0)


def test_png_bytes_round_trip():
    img = Image.open(io.BytesIO(png_bytes(CLEAN, scale=3)))
    assert img.size == (24, 24) and img.mode == "RGB"
