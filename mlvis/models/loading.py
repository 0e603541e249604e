"""Reading checkpoint files safely, and the checks that come before anything is built.

- :func:`read_checkpoint`: ``torch.load(..., weights_only=True)`` (memory-mapped where the file allows)
  with one allow-list entry set, the numpy scalar that Query2Label's ``best_mAP`` is (MODELS.md §2.2),
  or safetensors. A file that would run code while loading is refused with :class:`UnsafeCheckpointError`
  and its code never runs: PyTorch's weights-only unpickler stops at the first global it does not allow,
  before anything is called. There is no fallback to an unrestricted unpickle.
- :func:`state_dict_from`: the state dict inside the official containers (``model`` / ``state_dict`` /
  bare), with a leading ``module.`` stripped and floating tensors cast to float32.
- :func:`check_fits_memory`: a model too large for the device's free memory is refused before it is built.
- :func:`resolve_inside`: a path named by a card stays inside its folder (no ``..``, no symlinks).
- :func:`open_model_file`: every reader here opens its file once and reads (sniffs, loads, memory-maps)
  that very file; while a card builds its model (:func:`reading_inside`), the files in the card's folder
  are opened without following any link (:func:`mlvis.store.open_without_links`), so a link swapped in
  after :func:`resolve_inside` looked is refused instead of followed.

Every problem is a :class:`CheckpointError` (a ``ValueError``) whose message is one sentence.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import pickle
import re
import sys
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

from mlvis.errors import ModelLoadError


class CheckpointError(ModelLoadError):
    """A checkpoint (or card) that cannot be used; the message is one sentence for people."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that would run code while loading; it is refused and its code never runs."""


class ModelTooLargeError(CheckpointError):
    """A model that would not fit in the device's free memory."""


#: the extensions a checkpoint may have; the content decides the format (zip/pickle vs safetensors)
CHECKPOINT_EXTENSIONS = ("pth", "pt", "pkl", "ckpt", "bin", "tar", "safetensors")


def _numpy_globals() -> list:
    """The numpy globals a numpy float64 scalar (Q2L's ``best_mAP``) needs, and nothing else."""
    try:
        import numpy as np
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        import numpy as np
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    out: list = [scalar, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out.append(dtypes.Float64DType)
    return out


# ----------------------------------------------------------------------------------- opening files

#: ``/proc/self/fd/N`` names the very file open as descriptor N (Linux), so path-taking readers read it
_FD_PATHS = sys.platform.startswith("linux") and os.path.isdir("/proc/self/fd")

#: the folder whose files are opened without following links, while a card builds its model
_CARD_FOLDER: contextvars.ContextVar[Path | None] = contextvars.ContextVar("mlvis_card_folder", default=None)


@contextlib.contextmanager
def reading_inside(folder: str | Path) -> Iterator[None]:
    """While inside, every file a loader opens below ``folder`` is opened without following any link.

    A card sets it while it builds its model (:meth:`mlvis.models.cards.Card.build`): its checkpoint,
    labels file and Query2Label configuration were checked by :func:`resolve_inside`, and this makes the
    opening itself refuse a link swapped in since (the check and the opening cannot race). Files outside
    ``folder`` (named by the program, not by the card) open as usual.
    """
    token = _CARD_FOLDER.set(Path(folder))
    try:
        yield
    finally:
        _CARD_FOLDER.reset(token)


class OpenedFile:
    """A file opened once, for readers that sniff it and then load it: the same file throughout.

    Attributes:
        name: the file's own name, for messages (never the descriptor's number).
        file: the open binary file.
        path: a path to the very file opened (``/proc/self/fd/N``) for readers that want a path, such
            as memory-mapping ones; ``None`` where the system has no such path (then read :attr:`file`).
    """

    def __init__(self, name: str, file: BinaryIO):
        self.name = name
        self.file = file
        self.path: str | None = f"/proc/self/fd/{file.fileno()}" if _FD_PATHS else None

    def start(self) -> BinaryIO:
        """The file, at its first byte."""
        self.file.seek(0)
        return self.file

    def named(self, text: object) -> str:
        """``text`` (an exception's) with the descriptor's path replaced by the file's name."""
        return str(text).replace(self.path, self.name) if self.path else str(text)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> OpenedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_model_file(path: str | Path) -> OpenedFile:
    """Open ``path`` for reading once; below the folder of :func:`reading_inside`, without following links.

    Raises:
        FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError: as :func:`open`.
        CheckpointError: the file (or a folder on its way) in a card's folder is a symbolic link, or it is
            not a regular file.
    """
    from mlvis.store import LinkRefused, StoreError, open_without_links

    path = Path(path)
    folder = _CARD_FOLDER.get()
    rel = _below(path, folder) if folder is not None else None
    if folder is None or rel is None:
        return OpenedFile(path.name, open(path, "rb"))  # closed by OpenedFile
    try:
        return OpenedFile(path.name, open_without_links(folder, rel))
    except LinkRefused:
        raise CheckpointError(
            f"{path.name} in the models folder is a symbolic link or is reached through one, which is refused."
        ) from None
    except StoreError:
        raise CheckpointError(f"{path.name} is not a regular file in the models folder {folder}.") from None


def _below(path: Path, folder: Path) -> Path | None:
    """``path`` relative to ``folder`` when it is written below it (``folder / ...``), else ``None``."""
    try:
        rel = path.absolute().relative_to(folder.absolute())  # absolute(): the same form, no link resolved
    except ValueError:
        return None
    return rel if rel.parts else None


# ------------------------------------------------------------------------------------- checkpoints


def is_torchscript(path: str | Path | OpenedFile) -> bool:
    """True for a TorchScript archive (a zip with a ``code/`` folder and ``constants.pkl``)."""
    try:
        with contextlib.ExitStack() as stack:
            f = path if isinstance(path, OpenedFile) else stack.enter_context(open_model_file(path))
            with zipfile.ZipFile(f.start()) as z:
                names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names)


