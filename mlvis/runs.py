"""Run directories: long sweeps computed in chunks of images, resumable after any crash, local or on Ray.

A run directory holds::

    manifest.json              what is computed (model fingerprint, dataset, seed, methods, budgets,
                               software versions, number of items, chunk size): written once, then
                               checked by every later start
    chunks/chunk-000000.npz    the per-image results of images [0, chunk_size), one file per finished
    chunks/chunk-000001.npz    chunk, written atomically (temporary file + fsync + rename); the npz
    ...                        bytes are followed by their SHA-256, checked before anything is parsed,
                               so a file cut short or changed in any byte is recomputed, never read
    images/<key>/...           adversarial images, only when the compute function returns them:
                               uint8 arrays as one lossless PNG per image, float arrays as one .npy
                               per chunk (bit-exact)
    error.json                 the last failure, as a sentence (removed by the next start)

Every file of a run directory is read through :func:`read_run_file` (``mlvis.store.read_confined``): a
symbolic link inside the directory that leads outside it (``manifest.json -> /etc/...``, ``chunks -> ...``)
is refused with a sentence and never followed, even one swapped in while the file is opened; a link that
stays inside is read as usual.

Usage::

    manifest = make_manifest("evaluate", model=fingerprint, dataset=ds.describe(), seed=0,
                             methods=["bce", "slam"], budgets=eps.tolist())
    run = run_chunks("runs/coco-asl", manifest, len(ds), 25, AttackChunks("demo-asl", ds, ["bce"], eps))
    arrays = run.load()                    # {"bce.flips": (N, K), ...}, the chunks concatenated in order
    run_status("runs/coco-asl")            # RunStatus(done=4, total=4, ...), readable while it runs

``compute_chunk(start, stop)`` returns a dict of arrays whose first axis is the image
(``stop - start`` rows); the same call must give the same arrays whenever it runs (the engine's
per-sample normalisation makes an image's result independent of its batch-mates). With
``backend="ray"`` the chunks run as Ray tasks (one GPU each where the cluster has GPUs) and the
driver writes the files, so the directory is the same whichever backend computed it; a worker that
dies has its chunk retried. Ray is imported only when that backend is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import io
import json
import os
import platform
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlvis.errors import RecipeError

MANIFEST = "manifest.json"
CHUNKS = "chunks"
IMAGES = "images"
ERROR = "error.json"
LOCK = ".lock"
STAGES = "stages"
RESULT = "result.json"
FORMAT = 1
IMAGE_PREFIX = "images/"
BACKENDS = ("local", "ray")
_CHUNK_RE = re.compile(r"chunk-(\d{6,})\.npz")
_META = "__chunk__"
_TRAILER = b"\nmlvis-chunk-sha256:"  # after the npz bytes: SHA-256 of everything before it (zip readers ignore it)
# manifest entries that may differ between a run and its resumption: when it was created, and where the
# data lives (the dataset's fingerprint says which images they are, wherever the folder is mounted)
_VOLATILE = ("created", "dataset.root")

ComputeChunk = Callable[[int, int], Mapping[str, np.ndarray]]
Progress = Callable[[int, int], None]


class RunError(RecipeError):
    """A run directory that cannot be used or continued; the message is one sentence."""


# ------------------------------------------------------------------------------------ manifests


def software_versions() -> dict[str, str]:
    """The versions that decide the numbers: Python, numpy, torch and mlvis."""
    import torch

    import mlvis

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "mlvis": mlvis.__version__,
    }


def make_manifest(
    kind: str,
    *,
    model: str | Mapping[str, Any] | None = None,
    dataset: Mapping[str, Any] | None = None,
    seed: int | None = None,
    methods: Sequence[Any] = (),
    budgets: Sequence[float] = (),
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A run manifest: what is computed, and with which software.

    Args:
        kind: the command (``"evaluate"``, ``"profile"``, ``"correlations"``, ``"compare-related"``).
        model: the model's fingerprint (``mlvis.store.model_fingerprint``) or a dict (name, fingerprint, card).
        dataset: :meth:`mlvis.data.Dataset.describe` (or any JSON description of the images).
        seed, methods, budgets: as the command got them; ``settings``: everything else that changes numbers.
    """
    return _jsonable(
        {
            "kind": str(kind),
            "model": model,
            "dataset": dict(dataset) if dataset is not None else None,
            "seed": seed,
            "methods": list(methods),
            "budgets": [float(b) for b in budgets],
            "settings": dict(settings or {}),
            "versions": software_versions(),
        }
    )


