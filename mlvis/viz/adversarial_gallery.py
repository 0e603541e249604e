"""Fig. 21 as a slide: the adversarial examples of each method at the Table IV budgets. No Streamlit.

:func:`gallery_layout` turns a :class:`mlvis.analysis.gallery.Gallery` into drawing primitives (the same kinds
as :func:`mlvis.viz.audit.slide_layout`), which :func:`gallery_image` paints with PIL (save it as PNG) and
:func:`gallery_svg` writes as an SVG (text as vector elements, the tiles as lossless PNGs drawn without
smoothing). Rows are budgets, columns the clean image and then the methods; each tile is the image on the
8-bit grid (what a saved PNG holds), upscaled with nearest neighbour so pixels stay visible, with its flips
under it (red when any), the 8-bit count where rounding changed it, the labels that flipped (``+`` up,
``−`` down), ``*`` where a subset method attacked every label (the paper's mark: the cell is BCE's), and a
frame round the most flips of the row. ``show="perturbation"`` draws ``0.5 + factor * (adv - clean)``
instead, with ONE factor for the whole grid (:func:`mlvis.viz.audit.common_factor`) so stronger
perturbations look stronger.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mlvis.errors import InvalidInput
from mlvis.viz.audit import amplified, common_factor, layout_svg

INK = (34, 34, 34)
MUTED = (110, 110, 110)
FLIPPED = (214, 39, 40)
BEST = (214, 39, 40)
SHOWS = ("adversarial", "perturbation")


def _hwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a).transpose(1, 2, 0))


def tile_scale(height: int, target: int = 144) -> int:
    """The nearest-neighbour upscaling that makes an image of ``height`` pixels about ``target`` tall (1 ... 8)."""
    return int(min(8, max(1, math.ceil(target / max(int(height), 1)))))


def gallery_factor(g) -> float:
    """The one amplification of the perturbation view: the largest 8-bit change of any cell reaches 0.5."""
    clean = g.clean_8bit.astype(np.float64) / 255
    return common_factor(clean, [a.astype(np.float64) / 255 for a in g.adv_8bit.reshape(-1, *g.clean.shape)])


def gallery_layout(g, show: str = "adversarial", scale: int | None = None, labels_shown: int = 3, title: str = ""):
    """The slide as ``((width, height), primitives)``; kinds as in :func:`mlvis.viz.audit.slide_layout`, plus
    ``("frame", x0, y0, x1, y1, rgb, width)``.

    Args:
        g: the gallery.
        show: ``"adversarial"`` (the 8-bit adversarial images) or ``"perturbation"`` (amplified, one factor).
        scale: the nearest-neighbour upscaling (default: :func:`tile_scale` of the image height).
        labels_shown: how many flipped labels to name under a tile (the rest are counted).
        title: the slide's title (default: the model and what is shown).
    """
    if show not in SHOWS:
        raise InvalidInput(f"The option show must be one of {', '.join(SHOWS)}, not {show!r}.")
    h0, w0 = g.clean.shape[1:]
    scale = tile_scale(h0) if scale is None else scale
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not 1 <= scale <= 16:
        raise InvalidInput(f"The upscaling factor must be a whole number from 1 to 16, not {scale!r}.")
    if isinstance(labels_shown, bool) or not isinstance(labels_shown, (int, np.integer)) or labels_shown < 0:
        raise InvalidInput(f"The option labels_shown must be a whole number of at least 0, not {labels_shown!r}.")
    h, w = h0 * int(scale), w0 * int(scale)
    font = max(11, min(16, w // 11))
    line = font + 4
    pad = max(8, w // 14)
    head_w = max(int(8.5 * font), 120)
    title_h = font + 14 + line
    col_h = 2 * line
    lines_under = 1 + (2 if labels_shown else 0)
    cell_h = h + lines_under * line + pad
    n_cols, n_rows = 1 + len(g.methods), len(g.eps)
    width = head_w + n_cols * (w + pad) + pad
    height = title_h + col_h + n_rows * cell_h + pad
    chars = max(6, int(w / (0.58 * font)))
    factor = gallery_factor(g) if show == "perturbation" else None
    clean_u8 = g.clean_8bit
    what = "adversarial images (8-bit)" if factor is None else f"perturbations × {factor:g} (grey = unchanged)"
    prims: list[tuple] = [
        ("text", pad, pad // 2, title or f"{g.model}: {what} at {n_rows} budgets (Fig. 21)", font + 4, INK),
        ("text", pad, pad // 2 + font + 8,
         "flips under each tile (red when any); + flipped up, − flipped down; * = every label targeted (BCE's); "
         "frame = most flips of the row", max(10, font - 2), MUTED),
    ]  # fmt: skip
    names = ("clean", *g.methods)
    for j, name in enumerate(names):
        x0 = head_w + j * (w + pad)
        prims.append(("text", x0, title_h + (col_h - line) // 2, _fit(name, chars), font, INK))
    present = int(g.clean_pred.sum())
    for k in range(n_rows):
        y0 = title_h + col_h + k * cell_h
        frac = g.fractions[k]
        prims.append(("text", pad, y0 + h // 2 - line, f"ε = {g.eps[k]:.4g}", font, INK))
        if np.isfinite(frac):
            prims.append(("text", pad, y0 + h // 2, f"{frac:.0%} of ε_max", max(10, font - 2), MUTED))
        prims.append(("image", head_w, y0, w, h, _up(_hwc(clean_u8), scale)))
        prims.append(("text", head_w, y0 + h + 4, _fit(f"{present} present", chars), font, MUTED))
        top = int(g.flips[:, k].max(initial=0))
        for m in range(len(g.methods)):
            c = g.cell(m, k)
            x0 = head_w + (m + 1) * (w + pad)
            tile = _hwc(c.image_8bit) if factor is None else amplified(clean_u8 / 255, c.image_8bit / 255, factor)
            prims.append(("image", x0, y0, w, h, _up(tile, scale)))
            if top > 0 and c.flips == top:
                prims.append(("frame", x0 - 3, y0 - 3, x0 + w + 2, y0 + h + 2, BEST, 3))
            text = f"{c.flips} flip{'s' if c.flips != 1 else ''}"
            if c.flips_8bit != c.flips:
                text += f" (8-bit {c.flips_8bit})"
            if c.same_as_baseline:
                text += " *"
            prims.append(("text", x0, y0 + h + 4, _fit(text, chars), font, FLIPPED if c.flips else INK))
            if labels_shown:
                named = [f"+{n}" for n in c.flipped_up] + [f"−{n}" for n in c.flipped_down]
                more = [f"+{len(named) - labels_shown} more"] if len(named) > labels_shown else []
                small = max(10, font - 2)
                for r, text in enumerate(_wrap(named[:labels_shown] + more, int(chars * font / small), 2)):
                    prims.append(("text", x0, y0 + h + 4 + (r + 1) * line, text, small, MUTED))
    return (width, height), prims


#: TrueType fonts with Greek letters, tried in order (PIL's built-in font has none: it is the fallback)
FONTS = ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf", "Helvetica.ttc")
#: what the fallback font writes instead of the characters it lacks
ASCII = {"ε": "eps", "γ": "g", "−": "-", "×": "x", "…": "...", "_": "_"}


@functools.lru_cache(maxsize=32)
def _font(size: int):
    """``(font, unicode)``: the first of :data:`FONTS` found on this system at ``size``, else PIL's own."""
    for name in FONTS:
        try:
            return ImageFont.truetype(name, size), True
        except OSError:
            continue
    return ImageFont.load_default(size=size), False


