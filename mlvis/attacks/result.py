"""``AttackResult``: what one attack method did to a batch of images at each budget, as CPU numpy arrays."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mlvis.attacks.export import save_npy, save_png16
from mlvis.errors import InvalidInput
from mlvis.store import atomic_write, confined, safe_stem

_ARRAYS = (
    "eps",
    "clean",
    "adv",
    "adv_8bit",
    "clean_probs",
    "adv_probs",
    "adv_probs_8bit",
    "flips",
    "flips_8bit",
    "linf",
    "l2",
    "steps",
)


@dataclasses.dataclass(frozen=True, eq=False)
class AttackResult:
    """One method's attack on ``N`` images at ``K`` budgets.

    Shapes: ``eps (K,)``; ``clean (N, 3, H, W)`` float32; ``adv (K, N, 3, H, W)`` float32 in [0, 1];
    ``adv_8bit (K, N, 3, H, W)`` uint8 (the adversarial image on the 8-bit grid, kept in the budget);
    ``clean_probs (N, C)``; ``adv_probs`` and ``adv_probs_8bit (K, N, C)``; ``flips``, ``flips_8bit``
    (labels whose prediction differs from the clean one, over all labels) and ``steps`` ``(K, N)`` int;
    ``linf``, ``l2`` (of ``adv - clean``), ``psnr`` (dB) and ``ssim`` ``(K, N)`` float64. PSNR and SSIM
    (scikit-image) are computed on first access and cached (about 1 ms per 64 x 64 image on a CPU core),
    so callers that never read them (profiles, correlation probes, sweeps) do not pay for them.

    Attributes:
        method: the registered method name; ``name`` is the display name (defaults to ``method``).
        labels: label names in output order; ``threshold``: the decision threshold on confidences.
        norm: ``"linf"`` or ``"l2"``; ``config``: a JSON-serialisable dict that repeats the run.
        targets: ``(K, N, C)`` label weights the loss used, when the method set them (CLASS's and the
            random subset's 0/1 masks: the chosen subsets), else ``None``.
    """

    method: str
    name: str
    norm: str
    labels: tuple[str, ...]
    threshold: float
    eps: np.ndarray
    clean: np.ndarray
    adv: np.ndarray
    adv_8bit: np.ndarray
    clean_probs: np.ndarray
    adv_probs: np.ndarray
    adv_probs_8bit: np.ndarray
    flips: np.ndarray
    flips_8bit: np.ndarray
    linf: np.ndarray
    l2: np.ndarray
    steps: np.ndarray
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    targets: np.ndarray | None = None
    _cache: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def psnr(self) -> np.ndarray:
        """``(K, N)`` PSNR in dB of each adversarial image against its clean image (``inf`` if untouched)."""
        if "psnr" not in self._cache:
            self._cache["psnr"], self._cache["ssim"] = _quality(self.clean, self.adv)
        return self._cache["psnr"]

    @property
    def ssim(self) -> np.ndarray:
        """``(K, N)`` SSIM of each adversarial image against its clean image."""
        if "ssim" not in self._cache:
            self._cache["psnr"], self._cache["ssim"] = _quality(self.clean, self.adv)
        return self._cache["ssim"]

    # ------------------------------------------------------------------------------------ derived
    @property
    def clean_pred(self) -> np.ndarray:
        """``(N, C)`` bool: confidence >= threshold on the clean images."""
        return self.clean_probs >= self.threshold

    @property
    def adv_pred(self) -> np.ndarray:
        """``(K, N, C)`` bool predictions on the adversarial images."""
        return self.adv_probs >= self.threshold

    @property
    def adv_pred_8bit(self) -> np.ndarray:
        return self.adv_probs_8bit >= self.threshold

    @property
    def num_images(self) -> int:
        return int(self.clean.shape[0])

    def index(self, eps: float) -> int:
        """Position of budget ``eps`` on the leading axis (nearest match within 1e-12)."""
        k = int(np.argmin(np.abs(self.eps - eps)))
        if abs(self.eps[k] - eps) > 1e-12:
            raise InvalidInput(f"eps {eps} is not in this result; its budgets are {self.eps.tolist()}.")
        return k

    def to_frame(self) -> Any:
        """A tidy ``pandas.DataFrame``: one row per (eps, image) with the per-image numbers."""
        import pandas as pd

        k, n = self.flips.shape
        return pd.DataFrame(
            {
                "method": self.name,
                "eps": np.repeat(self.eps, n),
                "image": np.tile(np.arange(n), k),
                "flips": self.flips.reshape(-1),
                "flips_8bit": self.flips_8bit.reshape(-1),
                "linf": self.linf.reshape(-1),
                "l2": self.l2.reshape(-1),
                "psnr": self.psnr.reshape(-1),
                "ssim": self.ssim.reshape(-1),
                "steps": self.steps.reshape(-1),
            }
        )

    def to_json(self) -> str:
        """The config and the per-(eps, image) table as JSON (no images)."""
        return json.dumps({"config": self.config, "rows": self.to_frame().to_dict(orient="records")})

    # -------------------------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Everything in one ``.npz`` (arrays + JSON config), written atomically."""
        meta = {
            "method": self.method,
            "name": self.name,
            "norm": self.norm,
            "labels": list(self.labels),
            "threshold": self.threshold,
            "config": self.config,
        }
        buf = io.BytesIO()
        arrays = {a: getattr(self, a) for a in (*_ARRAYS, "psnr", "ssim")}
        if self.targets is not None:
            arrays["targets"] = self.targets
        np.savez_compressed(buf, meta=np.array(json.dumps(meta)), **arrays)
        return atomic_write(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> AttackResult:
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {a: z[a] for a in _ARRAYS}
            cache = {a: z[a] for a in ("psnr", "ssim")}
            targets = z["targets"] if "targets" in z.files else None
        meta["labels"] = tuple(meta["labels"])
        return cls(**meta, **arrays, targets=targets, _cache=cache)

    def export(self, folder: str | os.PathLike, fmt: str = "png16") -> list[Path]:
        """Write every adversarial image losslessly: ``fmt="png16"`` (16-bit RGB PNG) or ``"npy"`` (bit-exact).

        Files are named ``{name}_eps{k}_img{i}.png`` / ``.npy`` inside ``folder`` (created when missing),
        with ``name`` made safe by :func:`mlvis.store.safe_stem`: any character outside letters, digits and
        ``. _ = + , -`` becomes ``_`` and a short hash of the original name is appended, so two methods
        never share a file (``"slam q=0.25"`` and ``"slam q=0.5"``) and no name leaves ``folder``
        (``"../escaped"``). Returns the paths.
        """
        if fmt not in ("png16", "npy"):
            raise InvalidInput(f"Unknown export format {fmt!r}; known formats: png16, npy.")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".png" if fmt == "png16" else ".npy"
        save = save_png16 if fmt == "png16" else save_npy
        stem = safe_stem(self.name)
        paths = []
        for k in range(self.adv.shape[0]):
            for i in range(self.adv.shape[1]):
                paths.append(save(confined(folder, f"{stem}_eps{k}_img{i}{suffix}"), self.adv[k, i]))
        return paths


def _quality(clean: np.ndarray, adv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PSNR and SSIM (scikit-image) of every ``adv[k, i]`` against ``clean[i]``, data range 1.

    SSIM is Wang et al.'s (Gaussian window, sigma 1.5, population covariance) when both sides are >= 11
    pixels, otherwise skimage's uniform window of the largest odd size <= min(7, side) (nan below 3).
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    k, n = adv.shape[:2]
    side = min(clean.shape[-2:])
    if side >= 11:
        kw: dict[str, Any] = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    else:
        kw = {"win_size": min(7, side if side % 2 else side - 1)}
    psnr = np.empty((k, n))
    ssim = np.full((k, n), np.nan)
    with np.errstate(divide="ignore"):
        for kk in range(k):
            for i in range(n):
                psnr[kk, i] = peak_signal_noise_ratio(clean[i], adv[kk, i], data_range=1.0)
                if side >= 3:
                    ssim[kk, i] = structural_similarity(clean[i], adv[kk, i], data_range=1.0, channel_axis=0, **kw)
    return psnr, ssim