# --------------------------------------------------------------------------------- the executor


@dataclasses.dataclass(frozen=True)
class RunStatus:
    """Progress of a run directory, read from the directory alone (a dashboard can poll it).

    Attributes:
        done: chunk files present; total: chunks the run has; num_items, chunk_size: from the manifest.
        error: the last failure's sentence, or ``None``.
    """

    path: Path
    done: int
    total: int
    num_items: int
    chunk_size: int
    manifest: dict[str, Any]
    error: str | None = None
    stage: str | None = None
    complete: bool | None = None

    @property
    def finished(self) -> bool:
        """Every chunk written (a staged run: its result written, see :func:`claim_run`)."""
        return self.complete if self.complete is not None else self.done >= self.total

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


def run_chunks(
    run_dir: str | os.PathLike,
    manifest: Mapping[str, Any],
    num_items: int,
    chunk_size: int,
    compute_chunk: ComputeChunk,
    backend: str = "local",
    progress: Progress | None = None,
    *,
    address: str | None = None,
    max_retries: int = 3,
    max_in_flight: int | None = None,
) -> Run:
    """Compute ``num_items`` items in chunks into ``run_dir``, continuing from the chunks already there.

    Args:
        run_dir: the run directory (created when missing).
        manifest: what is computed (:func:`make_manifest`); an existing directory must have the same one.
        num_items, chunk_size: chunk ``i`` covers items ``[i * chunk_size, min((i + 1) * chunk_size, num_items))``.
        compute_chunk: ``(start, stop) -> {name: array}`` with ``stop - start`` rows per array; arrays
            named ``images/...`` are written as image files (see the module docstring) instead of results.
        backend: ``"local"`` (this process, chunk after chunk) or ``"ray"`` (Ray tasks).
        progress: ``progress(done_chunks, total_chunks)`` after every chunk written (and once at the start).
        address: Ray only: ``None`` (the Ray already initialised in this process, else a new local one,
            shut down at the end), ``"auto"`` (the running cluster) or ``"HOST:PORT"``.
        max_retries: Ray only: how many times a chunk whose worker died is retried.
        max_in_flight: Ray only: chunks submitted at once (default: twice the workers), which bounds the
            driver's memory.

    Returns:
        The finished :class:`Run`.

    Raises:
        RunError: the directory holds a different run, is in use by another process, or a chunk failed.
    """
    if backend not in BACKENDS:
        raise RunError(f"The backend must be one of {', '.join(BACKENDS)}, not {backend!r}.")
    for name, v in (("num_items", num_items), ("chunk_size", chunk_size)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < (0 if name == "num_items" else 1):
            raise RunError(
                f"{name} must be a {'non-negative' if name == 'num_items' else 'positive'} integer, not {v!r}."
            )
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    full = _jsonable(dict(manifest))
    full.update({"format": FORMAT, "num_items": int(num_items), "chunk_size": int(chunk_size)})
    with _locked(path):
        _check_or_write_manifest(path, full)
        (path / ERROR).unlink(missing_ok=True)
        chunk_dir = path / CHUNKS
        chunk_dir.mkdir(exist_ok=True)
        for stray in chunk_dir.glob(".*.tmp"):  # left by a process killed while writing
            stray.unlink(missing_ok=True)
        bounds = chunk_bounds(num_items, chunk_size)
        pending = []
        for i, (start, stop) in enumerate(bounds):
            f = chunk_dir / chunk_name(i)
            if f.exists() and _read_chunk(path, f"{CHUNKS}/{f.name}", i, start, stop) is not None:
                continue
            f.unlink(missing_ok=True)  # partial, corrupt or a link leading out: recomputed, never read
            pending.append((i, start, stop))
        done = len(bounds) - len(pending)
        if progress is not None:
            progress(done, len(bounds))

        def finish(i: int, start: int, stop: int, out: Mapping[str, np.ndarray]) -> None:
            nonlocal done
            _write_chunk(path, i, start, stop, out)
            done += 1
            if progress is not None:
                progress(done, len(bounds))

        try:
            if backend == "local":
                for i, start, stop in pending:
                    finish(i, start, stop, compute_chunk(start, stop))
            else:
                _run_ray(pending, compute_chunk, finish, address, max_retries, max_in_flight)
        except Exception as exc:
            _durable_write(path / ERROR, json.dumps({"error": str(exc), "type": type(exc).__name__}).encode())
            raise
    return Run(path)


def chunk_bounds(num_items: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk_size, num_items)) for s in range(0, num_items, chunk_size)]


