"""Model cards: a small JSON file beside a checkpoint in the models folder registers a model by name.

The models folder is ``$MLVIS_MODELS_DIR`` (default ``./models``). Every ``*.json`` file in it (not in
subfolders) is a card::

    {
      "name": "asl-coco-l",                       # registry name (default: the card's file name)
      "family": "asl-tresnet-l",                  # a family, timm:<arch>, torchvision:<arch> or torchscript
      "checkpoint": "MS_COCO_TRresNet_L_448_86.6.pth",   # relative to the card, inside the folder
      "labels": "coco",                           # a list, a labels file beside the card, or coco/voc/nus-wide
      "input_size": [448, 448],
      "resize": "stretch", "interpolation": "bilinear",
      "mean": [0, 0, 0], "std": [1, 1, 1],        # for timm / torchvision / torchscript
      "threshold": 0.5,
      "options": {"normalize": false},            # family options (Query2Label: normalize, config)
      "source": "https://...", "licence": "MIT (Alibaba-MIIL/ASL)", "description": "..."
    }

Cards register at start (``list_models()`` syncs the folder on every call, so a card dropped in while
the app runs appears on the next page load). A checkpoint, labels file or config a card names must lie
inside the folder: ``..``, absolute paths and symbolic links are refused. Packages add models through
the ``mlvis.models`` entry-point group: each entry point is a factory (``name = module:function``)
registered under its name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from mlvis.models.loading import CheckpointError, reading_inside, resolve_inside
from mlvis.models.spec import INTERPOLATIONS, RESIZES

ENV = "MLVIS_MODELS_DIR"
ENTRY_POINT_GROUP = "mlvis.models"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
FIELDS = ("name", "family", "checkpoint", "labels", "input_size", "resize", "interpolation", "mean", "std",
          "threshold", "options", "source", "licence", "description")  # fmt: skip


class CardError(CheckpointError):
    """A model card that cannot be used; the message is one sentence that names the card."""


def models_dir() -> Path:
    """The models folder: ``$MLVIS_MODELS_DIR`` or ``./models``."""
    return Path(os.environ.get(ENV) or "models")


@dataclasses.dataclass(frozen=True)
class Card:
    """One model card.

    Attributes:
        name: the registry name.
        path: the card file.
        data: the card's fields, validated.
    """

    name: str
    path: Path
    data: dict[str, Any]

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def family(self) -> str:
        return str(self.data["family"])

    def checkpoint_path(self) -> Path | None:
        ckpt = self.data.get("checkpoint")
        return resolve_inside(self.folder, ckpt, f"{self.path.name}: the checkpoint") if ckpt else None

    def options(self) -> dict[str, Any]:
        """The keyword options the family's builder gets (paths resolved inside the folder)."""
        d = self.data
        out: dict[str, Any] = {"name": self.name}
        labels = d.get("labels")
        if isinstance(labels, str) and labels.lower() not in ("coco", "voc", "nus-wide"):
            labels = resolve_inside(self.folder, labels, f"{self.path.name}: the labels file")
        if labels is not None:
            out["labels"] = labels
        for key in ("input_size", "mean", "std", "threshold", "resize", "interpolation", "source", "description"):
            if key in d:
                out[key] = d[key]
        out.setdefault("source", d.get("source") or str(self.path))
        options = dict(d.get("options") or {})
        if isinstance(options.get("config"), str):
            options["config"] = resolve_inside(self.folder, options["config"], f"{self.path.name}: the config")
        out.update(options)
        out["card"] = {"card_file": str(self.path), "licence": d.get("licence", ""), "card_source": d.get("source", "")}
        return out

    def build(self, device=None, progress=None, **overrides):
        """The model this card describes (through its family's builder)."""
        from mlvis.models.registry import builder_for

        builder = builder_for(self.family)
        if builder is None:
            raise CardError(f"{self.path.name}: the family {self.family!r} is unknown.")
        kwargs = {**self.options(), **overrides}  # resolves (and confines) the labels and config files
        path = self.checkpoint_path()
        if path is None and not self.data.get("options", {}).get("random_weights"):
            raise CardError(f"{self.path.name} names no checkpoint.")
        if path is not None and not path.is_file():
            raise CardError(f"{self.path.name}: its checkpoint {self.data['checkpoint']} is not in {self.folder}.")
        with reading_inside(self.folder):  # the files checked above are opened without following links
            return builder(checkpoint=path, device=device, progress=progress, **kwargs)


