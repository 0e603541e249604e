"""The imperceptibility audit: fair visual comparison of what each method did to one image. No Streamlit.

- :func:`common_factor`: ONE amplification for every method shown side by side (the largest 1/2/5 x 10^k
  that keeps every method's perturbation inside the display range), so stronger perturbations look stronger;
- :func:`level_counts` / :func:`level_histogram_figure`: how many 8-bit levels each pixel channel moved
  (after rounding to 8 bits, what a saved image really holds);
- :func:`blink_html` and :func:`loupe_html`: a clean/adversarial flicker and a zoom loupe as self-contained
  HTML (images inlined as data URIs, nothing fetched), pixels kept crisp;
- :func:`slide_panel` / :func:`slide_svg`: one slide-ready panel per image and method
  (clean | adversarial | perturbation x factor | confidence bars), upscaled with nearest neighbour.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont

from mlvis.errors import DataError, InvalidInput
from mlvis.viz.attack import nice_factor

BEFORE = (184, 192, 204)
AFTER = (31, 119, 180)
FLIPPED = (214, 39, 40)
INK = (34, 34, 34)


def _hwc_u8(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise DataError(f"An image must be (3, H, W) or (H, W, 3), not shape {np.shape(image)}.")
    if a.dtype != np.uint8:
        a = (np.clip(np.asarray(a, np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
    return a


def common_factor(clean: np.ndarray, advs: Sequence[np.ndarray], target: float = 0.5) -> float:
    """The one amplification for a row of methods: the largest change of ANY of them reaches ``target``."""
    c = np.asarray(clean, np.float64)
    top = max((float(np.abs(np.asarray(a, np.float64) - c).max(initial=0.0)) for a in advs), default=0.0)
    return nice_factor(top, target)


def amplified(clean: np.ndarray, adv: np.ndarray, factor: float) -> np.ndarray:
    """``0.5 + factor * (adv - clean)`` as an ``(H, W, 3)`` uint8 image (grey = unchanged)."""
    d = np.asarray(adv, np.float64) - np.asarray(clean, np.float64)
    return _hwc_u8(np.clip(0.5 + float(factor) * d, 0, 1))


def level_counts(clean: np.ndarray, adv_8bit: np.ndarray) -> np.ndarray:
    """``counts[k]``: how many pixel channels moved by exactly ``k`` 8-bit levels (k = 0 ... 255)."""
    c, a = _hwc_u8(clean).astype(np.int64), _hwc_u8(adv_8bit).astype(np.int64)
    if c.shape != a.shape:
        raise DataError(f"The clean and adversarial images differ in shape: {c.shape} vs {a.shape}.")
    return np.bincount(np.abs(a - c).ravel(), minlength=256)


def level_histogram_figure(clean: np.ndarray, advs_8bit: Sequence[np.ndarray], names: Sequence[str]) -> go.Figure:
    """Per method, the share of pixel channels moved by 0, 1, 2, ... 8-bit levels (log-scale counts)."""
    if len(advs_8bit) != len(names) or not names:
        raise InvalidInput("Give one name per adversarial image (and at least one).")
    counts = [level_counts(clean, a) for a in advs_8bit]
    top = max(int(np.flatnonzero(c).max(initial=0)) for c in counts)
    fig = go.Figure()
    for name, c in zip(names, counts, strict=True):
        fig.add_trace(go.Bar(x=np.arange(top + 1), y=c[: top + 1], name=name,
                             hovertemplate="%{y} channels moved %{x} levels<extra>" + name + "</extra>",
                             meta={"kind": "levels", "method": name}))  # fmt: skip
    fig.update_layout(barmode="group", xaxis={"title": "8-bit levels a pixel channel moved", "dtick": 1},
                      yaxis={"title": "pixel channels", "type": "log"}, height=320,
                      margin={"l": 60, "r": 20, "t": 30, "b": 50})  # fmt: skip
    return fig


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """An 8-bit PNG of ``image``, upscaled ``scale`` times with nearest neighbour."""
    a = _hwc_u8(image)
    if scale > 1:
        a = a.repeat(scale, 0).repeat(scale, 1)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _data_uri(image: np.ndarray, scale: int) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image, scale)).decode("ascii")


def blink_html(clean: np.ndarray, adv: np.ndarray, size: int = 320, period_ms: int = 1000, caption: str = "") -> str:
    """A flicker between the clean and the adversarial image (CSS only, no script, nothing fetched)."""
    if not 100 <= int(period_ms) <= 10_000:
        raise InvalidInput(f"The blink period must be 100 to 10000 ms, not {period_ms!r}.")
    a, b = _data_uri(clean, 1), _data_uri(adv, 1)
    cap = html.escape(caption)
    return f"""<div style="font-family:sans-serif">