def chunk_name(index: int) -> str:
    return f"chunk-{index:06d}.npz"


# ------------------------------------------------------------------------------------ reading


@dataclasses.dataclass(frozen=True)
class Run:
    """A run directory, for reading: its manifest, progress, results and images."""

    path: Path

    @property
    def manifest(self) -> dict[str, Any]:
        return _read_manifest(self.path)

    def status(self) -> RunStatus:
        return run_status(self.path)

    def chunks(self, keys: Sequence[str] | None = None) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
        """``(start, stop, arrays)`` for every finished chunk in order (one chunk in memory at a time).

        Raises:
            RunError: a chunk file fails its checksum.
        """
        m = self.manifest
        for i, (start, stop) in enumerate(chunk_bounds(m["num_items"], m["chunk_size"])):
            rel = f"{CHUNKS}/{chunk_name(i)}"
            f = self.path / rel
            if not f.exists():
                continue
            arrays = _read_chunk(self.path, rel, i, start, stop)
            if arrays is None:
                leaves = _leaves(self.path, rel)
                why = "leads outside the run directory through a symbolic link" if leaves else "is partial or corrupt"
                raise RunError(f"{f} {why}; start the run again to recompute it.")
            yield start, stop, arrays if keys is None else {k: arrays[k] for k in keys}

    def chunk(self, index: int) -> dict[str, np.ndarray] | None:
        """Chunk ``index``'s arrays, or ``None`` when it is not written (or fails its checksum)."""
        m = self.manifest
        bounds = chunk_bounds(m["num_items"], m["chunk_size"])
        if not 0 <= index < len(bounds):
            return None
        rel = f"{CHUNKS}/{chunk_name(index)}"
        return _read_chunk(self.path, rel, index, *bounds[index]) if (self.path / rel).exists() else None

    def load(self, keys: Sequence[str] | None = None, partial: bool = False) -> dict[str, np.ndarray]:
        """Every chunk's arrays concatenated in item order.

        Args:
            keys: the arrays to load (default: all).
            partial: allow an unfinished run (the finished chunks only, in order).
        """
        st = self.status()
        if not st.finished and not partial:
            raise RunError(
                f"The run in {self.path} has {st.done} of its {st.total} chunks; finish it first (or pass partial)."
            )
        parts: dict[str, list[np.ndarray]] = {}
        for _, _, arrays in self.chunks(keys):
            if parts and set(arrays) != set(parts):
                raise RunError(f"The chunks in {self.path} do not hold the same arrays; the run directory is damaged.")
            for k, v in arrays.items():
                parts.setdefault(k, []).append(v)
        return {k: np.concatenate(v) for k, v in parts.items()}

    def image_keys(self) -> list[str]:
        d = self.path / IMAGES
        if not d.is_dir() or _leaves(self.path, IMAGES):
            return []
        return sorted(p.name for p in d.iterdir() if p.is_dir() and not _leaves(self.path, f"{IMAGES}/{p.name}"))

    def images(self, key: str) -> Iterator[tuple[int, np.ndarray]]:
        """``(item index, image array)`` of saved images ``key`` in order, read one file at a time.

        PNGs come back as uint8 ``([K,] 3, H, W)``; float images (saved per chunk as .npy) come back per item.
        """
        from PIL import Image

        folder = f"{IMAGES}/{_safe_key(key)}"
        d = self.path / folder
        if _leaves(self.path, folder):
            raise RunError(f"{d} leads outside the run directory through a symbolic link; it is not read.")
        for f in sorted(d.glob("*.npy")):  # one chunk's images in memory at a time
            start = int(f.stem.split("-")[1])
            arr = np.load(io.BytesIO(read_run_file(self.path, f"{folder}/{f.name}")), allow_pickle=False)
            for j in range(len(arr)):
                yield start + j, np.array(arr[j])
        pngs = sorted(d.glob("*.png"))
        groups: dict[int, list[Path]] = {}
        for f in pngs:
            groups.setdefault(int(f.stem.split("_")[0]), []).append(f)
        for idx in sorted(groups):
            arrs = [np.asarray(Image.open(io.BytesIO(read_run_file(self.path, f"{folder}/{f.name}"))).convert("RGB"))
                    .transpose(2, 0, 1) for f in groups[idx]]  # fmt: skip
            yield idx, arrs[0] if len(arrs) == 1 and "_" not in groups[idx][0].stem else np.stack(arrs)