def validate(data: Any, where: str = "the card") -> dict[str, Any]:
    """The card's fields checked (types and allowed values); raises :class:`CardError` with one sentence."""
    from mlvis.models.registry import builder_for

    if not isinstance(data, dict):
        raise CardError(f"{where} must be a JSON object.")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise CardError(f"{where} has the unknown field(s) {', '.join(unknown)}; the fields are {', '.join(FIELDS)}.")
    family = data.get("family")
    if not isinstance(family, str) or builder_for(family) is None:
        raise CardError(
            f"{where}: family must be asl-tresnet-m/-l/-xl, q2l-r101-448, torchscript, timm:<arch> or "
            f"torchvision:<arch>, not {family!r}."
        )
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or not NAME_RE.match(name)):
        raise CardError(f"{where}: the name {name!r} must be lower-case letters, digits, '.', '_' or '-'.")
    ckpt = data.get("checkpoint")
    if ckpt is not None and not isinstance(ckpt, str):
        raise CardError(f"{where}: checkpoint must be a file name relative to the card.")
    labels = data.get("labels")
    if labels is not None and not (
        isinstance(labels, str) or (isinstance(labels, list) and all(isinstance(v, str) for v in labels))
    ):
        raise CardError(f"{where}: labels must be a list of names, a labels file or coco / voc / nus-wide.")
    size = data.get("input_size")
    if size is not None and not (
        isinstance(size, int)
        or (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size))
    ):
        raise CardError(f"{where}: input_size must be [height, width] in pixels.")
    for key in ("mean", "std"):
        v = data.get(key)
        if v is not None and not (isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v)):
            raise CardError(f"{where}: {key} must be three numbers (R, G, B).")
    if "std" in data and any(x <= 0 for x in data["std"]):
        raise CardError(f"{where}: every std must be positive.")
    t = data.get("threshold")
    if t is not None and not (isinstance(t, (int, float)) and 0 < t < 1):
        raise CardError(f"{where}: threshold must be a number between 0 and 1.")
    if data.get("resize", "crop") not in RESIZES:
        raise CardError(f"{where}: resize must be one of {', '.join(RESIZES)}.")
    if data.get("interpolation", "lanczos") not in INTERPOLATIONS:
        raise CardError(f"{where}: interpolation must be one of {', '.join(INTERPOLATIONS)}.")
    if not isinstance(data.get("options", {}), dict):
        raise CardError(f"{where}: options must be a JSON object.")
    for key in ("source", "licence", "description"):
        if key in data and not isinstance(data[key], str):
            raise CardError(f"{where}: {key} must be text.")
    return data


def read_card(path: str | Path) -> Card:
    """The card in ``path``, validated (its files are checked when the model is built)."""
    from mlvis.store import LinkRefused, open_without_links

    path = Path(path)
    try:
        with open_without_links(path.parent, path.name) as f:  # a link swapped in for the card is refused
            data = json.loads(f.read().decode("utf-8"))
    except LinkRefused:
        raise CardError(f"The model card {path.name} is a symbolic link, which is refused.") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CardError(f"The model card {path.name} is not valid JSON ({exc}).") from None
    data = validate(data, f"The model card {path.name}")
    name = data.get("name") or path.stem.lower()
    if not NAME_RE.match(name):
        raise CardError(f"The model card {path.name} needs a name of lower-case letters, digits, '.', '_' or '-'.")
    return Card(name=name, path=path, data=data)


def discover(folder: str | Path | None = None) -> tuple[list[Card], list[str]]:
    """The cards in ``folder`` (default the models folder) and one sentence per card that cannot be used.

    Symbolic links to cards are refused, like links to checkpoints.
    """
    folder = Path(folder) if folder is not None else models_dir()
    if not folder.is_dir():
        return [], []
    cards: list[Card] = []
    errors: list[str] = []
    for path in sorted(folder.glob("*.json")):
        if path.is_symlink():
            errors.append(f"The model card {path.name} is a symbolic link, which is refused.")
            continue
        try:
            cards.append(read_card(path))
        except CardError as exc:
            errors.append(str(exc))
    return cards, errors


