"""Computed artifacts of a model (flip profiles, correlation matrices): shipped, cached, looked up.

An artifact is a JSON document::

    {"schema": 1, "kind": "profile", "model": "demo-asl", "fingerprint": "...", "settings": {...},
     "profile": {...}, "checksum": "sha256:..."}

carrying the fingerprint of the weights it was computed on, the settings it was computed with, its
payload (``"profile"`` or ``"correlations"``), the schema version it follows and a checksum of all of
that (SHA-256 of the canonical JSON of every other field). The demo models ship theirs beside their
weights (``mlvis/models/weights/{name}.{kind}.json``, reproducible with the CLI); anything computed is
cached under :func:`mlvis.store.cache_dir`, written atomically.

A lookup trusts nothing that merely parses. It serves a document only when it is a JSON object of
a schema this version reads, of the asked kind, for these weights (fingerprint), with an intact
checksum, and with a payload that parses into the artifact and fits the model (its label count and
names). Anything else is skipped with an :class:`ArtifactWarning` naming the file and the reason,
and the lookup goes on to the next candidate, so a newer broken file never hides an older valid one;
the caller then recomputes. Shipped documents written before the schema existed (no ``schema``, no
``checksum``) are still read: they are part of the package, not of a writable cache.

Schemas: 1, and 2 since flip profiles know their norm (``"norm": "l2"`` in the payload of an L2 profile;
absent means L-inf). A document is written with the oldest schema that describes it: an L-inf profile and
the correlation matrices stay schema 1, byte for byte what an older mlvis wrote and read; an L2 profile is
schema 2, so an mlvis that would read it as an L-inf one refuses it instead. The shipped L2 profiles lie
beside the L-inf ones as ``{name}.profile-l2.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

from mlvis.errors import InvalidInput
from mlvis.store import StoreError, artifact_path, atomic_write_text, check_cache_dir, model_fingerprint, model_folder

SCHEMA = 2  # the newest artifact schema this version writes and reads (2: L2 flip profiles)
_PAYLOAD = {"profile": "profile", "correlations-up": "correlations", "correlations-down": "correlations"}


class ArtifactWarning(UserWarning):
    """A shipped or cached artifact was skipped (broken, foreign or of a newer schema) or not cached."""


def _model_name(model) -> str:
    spec = getattr(model, "spec", None)
    return getattr(spec, "name", None) or type(model).__name__


def _model_labels(model) -> tuple[str, ...] | None:
    labels = getattr(model, "labels", None)
    if labels is None:
        labels = getattr(getattr(model, "spec", None), "labels", None)
    return None if labels is None else tuple(str(label) for label in labels)


def shipped_path(kind: str, model_name: str, norm: str = "linf") -> Path:
    """The shipped document of ``kind``; an L2 profile is ``{name}.profile-l2.json``."""
    from mlvis.models.demo import WEIGHTS_DIR

    suffix = "" if norm == "linf" or kind != "profile" else f"-{norm}"
    return WEIGHTS_DIR / f"{model_name}.{kind}{suffix}.json"


def payload_norm(kind: str, doc: dict) -> str | None:
    """The norm of a profile document's payload (``"linf"`` when it does not say); ``None`` for other kinds."""
    if _PAYLOAD.get(kind) != "profile":
        return None
    payload = doc.get("profile")
    return str(payload.get("norm", "linf")) if isinstance(payload, dict) else "linf"


def schema_for(kind: str, payload: dict) -> int:
    """The oldest schema that describes ``payload`` (see the module docstring): 2 for an L2 profile, else 1."""
    profile = payload.get("profile") if _PAYLOAD.get(kind) == "profile" else None
    return 2 if isinstance(profile, dict) and profile.get("norm", "linf") != "linf" else 1


def checksum(doc: dict) -> str:
    """``"sha256:<hex>"`` of the canonical JSON (sorted keys, no spaces) of every field but ``checksum``."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class _Skip(Exception):
    """This candidate is not served; ``quiet`` for the ordinary case of another model's weights."""

    def __init__(self, reason: str, quiet: bool = False):
        super().__init__(reason)
        self.quiet = quiet


def _validate(kind: str, doc, fp: str, labels: tuple[str, ...] | None, shipped: bool) -> None:
    """Raise :class:`_Skip` unless ``doc`` is a valid artifact ``kind`` of these weights and labels."""
    if not isinstance(doc, dict):
        raise _Skip(f"it holds a JSON {type(doc).__name__}, not an artifact document")
    if doc.get("fingerprint") != fp:
        raise _Skip("it belongs to other weights", quiet=shipped)
    schema = doc.get("schema")
    if schema is None:
        if not shipped:
            raise _Skip("it has no schema version or checksum (written by an older mlvis)")
    elif not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise _Skip(f"its schema version {schema!r} is not valid")
    elif schema > SCHEMA:
        raise _Skip(f"it follows schema {schema}, newer than this mlvis reads ({SCHEMA}); upgrade mlvis")
    if "checksum" in doc or schema is not None:
        if doc.get("checksum") != checksum(doc):
            raise _Skip("its checksum does not match its content (the file was changed or damaged)")
    if doc.get("kind") != kind:
        raise _Skip(f"it is a {doc.get('kind')!r} artifact, not {kind!r}")
    if not isinstance(doc.get("settings"), dict):
        raise _Skip("its settings are not a JSON object")
    key = _PAYLOAD[kind]
    if not isinstance(doc.get(key), dict):
        raise _Skip(f"its {key!r} is not a JSON object")
    try:
        if key == "profile":
            from mlvis.analysis.profiles import FlipProfile

            n = FlipProfile.from_dict(doc[key]).labels
            names = None
        else:
            from mlvis.analysis.landscape import CorrelationMatrix

            cm = CorrelationMatrix.from_dict(doc[key])
            if f"correlations-{cm.direction}" != kind:
                raise _Skip(f"it holds a flip-{cm.direction} matrix, not {kind!r}")
            n, names = len(cm.labels), tuple(cm.labels)
    except _Skip:
        raise
    except Exception as e:  # untrusted content: whatever fails to parse is not served
        raise _Skip(str(e) or type(e).__name__) from None
    if labels is not None:
        if n != len(labels):
            raise _Skip(f"it covers {n} labels, the model has {len(labels)}")
        if names is not None and names != labels:
            raise _Skip("its label names differ from the model's")