def load_run(
    run_dir: str | os.PathLike, keys: Sequence[str] | None = None, partial: bool = False
) -> dict[str, np.ndarray]:
    """The arrays of a finished run directory, concatenated in item order (see :meth:`Run.load`)."""
    return Run(Path(run_dir)).load(keys, partial)


def run_status(run_dir: str | os.PathLike) -> RunStatus:
    """Progress of a run directory (finished chunk files / chunks), without reading any chunk.

    A staged run (:func:`claim_run`) counts the chunks of every stage started so far; its ``stage`` says
    which stage runs (``"round 2 of at most 16"``) and it is finished once its result file is written.
    """
    path = Path(run_dir)
    m = _read_manifest(path)
    total = len(chunk_bounds(m["num_items"], m["chunk_size"]))
    error = None
    if (path / ERROR).exists():
        try:
            error = str(json.loads(read_run_file(path, ERROR))["error"])
        except RunError as exc:  # a link leading out: said, not followed
            error = str(exc)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    staged = m.get("staged")
    if not isinstance(staged, dict):
        return RunStatus(path, _done_chunks(path, CHUNKS, total), total, m["num_items"], m["chunk_size"], m, error)
    stages = []
    if (path / STAGES).is_dir() and not _leaves(path, STAGES):
        stages = sorted(f"{STAGES}/{p.name}" for p in (path / STAGES).iterdir()
                        if p.is_dir() and not _leaves(path, f"{STAGES}/{p.name}"))  # fmt: skip
    done = sum(_done_chunks(path, f"{stage}/{CHUNKS}", total) for stage in stages)
    result = str(staged.get("result", RESULT))
    complete = not _leaves(path, result) and (path / result).is_file()
    label, most = str(staged.get("label", "stage")), staged.get("most")
    stage = f"{label} {max(1, len(stages))}" + (f" of at most {most}" if most else "")
    return RunStatus(path, done, max(1, len(stages)) * total, m["num_items"], m["chunk_size"], m, error,
                     stage, complete)  # fmt: skip


def _done_chunks(run_dir: Path, folder: str, total: int) -> int:
    """The chunk files in ``run_dir / folder`` (links that lead out of ``run_dir`` are not counted)."""
    d = run_dir / folder
    if not d.is_dir() or _leaves(run_dir, folder):
        return 0
    with os.scandir(d) as entries:
        return sum(1 for e in entries if _CHUNK_RE.fullmatch(e.name) and int(e.name[6:-4]) < total
                   and not (e.is_symlink() and _leaves(run_dir, f"{folder}/{e.name}")))  # fmt: skip


def read_run_file(run_dir: str | os.PathLike, name: str) -> bytes:
    """The bytes of the file ``name`` (relative) of a run directory, never through a link that leads out of it.

    Raises:
        RunError: ``name`` is, or passes through, a symbolic link leading outside ``run_dir`` (also one
            swapped in while it is opened: ``mlvis.store.read_confined``).
        FileNotFoundError, IsADirectoryError: there is no such file.
    """
    from mlvis.store import StoreError, read_confined

    try:
        return read_confined(run_dir, name)
    except StoreError:
        raise RunError(
            f"{Path(run_dir) / name} leads outside the run directory through a symbolic link; it is not read."
        ) from None


