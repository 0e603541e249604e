"""Computed artifacts of a model (flip profiles, correlation matrices): shipped, cached, looked up.

An artifact is a JSON document carrying the fingerprint of the weights it was computed on and the
settings it was computed with. The demo models ship theirs beside their weights
(``mlvis/models/weights/{name}.{kind}.json``, reproducible with the CLI); anything computed
is cached under :func:`mlvis.store.cache_dir`, written atomically. A lookup never serves an
artifact whose fingerprint differs from the model's weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlvis.store import artifact_path, atomic_write_text, cache_dir, model_fingerprint


def _model_name(model) -> str:
    spec = getattr(model, "spec", None)
    return getattr(spec, "name", None) or type(model).__name__


def shipped_path(kind: str, model_name: str) -> Path:
    from mlvis.models.demo import WEIGHTS_DIR

    return WEIGHTS_DIR / f"{model_name}.{kind}.json"


def find(kind: str, model, settings: dict | None = None) -> dict | None:
    """The artifact ``kind`` for these weights (and these settings, if given): the shipped one first,
    then the most recently written cached one; ``None`` when there is none."""
    name, fp = _model_name(model), model_fingerprint(model)
    candidates = [shipped_path(kind, name)]
    folder = cache_dir() / artifact_path(kind, name, fp, {}).parent.name
    if folder.is_dir():
        candidates += sorted(folder.glob(f"{kind}-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # missing or unreadable: not an artifact
        if doc.get("fingerprint") != fp:
            continue
        if settings is not None and doc.get("settings") != json.loads(json.dumps(settings)):
            continue
        return doc
    return None


def save(kind: str, model, settings: dict, payload: dict, path: Path | None = None) -> Path:
    """Write ``payload`` with the weights' fingerprint and ``settings`` to the cache (or ``path``)."""
    name, fp = _model_name(model), model_fingerprint(model)
    doc = {"kind": kind, "model": name, "fingerprint": fp, "settings": settings, **payload}
    path = Path(path) if path is not None else artifact_path(kind, name, fp, settings)
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return path