def write_card(data: dict[str, Any], folder: str | Path | None = None, overwrite: bool = False) -> Path:
    """Validate ``data`` and write it atomically as ``<name>.json`` in the models folder."""
    from mlvis.store import atomic_write_text

    folder = Path(folder) if folder is not None else models_dir()
    data = validate({k: v for k, v in data.items() if v is not None}, "The new model card")
    name = data.get("name")
    if not name:
        raise CardError("The new model card needs a name.")
    _check_name_free(name, folder, overwrite)
    for key in ("checkpoint",):
        if data.get(key):
            resolve_inside(folder, data[key], f"The new card's {key}")
    path = folder / f"{name}.json"
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    sync(force=True)
    return path


def _check_name_free(name: str, folder: Path, overwrite: bool) -> None:
    from mlvis.models.registry import FAMILIES, registered_source

    if name in FAMILIES or name.startswith(("timm:", "torchvision:")):
        raise CardError(f"{name!r} is a family name; give the card a name of its own.")
    owner = registered_source(name)
    if owner is not None and not owner.startswith("card "):
        raise CardError(f"{name!r} is already registered ({owner}); give the card another name.")
    if (folder / f"{name}.json").exists() and not overwrite:
        raise CardError(f"A model card named {name!r} is already in {folder}.")


# ---------------------------------------------------------------------------------------- registration

_state: dict[str, Any] = {"key": None, "names": set(), "errors": [], "plugins": None, "plugin_errors": []}


def _folder_key(folder: Path) -> tuple:
    try:
        entries = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.glob("*.json"))
    except OSError:
        entries = []
    return (str(folder.resolve()) if folder.exists() else str(folder), tuple(entries))


def sync(force: bool = False) -> None:
    """Register the models folder's cards (and, once per process, the entry points); cheap when nothing
    changed. Cards that disappeared are unregistered; a card may not take a built-in model's name."""
    from mlvis.models.registry import register_model, registered_source, unregister_model

    if _state["plugins"] is None:
        load_entry_points()
    folder = models_dir()
    key = _folder_key(folder)
    if key == _state["key"] and not force:
        return
    for name in _state["names"]:
        unregister_model(name)
    cards, errors = discover(folder)
    names: set[str] = set()
    for card in cards:
        owner = registered_source(card.name)
        if owner is not None and not owner.startswith("card "):
            errors.append(
                f"The model card {card.path.name} takes the name {card.name!r} of a {owner} model; it is ignored."
            )
            continue
        if card.name in names:
            errors.append(f"The model card {card.path.name} repeats the name {card.name!r}; it is ignored.")
            continue
        register_model(_factory(card), name=card.name, source=f"card {card.path}")
        names.add(card.name)
    _state.update(key=key, names=names, errors=errors)


def _factory(card: Card):
    def factory(device=None, progress=None, **overrides):
        return card.build(device=device, progress=progress, **overrides)

    factory.__doc__ = card.data.get("description") or f"{card.family} from the card {card.path.name}"
    return factory


def card_errors() -> list[str]:
    """Sentences about the cards (and plugins) that could not be registered."""
    sync()
    return list(_state["errors"]) + list(_state["plugin_errors"])


def registered_cards() -> list[Card]:
    """The cards currently registered, by name."""
    sync()
    cards, _ = discover()
    return [c for c in cards if c.name in _state["names"]]


def card_of(name: str) -> Card | None:
    return next((c for c in registered_cards() if c.name == name), None)


def card_version(name: str) -> str:
    """What identifies the files behind a card's model right now: the card's and its checkpoint's size and
    modification time ("" for a model that is not a card). A cache keyed by it never serves the weights of
    a card that was replaced under the same name."""
    card = card_of(name)
    if card is None:
        return ""
    parts = []
    for path in (card.path, _checkpoint_or_none(card)):
        try:
            st = path.stat() if path is not None else None
        except OSError:
            st = None
        parts.append(f"{st.st_size}:{st.st_mtime_ns}" if st is not None else "-")
    return "|".join(parts)


def _checkpoint_or_none(card: Card) -> Path | None:
    try:
        return card.checkpoint_path()
    except (CardError, ValueError, OSError):
        return None