<style>
@keyframes mlvis-blink {{ 0%, 49.9% {{ opacity: 1 }} 50%, 100% {{ opacity: 0 }} }}
.mlvis-blink {{ position: relative; width: {size}px; height: {size}px }}
.mlvis-blink img {{ position: absolute; inset: 0; width: 100%; height: 100%; image-rendering: pixelated }}
.mlvis-blink img.top {{ animation: mlvis-blink {int(period_ms)}ms steps(1) infinite }}
@media (prefers-reduced-motion: reduce) {{ .mlvis-blink img.top {{ animation-duration: {4 * int(period_ms)}ms }} }}
</style>
<div class="mlvis-blink" role="img" aria-label="clean and adversarial image, alternating">
<img class="bottom" src="{b}" alt="adversarial"><img class="top" src="{a}" alt="clean"></div>
<div style="font-size:0.85em;color:#666">{cap}</div></div>"""


def loupe_html(image: np.ndarray, size: int = 320, zoom: int = 4, lens: int = 120) -> str:
    """The image with a zoom loupe that follows the pointer (inline script; the image inlined, crisp)."""
    if not 2 <= int(zoom) <= 16:
        raise InvalidInput(f"The loupe's zoom must be 2 to 16, not {zoom!r}.")
    uri = _data_uri(image, 1)
    big = size * int(zoom)
    return f"""<div class="mlvis-loupe" style="position:relative;width:{size}px;height:{size}px;cursor:none">
<img src="{uri}" alt="image under the loupe"
 style="width:100%;height:100%;image-rendering:pixelated;display:block">
