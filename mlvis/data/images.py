"""Images from files people upload: validated, converted to RGB and resized to a model's input size.

Pure Pillow + numpy (no Streamlit), so the dashboard, the CLI and tests share one set of rules:

- **formats**: PNG, JPEG and WebP only (the format is read from the file's content, not its name);
- **limits**: at most ``MAX_BYTES`` per file and ``MAX_PIXELS`` decoded pixels (checked from the
  header, before anything is decoded, so a decompression bomb costs nothing);
- **modes**: every Pillow mode that has a meaning as a picture is converted to RGB: palette and
  grey images are expanded, CMYK / YCbCr / LAB are converted, transparency (RGBA, LA, PA, or a
  palette's transparent colour) is flattened onto white, 16-bit grey (``I;16``) is scaled by 65535;
  EXIF orientation is applied; an animation keeps its first frame; anything else is refused;
- **16-bit RGB PNGs** (such as the Attack Lab's lossless download, ``mlvis.attacks.save_png16``)
  keep all 16 bits: Pillow would read them at 8 bits, so they are decoded here;
- **resizing** (``fit``): ``"crop"`` (default) cuts the largest centred region with the model's aspect
  ratio, then resizes it; ``"stretch"`` resizes the whole image (what ASL and Query2Label do in their
  test transforms). ``interpolation`` picks Pillow's filter: ``"lanczos"`` (default, antialiased),
  ``"bilinear"`` (torchvision's ``Resize`` on a PIL image, as ASL / Query2Label evaluate), ``"bicubic"``
  or ``"nearest"``. A model's card names both; ``mlvis.models.preprocess_for(spec)`` gives them. An 8-bit image
  is resized as 8 bits, so the model sees an image that an 8-bit file can hold exactly; an image that
  already has the model's size is not touched.

Every problem is an :class:`ImageError` (a ``ValueError``) whose message is one sentence that names
the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mlvis.errors import DataError, InvalidInput

FORMATS = ("PNG", "JPEG", "WEBP")
#: file extensions a file picker should offer (the content decides, not the name)
EXTENSIONS = ("png", "jpg", "jpeg", "webp")
MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000
MAX_FILES = 16
FITS = ("crop", "stretch")
FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}
_FORMAT_NAMES = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP"}
_PNG16_RGB = (16, 2, 0)  # bit depth, colour type (RGB), interlace


class ImageError(DataError):
    """An uploaded image that cannot be used; the message is a sentence for people."""


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedImage:
    """One validated image.

    Attributes:
        name: the file name it came from.
        array: ``(3, H, W)`` float32 in [0, 1], RGB, at the requested size.
        format: ``"PNG"``, ``"JPEG"`` or ``"WEBP"``.
        mode: the Pillow mode of the file (``"RGB"``, ``"RGBA"``, ``"P"``, ``"L"``, ``"CMYK"``, ...;
            ``"RGB;16"`` for a 16-bit RGB PNG).
        original_size: ``(width, height)`` of the file.
        notes: what was done to it, as short sentences (conversion, cropping, resizing).
    """

    name: str
    array: np.ndarray
    format: str
    mode: str
    original_size: tuple[int, int]
    notes: tuple[str, ...] = ()

    @property
    def resized(self) -> bool:
        return tuple(self.array.shape[1:]) != (self.original_size[1], self.original_size[0])

    @property
    def digest(self) -> str:
        return image_digest(self.array)


def image_digest(array: np.ndarray) -> str:
    """A short content hash of an image array (dtype, shape and bytes)."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.dtype}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]


