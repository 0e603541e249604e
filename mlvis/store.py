"""Files on disk: atomic writes (a reader never sees a half-written file)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[str], None], mode: int = 0o644) -> None:
    """Call ``write(tmp_path)`` for a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: Path(p).write_text(text))


# ------------------------------------------------------------------------------- artifacts cache


def cache_dir() -> Path:
    """Where computed artifacts (profiles, correlation matrices) are cached: ``$MLVIS_CACHE`` or
    ``~/.cache/mlvis``."""
    return Path(os.environ.get("MLVIS_CACHE") or Path.home() / ".cache" / "mlvis")


def model_fingerprint(model) -> str:
    """A short hash of a model's weights and buffers (names, shapes, dtypes, bytes): artifacts computed
    on one set of weights are never served for another."""
    import hashlib

    import torch

    h = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().cpu().reshape(-1)  # a flat copy in logical order (channels_last weights too)
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def settings_key(settings: dict) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def artifact_path(kind: str, model_name: str, fingerprint: str, settings: dict) -> Path:
    """The cache file for artifact ``kind`` ("profile", "correlations-up", ...) of these weights and settings."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model_name) or "model"
    return cache_dir() / f"{safe}-{fingerprint}" / f"{kind}-{settings_key(settings)}.json"