def load_entry_points(force: bool = False) -> list[str]:
    """Register the factories of the ``mlvis.models`` entry points of installed packages; the names."""
    from importlib.metadata import entry_points

    from mlvis.models.registry import register_model

    if _state["plugins"] is not None and not force:
        return list(_state["plugins"])
    names: list[str] = []
    errors: list[str] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not break mlvis
            errors.append(f"The mlvis.models plugin {ep.name!r} ({ep.value}) failed to load: {exc}.")
            continue
        if not callable(obj):
            errors.append(f"The mlvis.models plugin {ep.name!r} ({ep.value}) is not a factory function.")
            continue
        dist = getattr(getattr(ep, "dist", None), "name", None) or ep.value
        register_model(obj, name=ep.name, source=f"plugin {dist}")
        names.append(ep.name)
    _state["plugins"], _state["plugin_errors"] = names, errors
    return names


# ---------------------------------------------------------------------------------------- adding a model


def safe_file_name(name: str, what: str = "the file") -> str:
    """A plain file name (no folders, no leading dot), or :class:`CardError`."""
    base = Path(str(name)).name
    if not base or base != str(name) or base.startswith(".") or not re.match(r"^[\w.\- ()]+$", base):
        raise CardError(f"{what} {name!r} must be a plain file name (letters, digits, '.', '_', '-').")
    return base


def add_model(
    data: dict[str, Any],
    checkpoint_name: str,
    chunks,
    labels_text: str | None = None,
    folder: str | Path | None = None,
    check: bool = True,
    progress=None,
) -> Path:
    """Write an uploaded checkpoint (``chunks``: an iterable of ``bytes``), its labels and its card into the
    models folder, each file atomically; then load the model once (``check``). On any failure nothing
    stays behind and the error is one sentence.

    Args:
        data: the card's fields without ``checkpoint`` / ``labels`` files (``name`` and ``family`` needed).
        checkpoint_name: the uploaded file's name (kept, so an ASL file name still tells its input size).
        chunks: the checkpoint's bytes, in pieces (progress is reported per piece; an iterable with a
            ``total`` attribute gives a fraction).
        labels_text: the text of a labels file (one per line, or a JSON list), if any.
        progress: ``progress(fraction, sentence)``.
    """
    from mlvis.models.labels import parse_labels
    from mlvis.store import atomic_write

    folder = Path(folder) if folder is not None else models_dir()
    data = validate({k: v for k, v in data.items() if v is not None}, "The new model card")
    name = data.get("name")
    if not name or not NAME_RE.match(name):
        raise CardError("The new model needs a name of lower-case letters, digits, '.', '_' or '-'.")
    _check_name_free(name, folder, overwrite=False)
    ckpt = safe_file_name(checkpoint_name, "The checkpoint's name")
    if (folder / ckpt).exists():
        raise CardError(f"A file named {ckpt} is already in the models folder; rename the checkpoint.")
    labels_file = None
    if labels_text is not None:
        parse_labels(labels_text, "the labels file")  # refuse bad labels before anything is written
        labels_file = f"{name}.labels.txt"
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    report = progress or (lambda *_: None)
    try:
        def write(tmp: str) -> None:
            total = getattr(chunks, "total", None)
            done = 0
            with open(tmp, "wb") as out:
                for piece in chunks:
                    out.write(piece)
                    done += len(piece)
                    report(
                        min(0.5, 0.5 * done / total) if total else 0.25, f"Saving {ckpt} ({done / 2**20:.0f} MB) ..."
                    )

        atomic_write(folder / ckpt, write)
        written.append(folder / ckpt)
        if labels_file:
            atomic_write(folder / labels_file, lambda tmp: Path(tmp).write_text(labels_text or "", encoding="utf-8"))
            written.append(folder / labels_file)
        card = {**data, "checkpoint": ckpt, **({"labels": labels_file} if labels_file else {})}
        path = write_card(card, folder)
        written.append(path)
        if check:
            report(0.6, f"Loading {name} once to check it ...")
            card_obj = read_card(path)
            card_obj.build(progress=lambda f, s: report(0.6 + 0.4 * f, s))
        report(1.0, f"{name} is ready.")
        return path
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        sync(force=True)
        raise