def is_safetensors(path: str | Path | OpenedFile) -> bool:
    """True when the file starts like safetensors (an 8-byte header length, then a JSON header)."""
    try:
        with contextlib.ExitStack() as stack:
            f = path if isinstance(path, OpenedFile) else stack.enter_context(open_model_file(path))
            head = f.start().read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000


def read_checkpoint(path: str | Path) -> Any:
    """The object stored in a checkpoint file, read without running any code from it.

    The file is opened once (:func:`open_model_file`); its format is sniffed and its content loaded
    (memory-mapped where the format allows) from that same opened file.

    Raises:
        FileNotFoundError: there is no such file.
        UnsafeCheckpointError: the file holds something that would run code when unpickled.
        CheckpointError: the file is a TorchScript archive, or not a checkpoint at all, or (in a card's
            folder) a symbolic link.
    """
    path = Path(path)
    try:
        opened = open_model_file(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise FileNotFoundError(f"There is no checkpoint file at {path}.") from None
    except OSError as exc:
        raise CheckpointError(f"{path.name} cannot be opened ({exc.strerror or exc}).") from None
    with opened as f:
        return _checkpoint_in(f)


def _checkpoint_in(f: OpenedFile) -> Any:
    if is_safetensors(f):
        from safetensors import SafetensorError
        from safetensors.torch import load, load_file

        try:
            return load_file(f.path) if f.path else load(f.start().read())
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{f.name} looks like safetensors but cannot be read ({f.named(exc)}).") from None
    if is_torchscript(f):
        raise CheckpointError(
            f"{f.name} is a TorchScript archive, not a state dict; load it with the family 'torchscript'."
        )
    with torch.serialization.safe_globals(_numpy_globals()):
        try:
            try:
                return _torch_load(f, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                return _torch_load(f, mmap=False)  # legacy (non-zip) format
        except pickle.UnpicklingError as exc:
            msg = str(exc)
            found = re.search(r"GLOBAL ([\w.]+)", msg) or re.search(r"but got <class '([\w.]+)'>", msg)
            if found is None and "allowlisted" not in msg:  # not something the weights-only reader refused
                raise CheckpointError(
                    f"{f.name} is not a PyTorch checkpoint that can be read (or it is corrupt)."
                ) from None
            what = f" ({found.group(1)})" if found else ""
            raise UnsafeCheckpointError(
                f"{f.name} was refused: loading it would run code{what}, and mlvis reads only plain weights "
                "(a weights-only .pth or a .safetensors file)."
            ) from None
        except (RuntimeError, KeyError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
            raise CheckpointError(
                f"{f.name} is not a PyTorch checkpoint that can be read (or it is truncated): {f.named(exc)}."
            ) from None


def _torch_load(f: OpenedFile, mmap: bool) -> Any:
    """``torch.load`` (weights only) of the opened file: memory-mapped through its path where there is one
    (``mmap`` needs a path), else read from the open file."""
    if f.path is not None:
        return torch.load(f.path, map_location="cpu", weights_only=True, mmap=mmap)
    return torch.load(f.start(), map_location="cpu", weights_only=True)


def read_text(path: str | Path) -> str:
    """The UTF-8 text of a small file (a labels file, a configuration), opened by :func:`open_model_file`."""
    with open_model_file(path) as f:
        return io.TextIOWrapper(f.file, encoding="utf-8").read()


def state_dict_from(obj: Any, name: str = "the checkpoint", keys: tuple[str, ...] = ("model", "state_dict")):
    """The state dict in an official container: ``obj[k]`` for the first ``k`` of ``keys`` present, else
    ``obj`` itself; a leading ``module.`` stripped from every key; floating tensors as float32.

    Non-tensor entries (``num_batches_tracked`` is a tensor, so it stays) are dropped.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name} holds a {type(obj).__name__}, not a dictionary of weights.")
    sd: Any = obj
    for k in keys:
        if isinstance(obj.get(k), Mapping):
            sd = obj[k]
            break
    tensors = {str(k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{name} holds no weights (no tensors under 'model', 'state_dict' or at the top).")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}


def tensor_bytes(sd: Mapping[str, torch.Tensor]) -> int:
    """Bytes the tensors take as float32 (what the built model will hold)."""
    return sum(int(v.numel()) * (4 if v.is_floating_point() else v.element_size()) for v in sd.values())


def available_memory(device: torch.device) -> int | None:
    """Free bytes on ``device`` (CUDA: ``mem_get_info``; CPU: ``MemAvailable``), ``None`` when unknown."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


#: what a model needs beyond its weights: a second copy while loading, plus room for activations
MEMORY_FACTOR = 2.5


def check_fits_memory(weight_bytes: int, device: torch.device, what: str) -> None:
    """Refuse (``ModelTooLargeError``) a model whose weights, with room to load and run them, exceed the
    device's free memory; unknown free memory passes."""
    free = available_memory(device)
    need = int(weight_bytes * MEMORY_FACTOR)
    if free is not None and need > free:
        where = "the GPU" if device.type == "cuda" else "this machine"
        raise ModelTooLargeError(
            f"{what} needs about {need / 2**30:.1f} GB of memory to load and run ({weight_bytes / 2**30:.1f} GB of "
            f"weights) but {where} has {free / 2**30:.1f} GB free; free some memory or use a larger device."
        )


def resolve_inside(folder: str | Path, relative: str | Path, what: str = "the file") -> Path:
    """``folder / relative``, refusing a path that leaves ``folder``: absolute paths, ``..`` parts, or a
    symlink anywhere below ``folder``."""
    folder = Path(folder)
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise CheckpointError(
            f"{what} {str(relative)!r} leaves the models folder; name a file inside it, relative to the card."
        )
    current = folder
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            raise CheckpointError(f"{what} {str(relative)!r} is reached through a symbolic link, which is refused.")
    root = folder.resolve()
    target = current.resolve()
    if root != target and root not in target.parents:
        raise CheckpointError(f"{what} {str(relative)!r} leaves the models folder {folder}.")
    return current


def file_fingerprint(path: str | Path) -> str:
    """Size and modification time of a file, as a cache key for a loaded model."""
    st = os.stat(path)
    return f"{st.st_size}-{st.st_mtime_ns}"
