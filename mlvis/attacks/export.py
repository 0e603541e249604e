"""8-bit awareness and lossless export.

``alpha`` is a tenth of an 8-bit level, so saving an adversarial image as an ordinary PNG rounds much of
a small attack away. :func:`quantize_8bit` gives the image an 8-bit file would hold, kept inside the
budget; :func:`save_png16` / :func:`load_png16` (a real 16-bit RGB PNG, written with zlib) and
:func:`save_npy` / :func:`load_npy` keep the attack.

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
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

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
    raise ValueError(f"Unknown norm {norm!r}; known norms: linf, l2.")


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


def _atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _hwc(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or 3 not in (img.shape[0], img.shape[-1]):
        raise ValueError(f"an image must have shape (3, H, W) or (H, W, 3), not {img.shape}.")
    if img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)
    if not np.issubdtype(img.dtype, np.floating) or not np.isfinite(img).all() or img.min() < 0 or img.max() > 1:
        raise ValueError("an image to export must be float with finite values in [0, 1].")
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


def decode_png16(data: bytes) -> np.ndarray:
    """Read a 16-bit RGB PNG back as float32 ``(3, H, W)`` (``level / 65535``); filters 0-2 only."""
    if data[:8] != _PNG_SIGNATURE:
        raise ValueError("not a PNG file (bad signature).")
    pos, ihdr, idat = 8, None, []
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"corrupt PNG: bad CRC in chunk {kind!r}.")
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if ihdr is None or ihdr[2:] != (16, 2, 0, 0, 0):
        raise ValueError("only non-interlaced 16-bit RGB PNGs (as save_png16 writes them) can be read here.")
    w, h = ihdr[0], ihdr[1]
    stride = w * 6
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    if raw.size != h * (stride + 1):
        raise ValueError("corrupt PNG: image data has the wrong size.")
    raw = raw.reshape(h, stride + 1)
    out = np.empty((h, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:]
        if f == 0:
            cur = line
        elif f == 1:  # Sub: running sum per byte position within a 6-byte pixel, mod 256
            cur = np.cumsum(line.reshape(w, 6).astype(np.int64), axis=0).astype(np.uint8).reshape(-1)
        elif f == 2:  # Up
            cur = line + prev
        else:
            raise ValueError(f"PNG filter type {f} is not supported here; open the file with an image library.")
        out[y] = cur
        prev = cur
    levels = out.view(">u2").reshape(h, w, 3).astype(np.float32)
    return (levels / np.float32(65535)).transpose(2, 0, 1).copy()


def save_png16(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write ``image`` ((3, H, W) or (H, W, 3), float in [0, 1]) as a 16-bit RGB PNG, atomically."""
    path = Path(path)
    _atomic_write(path, encode_png16(image))
    return path


def load_png16(path: str | os.PathLike) -> np.ndarray:
    """Read a file written by :func:`save_png16`: float32 ``(3, H, W)``, exactly ``round(x * 65535) / 65535``."""
    return decode_png16(Path(path).read_bytes())


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write an array as ``.npy`` (bit-exact), atomically; pickled objects are refused on load."""
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    path = Path(path)
    _atomic_write(path, buf.getvalue())
    return path


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """Read an ``.npy`` file written by :func:`save_npy` (no pickles)."""
    return np.load(Path(path), allow_pickle=False)