def _leaves(run_dir: Path, name: str) -> bool:
    """True when ``run_dir / name`` is a link (or is reached through one) that leads outside ``run_dir``."""
    from mlvis.store import StoreError, confined

    try:
        confined(run_dir, name)
    except StoreError:
        return True
    return False


@contextlib.contextmanager
def claim_run(
    run_dir: str | os.PathLike,
    manifest: Mapping[str, Any],
    num_items: int,
    chunk_size: int,
    *,
    label: str = "stage",
    most: int | None = None,
    result: str = RESULT,
) -> Iterator[Path]:
    """Hold a *staged* run directory: one whose work is a sequence of chunked stages decided as it goes.

    The profile's probe is the example: its images run in rounds of steps, and whether another round is
    needed depends on the flips of every image so far. The run directory holds the manifest (checked like
    :func:`run_chunks`'s), one run directory per stage under ``stages/`` (each computed by
    :func:`run_chunks` with its own manifest, so every stage resumes chunk by chunk) and the ``result``
    file written by the caller when it is done. :func:`run_status` reads the progress of all stages.

    Args:
        label: what a stage is called on the Runs page (``"round"``); most: the most stages there can be.
        result: the file (inside the run directory) whose presence marks the run finished.

    Yields:
        The run directory's path; stages go into :func:`stage_dir`. A failure is recorded in ``error.json``.
    """
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    full = _jsonable(dict(manifest))
    full.update({"format": FORMAT, "num_items": int(num_items), "chunk_size": int(chunk_size),
                 "staged": {"label": label, "most": most, "result": result}})  # fmt: skip
    with _locked(path):
        _check_or_write_manifest(path, full)
        (path / ERROR).unlink(missing_ok=True)
        try:
            yield path
        except Exception as exc:
            _durable_write(path / ERROR, json.dumps({"error": str(exc), "type": type(exc).__name__}).encode())
            raise


def stage_dir(run_dir: str | os.PathLike, index: int) -> Path:
    """The run directory of stage ``index`` of a staged run."""
    return Path(run_dir) / STAGES / f"{index:03d}"


def write_result(run_dir: str | os.PathLike, name: str, data: bytes) -> None:
    """Write a run's result file atomically (for a staged run, the mark that it is finished)."""
    _durable_write(Path(run_dir) / name, data)


# ------------------------------------------------------------------------------- chunk files


def _write_chunk(path: Path, index: int, start: int, stop: int, out: Mapping[str, np.ndarray]) -> None:
    if not isinstance(out, Mapping):
        raise RunError(f"compute_chunk must return a dict of arrays, not {type(out).__name__}.")
    results: dict[str, np.ndarray] = {}
    images: dict[str, np.ndarray] = {}
    for k, v in out.items():
        a = np.asarray(v)
        if not isinstance(k, str) or not k or k == _META or k.startswith("__"):
            raise RunError(f"compute_chunk returned the array name {k!r}; names must be non-empty strings.")
        if a.dtype.kind not in "biufc":
            raise RunError(
                f"compute_chunk returned {k!r} with dtype {a.dtype}; only numeric and boolean arrays are stored."
            )
        if a.ndim == 0 or len(a) != stop - start:
            raise RunError(
                f"compute_chunk returned {k!r} with {a.shape[0] if a.ndim else 'no'} rows "
                f"for the {stop - start} items {start}..{stop - 1}."
            )
        (images if k.startswith(IMAGE_PREFIX) else results)[k] = a
    for k, a in images.items():  # images first: the chunk file is the commit marker
        _write_images(path / IMAGES / _safe_key(k[len(IMAGE_PREFIX) :]), start, a)
    meta = {"index": index, "start": start, "stop": stop, "keys": sorted(results)}
    buf = io.BytesIO()
    savez: Any = np.savez  # numpy's stub types **arrays as its own keyword options
    savez(buf, **results, **{_META: np.frombuffer(json.dumps(meta).encode(), np.uint8)})
    body = buf.getvalue()
    _durable_write(path / CHUNKS / chunk_name(index), body + _TRAILER + hashlib.sha256(body).hexdigest().encode())


