"""Files on disk: the one atomic write, names confined to a folder, the artifacts cache folder.

Every file mlvis writes (exports, results, tables, cached and shipped artifacts, trained weights) goes
through :func:`atomic_write`: the bytes go to a temporary file of ours in the target's own folder, are
flushed and fsynced, get mode 0644, and are renamed over the target with :func:`os.replace`. A reader
therefore sees the old file or the new one, never half of one, even after ``kill -9`` or a power cut;
a temporary file orphaned by a killed writer is removed by the next write into that folder once it is
older than :data:`ORPHAN_AGE_S` (a younger one may belong to a writer that is still running).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mlvis.errors import StorageError

TMP_SUFFIX = ".mlvis-tmp"  # our temporary files: ".{target name}.{random}.mlvis-tmp" beside the target
ORPHAN_AGE_S = 3600.0  # a temporary file of ours older than this is an orphan of a killed writer
FILE_MODE = 0o644


class StoreError(StorageError):
    """A file or folder mlvis was asked to use cannot be used (the message is one sentence)."""


# ----------------------------------------------------------------------------------------- writing


def atomic_write(path: str | os.PathLike, write: Callable[[str], object] | bytes | str, mode: int = FILE_MODE) -> Path:
    """Write ``path`` atomically: a reader sees the old file or the new one, never a partial one.

    Args:
        path: the target file. Its folder is created when missing (library callers name their paths
            themselves; the CLI checks ``--out`` before any work, see :func:`check_out`).
        write: the content (``bytes`` or ``str``, UTF-8), or ``write(tmp_path)`` for writers that want
            a path (``safetensors.torch.save_file``).
        mode: the file's permission bits, whatever the umask (0644: readable by everyone).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if path.is_dir():
        raise StoreError(f"{path} is a folder; give the name of a file to write.")
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    clean_orphans(folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        if callable(write):
            os.close(fd)
            write(tmp)
            with open(tmp, "rb+") as f:  # the writer may not have synced: do it here
                os.fsync(f.fileno())
        else:
            data = write.encode() if isinstance(write, str) else bytes(write)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(folder)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`atomic_write` of bytes."""
    return atomic_write(path, data)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def clean_orphans(folder: str | os.PathLike[str], max_age_s: float = ORPHAN_AGE_S) -> list[Path]:
    """Remove our temporary files in ``folder`` older than ``max_age_s``; return the removed paths.

    Only names of the form ``.NAME.RANDOM.mlvis-tmp`` (what :func:`atomic_write` creates) are touched.
    """
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX)):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime > max_age_s:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue  # removed by another process meanwhile, or not ours to remove
    return removed


# ------------------------------------------------------------------------------------ confined names

_UNSAFE = re.compile(r"[^A-Za-z0-9._=+,-]")
MAX_STEM = 100


def safe_stem(text: str) -> str:
    """A file-name stem for ``text`` that is safe everywhere and distinct for distinct texts.

    Letters, digits and ``. _ = + , -`` are kept; anything else (spaces, slashes, ``..``) becomes ``_``;
    leading dots are dropped (no hidden files, no ``..``). When that changed the text, a short hash of
    the original is appended, so ``"slam q=0.25"`` and ``"slam_q=0.25"`` never share a file.
    """
    text = str(text)
    stem = _UNSAFE.sub("_", text).lstrip(".")[:MAX_STEM] or "_"
    if stem != text:
        stem += "~" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return stem


def confined(folder: str | os.PathLike, name: str | os.PathLike) -> Path:
    """``folder / name``, refused with a sentence unless it stays inside ``folder``.

    ``name`` must be relative and free of ``..``; a symbolic link (of the file or of a folder on the way)
    that leads outside ``folder`` is refused too, while one that stays inside is allowed.

    Raises:
        StoreError: the name is absolute, climbs out with ``..``, or resolves outside ``folder``.
    """
    root = Path(folder)
    text = os.fspath(name)
    rel = _relative(root, text)
    path = root / rel
    base = root.resolve()
    if not path.resolve().is_relative_to(base):
        raise StoreError(f"{text!r} is a link that leads outside {root}; only files inside it are allowed.")
    return path


def _relative(root: Path, text: str) -> Path:
    """``text`` as a relative path without ``..``, or :class:`StoreError` (the checks of :func:`confined`)."""
    rel = Path(text)
    if not text or "\x00" in text:
        raise StoreError(f"{text!r} is not a file name.")
    if rel.is_absolute() or rel.drive or rel.anchor:
        raise StoreError(f"{text!r} is an absolute path; only names inside {root} are allowed.")
    if ".." in rel.parts:
        raise StoreError(f"{text!r} climbs out of {root} with '..'; only names inside it are allowed.")
    return rel


def _opening(path: Path) -> None:
    """Called between the check of a confined path and its opening (a hook for the tests of the race)."""


def open_confined(folder: str | os.PathLike, name: str | os.PathLike):
    """Open ``folder / name`` for reading, checked by :func:`confined` and checked again on what was opened.

    :func:`confined` looks at the path when it is called; a symbolic link swapped in between that check and
    the opening (a race, "time of check to time of use") would be followed. So after opening, the file
    descriptor itself is compared with the path resolved again: the resolved path must stay inside ``folder``
    and name the same file (device and inode) as the descriptor, else the file is closed and refused. Links
    that stay inside still work, as with :func:`confined`.

    Returns:
        A binary file object (close it, or use it in a ``with``).

    Raises:
        StoreError: the name leaves ``folder``, before or after the opening.
        FileNotFoundError, IsADirectoryError: there is no such file.
    """
    path = confined(folder, name)
    _opening(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        opened = os.fstat(fd)
        real = path.resolve()
        inside = real.is_relative_to(Path(folder).resolve())
        try:
            now = os.stat(real)
            same = (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino)
        except OSError:
            same = False
        if not (inside and same):
            raise StoreError(
                f"{os.fspath(name)!r} changed into a link that leads outside {folder} while it was opened; "
                "only files inside it are allowed."
            )
        if stat.S_ISDIR(opened.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_confined(folder: str | os.PathLike, name: str | os.PathLike) -> bytes:
    """The bytes of ``folder / name``, opened by :func:`open_confined` (no link race can lead outside)."""
    with open_confined(folder, name) as f:
        return f.read()


class LinkRefused(StoreError):
    """A file reached through a symbolic link where links are refused (:func:`open_without_links`)."""


#: every part of a name can be opened relative to the folder before it, refusing links (POSIX)
_WALKS = os.open in os.supports_dir_fd and hasattr(os, "O_NOFOLLOW") and hasattr(os, "O_DIRECTORY")


def open_without_links(folder: str | os.PathLike, name: str | os.PathLike):
    """Open ``folder / name`` for reading, refused when the file or a folder on the way is a symbolic link.

    Unlike :func:`confined`, which looks at the path and then leaves the opening to the caller, this walks
    the name one part at a time, each part opened *relative to the folder opened before it* with
    ``O_NOFOLLOW``: there is no moment at which a link swapped in is followed, so the file opened is the
    one inside ``folder``, whatever happens to the path meanwhile (a link is refused before anything of
    its target is opened). ``folder`` itself may be a link (it is the caller's, not the name's). Where the
    system cannot open relative to a folder (Windows), :func:`open_confined` is used: a link that stays
    inside is then followed, one that leads outside is still refused.

    Returns:
        A binary file object of a regular file (close it, or use it in a ``with``).

    Raises:
        LinkRefused: the file, or a folder on the way, is a symbolic link.
        StoreError: the name is absolute, has ``..``, or is not a regular file (a pipe, a device).
        FileNotFoundError, IsADirectoryError, NotADirectoryError: there is no such file.
    """
    root = Path(folder)
    text = os.fspath(name)
    rel = _relative(root, text)
    if not _WALKS:  # pragma: no cover - Windows
        return open_confined(root, rel)
    if not rel.parts:
        raise StoreError(f"{text!r} is not a file name.")
    _opening(root / rel)
    cloexec = getattr(os, "O_CLOEXEC", 0)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | cloexec)
    for i, part in enumerate(rel.parts):
        last = i == len(rel.parts) - 1
        flags = os.O_RDONLY | os.O_NOFOLLOW | cloexec | (os.O_NONBLOCK if last else os.O_DIRECTORY)
        try:
            inner = os.open(part, flags, dir_fd=fd)
        except OSError as exc:
            link = exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(part, fd)
            os.close(fd)
            if link:
                raise LinkRefused(
                    f"{text!r} in {root} is a symbolic link or is reached through one, which is refused."
                ) from None
            raise
        os.close(fd)
        fd = inner
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(root / rel))
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{text!r} in {root} is not a regular file.")
        os.set_blocking(fd, True)  # O_NONBLOCK only kept a pipe from blocking the opening
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _is_link(part: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(part, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


# ------------------------------------------------------------------------------------ CLI outputs


def check_out(path: str | os.PathLike, kind: str) -> Path:
    """Check a CLI ``--out`` before any work and return it (the rule is in docs/security.md).

    ``kind="file"``: the file's folder must exist and ``path`` must not be a folder. ``kind="folder"``:
    the folder may be new (the first write creates it, one level) but its parent must exist, and it
    must not be a file. Nothing is created further up, so a typo cannot plant folders from the root.
    Nothing is created here either: a run that fails leaves no empty folder behind.

    Raises:
        StoreError: with a sentence saying what is wrong and what to give instead.
    """
    path = Path(path)
    if kind not in ("file", "folder"):
        raise StoreError(f"kind must be 'file' or 'folder', not {kind!r}.")
    if kind == "file" and path.is_dir():
        raise StoreError(f"--out {path} is a folder; give the name of the file to write.")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise StoreError(f"--out {path} is a file; give a folder to write into.")
    existing = path if kind == "folder" and path.is_dir() else path.parent
    if not existing.is_dir():
        what = "the folder" if kind == "file" else "its parent folder"
        raise StoreError(f"--out {path}: {what} {existing} does not exist; create it first.")
    _check_writable(existing, "--out")
    return path


def _check_writable(folder: Path, what: str) -> None:
    """Create and remove a temporary file in ``folder`` (``os.access`` says yes to root on read-only mounts)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-check.", suffix=TMP_SUFFIX)
    except OSError as e:
        raise StoreError(f"{what} {folder} is not writable ({e.strerror or e}).") from None
    os.close(fd)
    os.unlink(tmp)


# ------------------------------------------------------------------------------- artifacts cache


def cache_dir() -> Path:
    """Where computed artifacts (profiles, correlation matrices) are cached: ``$MLVIS_CACHE`` or
    ``~/.cache/mlvis``."""
    return Path(os.environ.get("MLVIS_CACHE") or Path.home() / ".cache" / "mlvis")


def check_cache_dir() -> Path:
    """The cache folder, created when missing, checked to be a writable folder (call before any work).

    Raises:
        StoreError: the cache path is a file, cannot be created or is not writable; the sentence says
            how to point ``MLVIS_CACHE`` elsewhere.
    """
    folder = cache_dir()
    hint = "set MLVIS_CACHE to a writable folder"
    if folder.exists() and not folder.is_dir():
        raise StoreError(f"The artifacts cache {folder} is a file, not a folder; remove it or {hint}.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"The artifacts cache {folder} cannot be created ({e.strerror or e}); {hint}.") from None
    try:
        _check_writable(folder, "The artifacts cache")
    except StoreError as e:
        raise StoreError(f"{str(e).rstrip('.')}; {hint}.") from None
    return folder


def model_fingerprint(model) -> str:
    """A short hash of a model's weights and buffers (names, shapes, dtypes, bytes): artifacts computed
    on one set of weights are never served for another."""
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
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def model_folder(model_name: str, fingerprint: str) -> Path:
    """The cache folder of one model's weights."""
    return cache_dir() / f"{safe_stem(model_name) if model_name else 'model'}-{fingerprint}"


def artifact_path(kind: str, model_name: str, fingerprint: str, settings: dict) -> Path:
    """The cache file for artifact ``kind`` ("profile", "correlations-up", ...) of these weights and settings."""
    return model_folder(model_name, fingerprint) / f"{kind}-{settings_key(settings)}.json"
