"""8-bit awareness and lossless export.

``alpha`` is a tenth of an 8-bit level, so saving an adversarial image as an ordinary PNG rounds much of
a small attack away. :func:`quantize_8bit` gives the image an 8-bit file would hold, kept inside the
budget; :func:`save_png16` / :func:`load_png16` (a real 16-bit RGB PNG, written with zlib, read with
pypng) and :func:`save_npy` / :func:`load_npy` keep the attack.

The 8-bit rule (also in docs/decisions.md):

- L-inf: each pixel goes to the nearest 8-bit level inside ``[clean - eps, clean + eps] ∩ [0, 1]``, i.e.
  it is rounded to nearest, and rounded toward the clean value where nearest would leave the ball.
  When that interval holds no level at all (possible only for ``eps`` below half a level and a clean
  pixel off the 8-bit grid), the pixel takes the clean pixel's own 8-bit level, the least excursion.
- L2: round to nearest; when that leaves the ball, the whole image is rounded toward the clean value
  instead (each pixel to the level nearest the adversarial value between clean and adversarial, or the
  clean pixel's level when there is none), which for a clean image on the 8-bit grid never increases
  any coordinate of the perturbation, so the image stays inside the ball.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from mlvis.errors import InvalidInput
from mlvis.store import atomic_write

_TOL = 1e-4  # in 8-bit levels: float32 images on the 8-bit grid are off by up to ~1.5e-5 levels


def quantize_8bit_torch(adv: torch.Tensor, clean: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """8-bit levels (float64 tensor of integers 0..255) of ``adv`` kept in the ``eps`` ball around ``clean``.

    ``adv`` and ``clean`` are ``(M, 3, H, W)``, ``eps`` is ``(M,)``; the computation is in float64 on
    their device.
    """
    a = adv.double() * 255
    c = clean.double() * 255
    q = torch.round(a).clamp_(0, 255)
    c_level = torch.round(c).clamp_(0, 255)
    e = eps.double().view(-1, *([1] * (adv.dim() - 1))) * 255
    if norm == "linf":
        lo = torch.ceil((c - e).clamp(min=0) - _TOL)
        hi = torch.floor((c + e).clamp(max=255) + _TOL)
        inside = torch.minimum(torch.maximum(q, lo), hi)
        return torch.where(lo <= hi, inside, c_level)
    if norm == "l2":
        dims = tuple(range(1, adv.dim()))
        too_far = torch.linalg.vector_norm(q - c, 2, dim=dims) > e.flatten() + _TOL
        up = a >= c
        toward = torch.where(up, torch.floor(a + _TOL), torch.ceil(a - _TOL))
        ok = torch.where(up, toward >= c - _TOL, toward <= c + _TOL)
        toward = torch.where(ok, toward, c_level).clamp_(0, 255)
        return torch.where(too_far.view(-1, *([1] * (adv.dim() - 1))), toward, q)
    raise InvalidInput(f"Unknown norm {norm!r}; known norms: linf, l2.")


def quantize_8bit(adv: np.ndarray, clean: np.ndarray, eps: float | np.ndarray, norm: str = "linf") -> np.ndarray:
    """The ``uint8`` image an 8-bit file would hold, kept inside the budget (rule in the module docstring).

    Args:
        adv: adversarial images ``(..., 3, H, W)`` in [0, 1].
        clean: the clean images, broadcastable to ``adv``.
        eps: the budget, a scalar or one value per image (shape ``adv.shape[:-3]``).
        norm: ``"linf"`` or ``"l2"``.
    """
    adv = np.asarray(adv)
    lead = adv.shape[:-3]
    a = torch.from_numpy(np.ascontiguousarray(adv, dtype=np.float64)).reshape(-1, *adv.shape[-3:])
    c = torch.from_numpy(np.array(np.broadcast_to(clean, adv.shape), dtype=np.float64))
    e = torch.from_numpy(np.array(np.broadcast_to(np.asarray(eps, np.float64), lead))).reshape(-1)
    q = quantize_8bit_torch(a, c.reshape(a.shape), e, norm)
    return q.numpy().astype(np.uint8).reshape(adv.shape)


# ---------------------------------------------------------------------------------------------- files

PNG16_MAX_PIXELS = 4_000_000
"""The largest 16-bit PNG :func:`decode_png16` reads by default. pypng undoes the PNG filters in pure
Python: about 0.1 s per megapixel for unfiltered rows (what :func:`encode_png16` writes) but about 2 s for
the Paeth filter, so an untrusted upload is capped; :func:`load_png16` of one's own file is not."""