def _read_chunk(run_dir: Path, name: str, index: int, start: int, stop: int) -> dict[str, np.ndarray] | None:
    """The arrays of the chunk file ``run_dir / name``, or ``None`` when the file is partial, corrupt, not this
    chunk, or a link that leads outside the run directory."""
    try:
        raw = read_run_file(run_dir, name)
    except (OSError, RunError):
        return None
    body, sep, digest = raw.rpartition(_TRAILER)
    if not sep or len(digest) != 64 or hashlib.sha256(body).hexdigest().encode() != digest:
        return None  # cut short, or any byte changed: never parsed
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as z:
            meta = json.loads(bytes(z[_META]).decode())
            arrays = {k: z[k] for k in z.files if k != _META}
    except Exception:  # any failure to parse means the file cannot be trusted
        return None
    ok = (
        isinstance(meta, dict)
        and (meta.get("index"), meta.get("start"), meta.get("stop")) == (index, start, stop)
        and sorted(arrays) == meta.get("keys")
        and all(len(a) == stop - start for a in arrays.values())
    )
    return arrays if ok else None


def _write_images(d: Path, start: int, a: np.ndarray) -> None:
    """uint8 ``(n, [K,] 3, H, W)`` as PNG files ``{index:07d}[_{k}].png``; float as one ``.npy`` per chunk."""
    from PIL import Image

    d.mkdir(parents=True, exist_ok=True)
    if a.dtype != np.uint8:
        buf = io.BytesIO()
        np.save(buf, a, allow_pickle=False)
        _durable_write(d / f"chunk-{start:07d}.npy", buf.getvalue(), sync=False)
        return
    if a.ndim not in (4, 5) or a.shape[-3] != 3:
        raise RunError(f"images must be (n, [K,] 3, H, W) uint8 arrays, not {a.shape}.")
    for j in range(len(a)):
        per = a[j][None] if a.ndim == 4 else a[j]
        for k, img in enumerate(per):
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0)), "RGB").save(buf, format="PNG")
            name = f"{start + j:07d}.png" if a.ndim == 4 else f"{start + j:07d}_{k:02d}.png"
            _durable_write(d / name, buf.getvalue(), sync=False)


def _safe_key(key: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.\-]+", "_", key).strip("._")
    if not safe:
        raise RunError(f"The image name {key!r} has no usable characters.")
    return safe