def _pil_text(text: str, unicode: bool) -> str:
    return text if unicode else "".join(ASCII.get(ch, ch) for ch in text)


def gallery_image(g, **kwargs) -> Image.Image:
    """The gallery as a PIL image (see :func:`gallery_layout`); ``.save(path, "PNG")`` keeps it lossless.

    Text is drawn with a system font that has Greek letters when there is one (:data:`FONTS`), else with PIL's
    built-in font and ASCII spellings (``eps``, ``g``) of the characters it lacks."""
    (width, height), prims = gallery_layout(g, **kwargs)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for p in prims:
        if p[0] == "image":
            img.paste(Image.fromarray(p[5]), (p[1], p[2]))
        elif p[0] == "text":
            font, unicode = _font(int(p[4]))
            draw.text((p[1], p[2]), _pil_text(p[3], unicode), fill=p[5], font=font)
        elif p[0] == "frame":
            draw.rectangle(p[1:5], outline=p[5], width=p[6])
    return img


def gallery_png(g, **kwargs) -> bytes:
    """:func:`gallery_image` as PNG bytes."""
    import io

    buf = io.BytesIO()
    gallery_image(g, **kwargs).save(buf, format="PNG")
    return buf.getvalue()


def gallery_svg(g, **kwargs) -> str:
    """The gallery as an SVG document (text editable in slide software, tiles as lossless inlined PNGs)."""
    return layout_svg(*gallery_layout(g, **kwargs))


def _up(tile: np.ndarray, scale: int) -> np.ndarray:
    return np.ascontiguousarray(tile.repeat(scale, 0).repeat(scale, 1))


def _wrap(words: list[str], chars: int, lines: int) -> list[str]:
    """``words`` joined by spaces into at most ``lines`` lines of ``chars`` characters (the last one cut)."""
    out: list[str] = []
    for word in words:
        if out and len(out[-1]) + 1 + len(word) <= chars:
            out[-1] += " " + word
        elif len(out) < lines:
            out.append(word)
        else:
            out[-1] = _fit(out[-1] + " " + word, chars)
            break
    return [_fit(t, chars) for t in out]


def _fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(chars - 1, 1)] + "…"