def _png16_rgb(data: bytes) -> bool:
    """True for a non-interlaced 16-bit RGB PNG (read from the IHDR chunk)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 29:
        return False
    return (data[24], data[25], data[28]) == _PNG16_RGB


def _to_rgb(im: Image.Image, name: str) -> tuple[np.ndarray, list[str]]:
    """``(H, W, 3)`` uint8 or float32 array of a decoded Pillow image, and notes on the conversion."""
    notes: list[str] = []
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8), notes
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "PA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        alpha = np.asarray(rgba)[..., 3]
        if (alpha < 255).any():
            notes.append("its transparent parts were flattened onto white")
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8), notes
    if mode in ("L", "1", "P"):
        notes.append({"L": "grey", "1": "black-and-white", "P": "palette"}[mode] + " image converted to RGB")
        return np.asarray(im.convert("RGB"), dtype=np.uint8), notes
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        notes.append(f"{mode} image converted to RGB")
        return np.asarray(im.convert("RGB"), dtype=np.uint8), notes
    if mode.startswith("I;16") or mode == "I":
        grey = np.asarray(im, dtype=np.float64)
        scale = 65535.0 if mode.startswith("I;16") or grey.max(initial=0) > 255 else 255.0
        notes.append("16-bit grey image converted to RGB" if scale > 255 else "grey image converted to RGB")
        grey = np.clip(grey / scale, 0.0, 1.0).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=2), notes
    raise ImageError(f"{name}: its colour mode {mode!r} cannot be shown as an RGB picture; save it as an RGB image.")


def _crop_box(w: int, h: int, tw: int, th: int) -> tuple[int, int, int, int] | None:
    """The largest centred box of aspect ``tw / th`` in a ``w x h`` image, or ``None`` when it is all of it."""
    if w * th == h * tw:
        return None
    if w * th > h * tw:  # too wide
        cw = max(1, round(h * tw / th))
        left = (w - cw) // 2
        return left, 0, left + cw, h
    ch = max(1, round(w * th / tw))
    top = (h - ch) // 2
    return 0, top, w, top + ch


def _resize(
    arr: np.ndarray, size: tuple[int, int], fit: str, interpolation: str = "lanczos"
) -> tuple[np.ndarray, list[str]]:
    """Resize an ``(H, W, 3)`` uint8 or float32 array to ``size = (H, W)`` with the filter ``interpolation``."""
    resample = FILTERS[interpolation]
    th, tw = size
    h, w = arr.shape[:2]
    notes: list[str] = []
    if (h, w) == (th, tw):
        return arr, notes
    box = _crop_box(w, h, tw, th) if fit == "crop" else None
    if box is not None:
        notes.append(f"centre-cropped to {box[2] - box[0]}×{box[3] - box[1]}")
    notes.append(f"resized from {w}×{h} to {tw}×{th}" + ("" if interpolation == "lanczos" else f" ({interpolation})"))
    if box is not None:  # crop first: a resize with a box would let the filter reach outside it
        arr = arr[box[1] : box[3], box[0] : box[2]]
    if arr.dtype == np.uint8:
        return np.asarray(Image.fromarray(arr, "RGB").resize((tw, th), resample), np.uint8), notes
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(arr[..., c], np.float32), "F").resize((tw, th), resample)
        )
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=2), 0.0, 1.0).astype(np.float32), notes


def load_image(
    data: bytes, size: Sequence[int], name: str = "image", fit: str = "crop", interpolation: str = "lanczos"
) -> LoadedImage:
    """Validate one image file's bytes and return it as RGB float32 ``(3, H, W)`` at ``size = (H, W)``.

    ``fit`` and ``interpolation`` say how it is resized; pass a model's own rule with
    ``p = mlvis.models.preprocess_for(model.spec)``: ``load_image(data, p.size, fit=p.fit,
    interpolation=p.interpolation)``.

    Raises:
        ImageError: empty, too large, not PNG / JPEG / WebP, corrupt or truncated, too many pixels, or a
            colour mode that has no RGB meaning; the message names the file.
    """
    if fit not in FITS:
        raise InvalidInput(f"fit must be one of {', '.join(FITS)}, not {fit!r}.")
    if interpolation not in FILTERS:
        raise InvalidInput(f"interpolation must be one of {', '.join(FILTERS)}, not {interpolation!r}.")
    th, tw = (int(v) for v in size)
    if th < 1 or tw < 1:
        raise InvalidInput(f"size must be two positive integers (height, width), not {tuple(size)}.")
    data = bytes(data)
    if not data:
        raise ImageError(f"{name}: the file is empty.")
    if len(data) > MAX_BYTES:
        raise ImageError(f"{name}: the file is {len(data) / 2**20:.1f} MB; the limit is {MAX_BYTES // 2**20} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im: Image.Image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{name}: the image has more than {(Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} megapixels; "
            f"the limit is {MAX_PIXELS / 1e6:.0f} megapixels."
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{name}: this is not a PNG, JPEG or WebP image that can be read (or it is corrupt)."
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{name}: the image is corrupt or truncated and could not be decoded ({exc}).") from None
    fmt = (im.format or "").upper()
    if fmt not in FORMATS:
        raise ImageError(f"{name}: this is a {im.format or 'unknown'} image; upload PNG, JPEG or WebP.")
    w, h = im.size
    if w < 1 or h < 1:
        raise ImageError(f"{name}: the image has no pixels ({w}×{h}).")
    if w * h > MAX_PIXELS:
        raise ImageError(
            f"{name}: the image is {w}×{h} = {w * h / 1e6:.0f} megapixels; "
            f"the limit is {MAX_PIXELS / 1e6:.0f} megapixels."
        )
    notes: list[str] = []
    mode = im.mode
    try:
        if fmt == "PNG" and _png16_rgb(data):
            from mlvis.attacks.export import decode_png16

            try:
                arr: np.ndarray = decode_png16(data).transpose(1, 2, 0)
                mode = "RGB;16"
            except ValueError:  # a filter this decoder does not handle: Pillow reads 8 of the 16 bits
                im.load()
                arr, more = _to_rgb(im, name)
                notes += ["16-bit PNG read at 8 bits", *more]
        else:
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
                notes.append("an animation: its first frame is used")
            im.load()
            im = ImageOps.exif_transpose(im) or im
            arr, more = _to_rgb(im, name)
            notes += more
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"{name}: the image is corrupt or truncated and could not be decoded ({exc}).") from None
    arr, more = _resize(arr, (th, tw), fit, interpolation)
    notes += more
    out = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    out = np.ascontiguousarray(out.transpose(2, 0, 1))
    if not np.isfinite(out).all():
        raise ImageError(f"{name}: the image holds values that are not finite numbers.")
    return LoadedImage(name=str(name), array=out, format=fmt, mode=mode, original_size=(w, h), notes=tuple(notes))


def load_images(
    files: Iterable[tuple[str, bytes]],
    size: Sequence[int],
    fit: str = "crop",
    max_files: int = MAX_FILES,
    interpolation: str = "lanczos",
) -> tuple[list[LoadedImage], list[str]]:
    """Load several ``(name, bytes)`` files: ``(the good images, one error sentence per bad file)``.

    A bad file never stops the others; files beyond ``max_files`` are refused with one sentence.
    """
    good: list[LoadedImage] = []
    errors: list[str] = []
    files = list(files)
    for name, data in files[:max_files]:
        try:
            good.append(load_image(data, size, name=name, fit=fit, interpolation=interpolation))
        except ImageError as exc:
            errors.append(str(exc))
    if len(files) > max_files:
        rest = len(files) - max_files
        errors.append(
            f"Only {max_files} images are attacked at once; the last {rest} file{'s' * (rest != 1)} were left out."
        )
    return good, errors


def to_batch(images: Sequence[LoadedImage]) -> np.ndarray:
    """Stack loaded images into one ``(N, 3, H, W)`` float32 batch (they must share a size)."""
    if not images:
        raise DataError("There are no images to stack.")
    shapes = {im.array.shape for im in images}
    if len(shapes) != 1:
        raise DataError(f"The images have different sizes: {sorted(shapes)}.")
    return np.stack([im.array for im in images])