def _hwc(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or 3 not in (img.shape[0], img.shape[-1]):
        raise InvalidInput(f"an image must have shape (3, H, W) or (H, W, 3), not {img.shape}.")
    if img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)
    if not np.issubdtype(img.dtype, np.floating) or not np.isfinite(img).all() or img.min() < 0 or img.max() > 1:
        raise InvalidInput("an image to export must be float with finite values in [0, 1].")
    return img


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_png16(image: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (colour type 2, bit depth 16) of a float image in [0, 1]: level = round(x * 65535)."""
    img = _hwc(image)
    h, w, _ = img.shape
    levels = np.round(img.astype(np.float64) * 65535).astype(">u2")
    rows = levels.reshape(h, w * 3).view(np.uint8)  # big-endian bytes, 6 per pixel
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter 0 on every row
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return _PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def decode_png16(data: bytes, max_pixels: int | None = PNG16_MAX_PIXELS) -> np.ndarray:
    """Read a 16-bit RGB PNG as float32 ``(3, H, W)`` (``level / 65535``), with pypng.

    Every PNG filter (0-4) and Adam7 interlacing are read, whichever tool wrote the file.

    Args:
        data: the file's bytes.
        max_pixels: refuse larger images (see :data:`PNG16_MAX_PIXELS`); ``None`` for no limit.

    Raises:
        ValueError: not a PNG, a damaged one, not 16-bit RGB, or larger than ``max_pixels``.
    """
    import png

    if data[:8] != _PNG_SIGNATURE:
        raise InvalidInput("not a PNG file (bad signature).")
    try:
        reader = png.Reader(bytes=data)
        w, h, rows, info = reader.read()
        if info["bitdepth"] != 16 or info["planes"] != 3 or info["greyscale"] or info["alpha"]:
            raise InvalidInput("only 16-bit RGB PNGs (as save_png16 writes them) can be read here.")
        if max_pixels is not None and w * h > max_pixels:
            raise InvalidInput(f"the 16-bit PNG has {w * h} pixels; this reader takes at most {max_pixels}.")
        levels = np.empty((h, w * 3), np.uint16)
        y = 0
        for y, row in enumerate(rows, 1):  # pypng's rows of 16-bit levels, native byte order
            levels[y - 1] = np.frombuffer(row, np.uint16)
        if y != h:
            raise InvalidInput(f"corrupt PNG: {y} of its {h} rows are present.")
    except png.Error as e:
        raise InvalidInput(f"corrupt PNG: {e}.") from None
    except (zlib.error, IndexError, struct.error) as e:
        raise InvalidInput(f"corrupt PNG: its image data cannot be decoded ({e}).") from None
    return (levels.reshape(h, w, 3).astype(np.float32) / np.float32(65535)).transpose(2, 0, 1).copy()


def save_png16(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write ``image`` ((3, H, W) or (H, W, 3), float in [0, 1]) as a 16-bit RGB PNG, atomically."""
    return atomic_write(path, encode_png16(image))


def load_png16(path: str | os.PathLike) -> np.ndarray:
    """Read a 16-bit RGB PNG (:func:`save_png16`'s or another tool's): float32 ``(3, H, W)``; a file of
    :func:`save_png16` comes back as exactly ``round(x * 65535) / 65535``."""
    return decode_png16(Path(path).read_bytes(), max_pixels=None)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write an array as ``.npy`` (bit-exact), atomically; pickled objects are refused on load."""
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return atomic_write(path, buf.getvalue())


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """Read an ``.npy`` file written by :func:`save_npy` (no pickles)."""
    array: np.ndarray = np.load(Path(path), allow_pickle=False)
    return array