<div class="lens" style="display:none;position:absolute;width:{lens}px;height:{lens}px;border-radius:50%;
border:2px solid #444;pointer-events:none;background-image:url('{uri}');background-repeat:no-repeat;
background-size:{big}px {big}px;image-rendering:pixelated"></div>
<script>(function(){{const root=document.currentScript.parentElement,lens=root.querySelector('.lens');
root.addEventListener('mousemove',e=>{{const r=root.getBoundingClientRect(),x=e.clientX-r.left,y=e.clientY-r.top;
lens.style.display='block';lens.style.left=(x-{lens}/2)+'px';lens.style.top=(y-{lens}/2)+'px';
lens.style.backgroundPosition=(-x*{zoom}+{lens}/2)+'px '+(-y*{zoom}+{lens}/2)+'px';}});
root.addEventListener('mouseleave',()=>{{lens.style.display='none';}});}})();</script></div>"""


def slide_layout(
    clean: np.ndarray,
    adv: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    labels: Sequence[str],
    threshold: float,
    factor: float,
    order: Sequence[int] | None = None,
    title: str = "",
    scale: int = 6,
) -> tuple[tuple[int, int], list[tuple]]:
    """The slide as drawing primitives ``((width, height), [(kind, ...), ...])``, shared by the PNG and SVG.

    Kinds: ``("image", x, y, w, h, uint8 array)``, ``("text", x, y, text, size, rgb)``,
    ``("rect", x0, y0, x1, y1, rgb)``, ``("line", x0, y0, x1, y1, rgb, width)``.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not 1 <= scale <= 32:
        raise InvalidInput(f"The upscaling factor must be a whole number from 1 to 32, not {scale!r}.")
    c, a = _hwc_u8(clean), _hwc_u8(adv)
    before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
    if before.shape != (len(labels),) or after.shape != before.shape:
        raise InvalidInput(f"Give one confidence per label before and after ({len(labels)} labels).")
    idx = list(np.argsort(-before, kind="stable")) if order is None else [int(i) for i in order]
    if any(not 0 <= i < len(labels) for i in idx):
        raise InvalidInput(f"The label order must hold label indices from 0 to {len(labels) - 1}.")
    h, w = c.shape[0] * int(scale), c.shape[1] * int(scale)
    big, small = max(12, h // 18), max(10, h // 24)
    pad, head = max(8, h // 24), max(28, h // 8) + small
    row_h = max(14, min(h // max(len(idx), 1), h // 6))
    bars_w = max(260, w)
    size = (3 * (w + pad) + bars_w + 2 * pad, head + max(h, row_h * len(idx)) + 2 * pad)
    prims: list[tuple] = [("text", pad, pad // 2, title, big, INK)]
    tiles = ((c, "clean"), (a, "adversarial"), (amplified(clean, adv, factor), f"perturbation x{factor:g}"))
    for k, (tile, cap) in enumerate(tiles):
        x0 = pad + k * (w + pad)
        prims.append(("image", x0, head, w, h, tile.repeat(scale, 0).repeat(scale, 1)))
        prims.append(("text", x0, head - small - 6, cap, small, INK))
    x0 = pad + 3 * (w + pad)
    name_w = int(bars_w * 0.45)
    span = bars_w - name_w - pad
    for r, i in enumerate(idx):
        y = head + r * row_h
        flipped = bool((before[i] >= threshold) != (after[i] >= threshold))
        prims.append(("text", x0, y, labels[i][:28], small, FLIPPED if flipped else INK))
        bx = x0 + name_w
        prims.append(("rect", bx, y + 2, bx + int(span * before[i]), y + row_h // 2, BEFORE))
        colour = FLIPPED if flipped else AFTER
        prims.append(("rect", bx, y + row_h // 2, bx + int(span * after[i]), y + row_h - 2, colour))
    tx = x0 + name_w + int(span * threshold)
    prims.append(("line", tx, head, tx, head + row_h * len(idx), INK, 2))
    return size, prims


def slide_panel(*args, **kwargs) -> Image.Image:
    """One slide as a PIL image (see :func:`slide_layout` for the arguments): clean | adversarial |
    perturbation x ``factor`` | confidence bars (before grey, after blue, flipped red), every image upscaled
    ``scale`` times with nearest neighbour so pixels stay visible. Save it with ``.save(path, "PNG")``."""
    (width, height), prims = slide_layout(*args, **kwargs)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for p in prims:
        if p[0] == "image":
            img.paste(Image.fromarray(p[5]), (p[1], p[2]))
        elif p[0] == "text":
            draw.text((p[1], p[2]), p[3], fill=p[5], font=ImageFont.load_default(size=p[4]))
        elif p[0] == "rect":
            if p[3] > p[1]:
                draw.rectangle(p[1:5], fill=p[5])
        else:
            draw.line(p[1:5], fill=p[5], width=p[6])
    return img


def slide_svg(*args, **kwargs) -> str:
    """The same slide as an SVG document: text and bars as vector elements (editable in slide software),
    the three images inlined as lossless PNG tiles drawn without smoothing."""
    return layout_svg(*slide_layout(*args, **kwargs))


def layout_svg(size: tuple[int, int], prims) -> str:
    """An SVG document of a slide layout's primitives (``("image", x, y, w, h, pixels)``, ``("text", x, y,
    text, size, colour)``, ``("rect", x0, y0, x1, y1, colour)`` filled, ``("frame", x0, y0, x1, y1, colour,
    width)`` outlined, ``("line", x0, y0, x1, y1, colour, width)``): the images as lossless PNG tiles drawn
    without smoothing, everything else as vector elements."""
    width, height = size
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
           f'<rect width="{width}" height="{height}" fill="white"/>']  # fmt: skip

    def rgb(c):
        return f"rgb({c[0]},{c[1]},{c[2]})"

    for p in prims:
        if p[0] == "image":
            uri = "data:image/png;base64," + base64.b64encode(png_bytes(p[5])).decode("ascii")
            out.append(f'<image x="{p[1]}" y="{p[2]}" width="{p[3]}" height="{p[4]}" href="{uri}" '
                       'style="image-rendering:pixelated"/>')  # fmt: skip
        elif p[0] == "text":
            out.append(f'<text x="{p[1]}" y="{p[2] + p[4]}" font-size="{p[4]}" fill="{rgb(p[5])}">'
                       f"{html.escape(p[3])}</text>")  # fmt: skip
        elif p[0] == "rect":
            if p[3] > p[1]:
                out.append(f'<rect x="{p[1]}" y="{p[2]}" width="{p[3] - p[1]}" height="{p[4] - p[2]}" '
                           f'fill="{rgb(p[5])}"/>')  # fmt: skip
        elif p[0] == "frame":
            out.append(f'<rect x="{p[1]}" y="{p[2]}" width="{p[3] - p[1]}" height="{p[4] - p[2]}" fill="none" '
                       f'stroke="{rgb(p[5])}" stroke-width="{p[6]}"/>')  # fmt: skip
        else:
            out.append(f'<line x1="{p[1]}" y1="{p[2]}" x2="{p[3]}" y2="{p[4]}" stroke="{rgb(p[5])}" '
                       f'stroke-width="{p[6]}"/>')  # fmt: skip
    out.append("</svg>")
    return "\n".join(out)