def _candidates(kind: str, name: str, fp: str, norm: str = "linf") -> list[tuple[Path, bool]]:
    """The shipped document, then the cached ones of these weights, newest first."""
    out = [(shipped_path(kind, name, norm), True)]
    folder = model_folder(name, fp)
    try:
        cached = [(p, p.stat().st_mtime) for p in folder.glob(f"{kind}-*.json") if p.is_file()]
    except OSError:
        cached = []
    out += [(p, False) for p, _ in sorted(cached, key=lambda pm: pm[1], reverse=True)]
    return out


def find(kind: str, model, settings: dict | None = None, norm: str = "linf") -> dict | None:
    """The artifact ``kind`` for these weights (and these settings, if given): the shipped one first,
    then the most recently written valid cached one; ``None`` when there is none. A profile is looked up
    in ``norm`` (a profile of the other norm is never served for it).

    Invalid documents are skipped with an :class:`ArtifactWarning` (see the module docstring).
    """
    if kind not in _PAYLOAD:
        raise InvalidInput(f"Unknown artifact kind {kind!r}; known kinds: {', '.join(_PAYLOAD)}.")
    name, fp, labels = _model_name(model), model_fingerprint(model), _model_labels(model)
    wanted = None if settings is None else json.loads(json.dumps(settings))
    for path, shipped in _candidates(kind, name, fp, norm):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as e:
            _warn(path, f"it cannot be read ({getattr(e, 'strerror', None) or e})")
            continue
        try:
            doc = json.loads(text)
            _validate(kind, doc, fp, labels, shipped)
        except ValueError as e:
            _warn(path, f"it is not valid JSON ({e})")
            continue
        except RecursionError:
            _warn(path, "it is nested too deeply to be an artifact")
            continue
        except _Skip as e:
            if not e.quiet:
                _warn(path, str(e))
            continue
        if wanted is not None and doc["settings"] != wanted:
            continue
        if payload_norm(kind, doc) not in (None, norm):
            continue  # the other norm's profile of these weights: valid, just not the one asked for
        return doc
    return None


def _warn(path: Path, reason: str) -> None:
    warnings.warn(ArtifactWarning(f"Skipped the artifact {path}: {reason}; it is not used."), stacklevel=3)


def document(kind: str, model, settings: dict, payload: dict) -> dict:
    """The artifact document (schema, fingerprint, settings, payload, checksum) for ``payload``."""
    if kind not in _PAYLOAD:
        raise InvalidInput(f"Unknown artifact kind {kind!r}; known kinds: {', '.join(_PAYLOAD)}.")
    doc = {"schema": schema_for(kind, payload), "kind": kind, "model": _model_name(model),
           "fingerprint": model_fingerprint(model), "settings": settings, **payload}  # fmt: skip
    doc = json.loads(json.dumps(doc))  # plain JSON types, exactly what a reader will parse
    doc["checksum"] = checksum(doc)
    return doc


def cache_writable(kind: str) -> bool:
    """Check the cache folder before a computation that would cache a ``kind`` (:func:`mlvis.store.check_cache_dir`):
    ``True`` when it can be written; otherwise an :class:`ArtifactWarning` says at once, before the work, that
    the result will be computed but not cached (and why), and ``False`` tells the caller not to try."""
    try:
        check_cache_dir()
    except (StoreError, OSError) as e:
        warnings.warn(ArtifactWarning(f"The {kind} will be computed but not cached: {e}"), stacklevel=3)
        return False
    return True


def save(kind: str, model, settings: dict, payload: dict, path: str | os.PathLike | None = None) -> Path | None:
    """Write ``payload`` as an artifact document to the cache (or to ``path``), atomically.

    A cache that cannot be written (checked before the write, see :func:`mlvis.store.check_cache_dir`)
    does not lose the caller's result: the artifact is not cached, an :class:`ArtifactWarning` says why,
    and ``None`` is returned. An explicit ``path`` that cannot be written raises.
    """
    doc = document(kind, model, settings, payload)
    text = json.dumps(doc, indent=1) + "\n"
    if path is not None:
        return atomic_write_text(Path(path), text)
    target = artifact_path(kind, doc["model"], doc["fingerprint"], settings)
    try:
        check_cache_dir()
        return atomic_write_text(target, text)
    except (StoreError, OSError) as e:
        warnings.warn(ArtifactWarning(f"The {kind} was computed but not cached: {e}"), stacklevel=2)
        return None