def _durable_write(path: Path, data: bytes, sync: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, rename it over ``path``, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ------------------------------------------------------------------------ manifest and locking


def _read_manifest(path: Path) -> dict[str, Any]:
    f = path / MANIFEST
    try:
        m = json.loads(read_run_file(path, MANIFEST))
        int(m["num_items"]), int(m["chunk_size"])
    except FileNotFoundError:
        raise RunError(f"{path} is not a run directory (it has no {MANIFEST}).") from None
    except RunError:
        raise
    except (OSError, ValueError, KeyError, TypeError):
        raise RunError(f"{f} is not a run manifest that can be read.") from None
    return m


def _check_or_write_manifest(path: Path, full: dict[str, Any]) -> None:
    if not (path / MANIFEST).exists():
        if any(p.name != LOCK for p in path.iterdir()):
            raise RunError(f"{path} is not empty and has no {MANIFEST}; pick a new folder for the run.")
        stamped = dict(full, created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        _durable_write(path / MANIFEST, json.dumps(stamped, indent=1, sort_keys=True).encode())
        return
    old = _read_manifest(path)
    diff = [text for where, text in _differences(old, full) if where not in _VOLATILE]
    if diff:
        raise RunError(
            f"The run directory {path} holds a different run "
            f"({'; '.join(diff[:4])}{'; ...' if len(diff) > 4 else ''}); "
            "use a new folder, or the same settings to continue it."
        )


def _differences(old: Any, new: Any, where: str = "") -> list[tuple[str, str]]:
    """``(path, sentence part)`` for every entry where two manifests differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            sub = f"{where}.{k}" if where else str(k)
            if k not in new:
                out.append((sub, f"{sub} only there"))
            elif k not in old:
                out.append((sub, f"{sub} only here"))
            else:
                out += _differences(old[k], new[k], sub)
        return out
    if old != new:
        show = lambda v: json.dumps(v)[:40]  # noqa: E731
        return [(where, f"{where or 'manifest'}: {show(old)} there, {show(new)} here")]
    return []


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory (released by the OS if the process dies)."""
    import fcntl

    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise RunError(f"The run directory {path} is in use by process {other}; wait for it or stop it.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _jsonable(v: Any) -> Any:
    """``v`` as plain JSON values (tuples to lists, numpy scalars to numbers), as the manifest file holds it.

    Raises:
        RunError: when ``v`` holds something JSON cannot hold (an object, a key that is not a string or a
            number, keys of mixed types, a loop).
    """
    try:
        return json.loads(json.dumps(v, default=_json_default, sort_keys=True))
    except (TypeError, ValueError, RecursionError) as exc:
        raise RunError(
            "A run manifest must hold only JSON values (numbers, strings, lists, dicts with string keys, numpy "
            f"arrays, paths or dataclasses); this one cannot be written ({str(exc).rstrip('.')})."
        ) from None


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return dataclasses.asdict(v)
    raise TypeError(f"{type(v).__name__} is not JSON-serialisable")


# ------------------------------------------------------------------------------------ Ray backend


def _ray_compute(fn: ComputeChunk, start: int, stop: int) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in fn(start, stop).items()}


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def loopback_ray() -> None:
    """Make a Ray cluster started by this process listen on 127.0.0.1 only (call before ``import ray``).

    Ray binds its local services to the machine's network address by default; with this setting (read
    by Ray when it is imported) a cluster that mlvis starts for itself is reachable from this machine
    alone. To spread a run over other machines, start Ray there yourself (``ray start --head``) and pass
    its ``address``.
    """
    os.environ.setdefault(LOOPBACK_ENV, "0")


def _run_ray(pending, compute_chunk, finish, address, max_retries, max_in_flight) -> None:
    if address is None and "ray" not in sys.modules:
        loopback_ray()
    try:
        import ray
    except ImportError:
        raise RunError("The Ray backend needs the ray package (pip install 'ray>=2.40').") from None
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except ConnectionError as exc:
            raise RunError(f"No Ray cluster answers at {address!r} ({exc}).") from None
        started = True
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        slots = gpus if gpus else max(1, int(resources.get("CPU", 1)))
        task = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1, max_retries=int(max_retries))(_ray_compute)
        fn_ref = ray.put(compute_chunk)
        limit = max(1, int(max_in_flight or 2 * slots))
        queue = list(pending)
        in_flight: dict[Any, tuple[int, int, int]] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < limit:
                    i, start, stop = queue.pop(0)
                    in_flight[task.remote(fn_ref, start, stop)] = (i, start, stop)
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    i, start, stop = in_flight.pop(ref)
                    finish(i, start, stop, _ray_get(ray, ref, i, max_retries))
        finally:
            for ref in in_flight:  # interrupted: nothing else is computed for this driver
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
    finally:
        if started:
            ray.shutdown()


def _ray_get(ray, ref, index: int, max_retries: int) -> dict[str, np.ndarray]:
    from ray import exceptions as rex

    try:
        return ray.get(ref)
    except rex.RayTaskError as exc:  # the compute function raised: the same error as the local backend
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise RunError(f"Chunk {index} failed on a Ray worker: {str(exc).splitlines()[-1]}") from None
    except (rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError) as exc:
        raise RunError(
            f"Chunk {index}'s Ray worker died on each of its {max_retries + 1} attempt{'s' * (max_retries > 0)} "
            f"({type(exc).__name__}); start the run again to retry it."
        ) from None


# -------------------------------------------------------------- compute functions for attack sweeps

_PROCESS_CACHE: dict[Any, Any] = {}


def cached(key: Any, factory: Callable[[], Any]) -> Any:
    """``factory()`` once per process and ``key``: how a Ray worker (or the driver) loads a model once."""
    if key not in _PROCESS_CACHE:
        _PROCESS_CACHE[key] = factory()
    return _PROCESS_CACHE[key]


def chunk_seed(seed: int, start: int) -> int:
    """The seed of the chunk starting at item ``start`` of a run seeded ``seed`` (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), int(start)]).generate_state(1)[0])


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """A model by registry name (and ``create_model`` options): pickles small, loads once per process.

    ``ModelRef("demo-asl").load()`` gives the same object on every call in one process, on the GPU
    when the process has one (a Ray worker with ``num_gpus=1`` sees exactly one).
    """

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    def load(self):
        from mlvis.models import create_model

        return cached(("model", self.name, self.options), lambda: create_model(self.name, **dict(self.options)))


@dataclasses.dataclass(frozen=True)
class DemoImages:
    """The demo scenes ``mlvis.data.demo_batch`` draws, as an image source with a :class:`Dataset`'s interface."""

    n: int
    split: str = "test"
    seed: int = 0
    size: int = 64

    def __len__(self) -> int:
        return self.n

    def load_for(self, model_or_spec: Any, indices) -> np.ndarray:
        from mlvis.data import BLOCK, world

        idx = [self.seed * BLOCK + int(i) for i in indices]
        imgs, _ = world(0, self.size).batch_uint8(self.split, idx)
        return imgs.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)

    def describe(self) -> dict[str, Any]:
        return {"kind": "demo", **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class AttackChunks:
    """``compute_chunk`` for attack sweeps: attack images ``[start, stop)`` with every method at every budget.

    Returns per-image arrays named ``"<method>.<field>"``: ``flips``, ``flips_8bit``, ``steps``, ``linf``,
    ``l2``, ``psnr``, ``ssim`` ``(n, K)``; ``adv_probs``, ``adv_probs_8bit`` ``(n, K, C)``; ``targets``
    ``(n, K, C)`` when the method chose label subsets (CLASS); and ``clean_probs`` ``(n, C)`` once. With
    ``save_images`` also ``"images/<method>"``: the 8-bit adversarial images ``(n, K, 3, H, W)`` uint8
    (kept inside the budget by the engine), written as lossless PNGs.

    Random draws (the random subset) use :func:`chunk_seed` of the run's seed and the chunk's first
    item, so chunks do not repeat each other's draws and a chunk's numbers do not depend on which
    process computes it or when.

    Args:
        model: a :class:`ModelRef` or a registry name.
        images: a :class:`mlvis.data.Dataset` (aligned to the model) or :class:`DemoImages`.
        methods: method names or ``mlvis.attacks.AttackSpec``s; eps: the budgets; options: ``run_job``'s
            keyword options (``alpha``, ``norm``, ``seed`` ...).
    """

    model: ModelRef | str
    images: Any
    methods: tuple[Any, ...]
    eps: tuple[float, ...]
    options: tuple[tuple[str, Any], ...] = ()
    save_images: bool = False

    def __call__(self, start: int, stop: int) -> dict[str, np.ndarray]:
        import torch

        from mlvis.attacks import run_job

        ref = self.model if isinstance(self.model, ModelRef) else ModelRef(str(self.model))
        model = ref.load()
        x = torch.from_numpy(self.images.load_for(model, range(start, stop)))
        opts = dict(self.options)
        opts["seed"] = chunk_seed(int(opts.get("seed", 0)), start)
        results = run_job(model, x, list(self.methods), list(self.eps), **opts)
        out: dict[str, np.ndarray] = {"clean_probs": results[0].clean_probs}
        for res in results:
            for field in ("flips", "flips_8bit", "steps", "linf", "l2", "psnr", "ssim"):
                out[f"{res.name}.{field}"] = np.moveaxis(getattr(res, field), 0, 1)
            for field in ("adv_probs", "adv_probs_8bit"):
                out[f"{res.name}.{field}"] = np.moveaxis(getattr(res, field), 0, 1)
            if res.targets is not None:
                out[f"{res.name}.targets"] = np.moveaxis(res.targets, 0, 1)
            if self.save_images:
                out[f"{IMAGE_PREFIX}{res.name}"] = np.moveaxis(res.adv_8bit, 0, 1)
        return out
