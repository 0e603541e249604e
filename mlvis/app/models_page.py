"""Glue for real models in the dashboard: the Models page's card table and upload form, load progress,
the device/dtype caption and model notes in the sidebar, prediction chips and the out-of-world sentence.

Everything that decides something lives in the library (``mlvis.models.cards``, ``mlvis.models``); this
module draws it. It keeps no per-user state outside ``st.session_state``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import streamlit as st
import torch

import mlvis
from mlvis.models import cards, preprocess_for
from mlvis.models.labels import TABLES
from mlvis.models.loading import CHECKPOINT_EXTENSIONS, CheckpointError
from mlvis.models.registry import FAMILIES, model_source

#: files up to this size load by themselves on the Models page; larger ones wait for a click
AUTO_LOAD_BYTES = 150 * 2**20
UPLOAD = "models.upload"
DEMO_WORLD_SENTENCE = (
    "{name} knows only the {n} shapes of the demo world; load a real model on the Models page to attack photos."
)
PHOTO_WORLD_SENTENCE = (
    "{name} was trained on photos ({n} labels such as {examples}); the demo scenes are not its world, so its "
    "predictions on them mean little: upload photos to attack it."
)

_local = threading.local()  # the progress bar of the model being loaded in this script thread, if any


# ----------------------------------------------------------------------------------------------- loading


def models_folder() -> Path:
    """The models folder the cards are read from (``MLVIS_MODELS_DIR``, default ``./models``)."""
    return cards.models_dir()


def card_problems() -> list[str]:
    """One sentence per card in the models folder that could not be read."""
    return list(cards.card_errors())


def preprocessing_sentence(spec: mlvis.ModelSpec) -> str:
    """How images are resized and interpolated before this model sees them."""
    return f"Images are {preprocess_for(spec).describe()} before the model sees them."


def progress_hook(fraction: float, sentence: str) -> None:
    """Passed to ``create_model`` by ``cache.load_model``: moves the bar of ``loading_progress`` if one is
    open in this thread (a no-op otherwise)."""
    bar = getattr(_local, "bar", None)
    if bar is None:
        return
    with _outside_cache_recording():  # a transient bar: never part of the cached function's replay
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=sentence)


@contextlib.contextmanager
def _outside_cache_recording():
    """Draw on an existing element from inside ``st.cache_resource`` without Streamlit recording it for
    replay (the bar belongs to this run only). Falls back to drawing nothing if Streamlit's internals move."""
    try:
        from streamlit.runtime.caching.cached_message_replay import in_cached_function
    except ImportError:  # pragma: no cover - a Streamlit without this context variable
        yield
        return
    token = in_cached_function.set(False)
    try:
        yield
    finally:
        in_cached_function.reset(token)


@contextlib.contextmanager
def loading_progress(label: str):
    """Show a progress bar while the models loaded inside the block report progress."""
    bar = st.progress(0.0, text=label)
    _local.bar = bar
    try:
        yield bar
    finally:
        _local.bar = None
        bar.empty()


def load_options(name: str) -> dict:
    """Keyword options ``cache.load_model`` gives ``create_model`` (the progress hook)."""
    return {"progress": progress_hook}


# ----------------------------------------------------------------------------------------------- sidebar


def dtype_label() -> str:
    det = " · deterministic" if torch.are_deterministic_algorithms_enabled() else ""
    from mlvis.app import state

    amp = " · Lab: bf16 autocast" if state.bf16() else ""
    return f"float32 weights{amp}{det}"


def sidebar_notes(name: str) -> None:
    """Below the picker: the model's notes (a setting that departs from its own evaluation), on every page."""
    card = cards.card_of(name)
    if card is None:
        return
    st.caption(
        f"{name} is a real model (photos). Pages that draw demo scenes show it scenes outside its world; "
        "the Attack Lab attacks your own photos with its card's preprocessing."
    )
    opts = card.data.get("options") or {}
    if card.family.startswith("q2l") and opts.get("normalize") is False:
        from mlvis.models.q2l import PAPER_SETUP_NOTE

        st.warning(PAPER_SETUP_NOTE, icon=":material/info:")


# ----------------------------------------------------------------------------------------------- world


def world_sentence(spec: mlvis.ModelSpec, kind: str) -> str | None:
    """The plain sentence when an image of ``kind`` (``"demo"`` scenes, ``"upload"`` / ``"files"``) does not fit the
    model's world; ``None`` when it fits or the world is unknown."""
    if spec.world == "demo" and kind in ("files", "upload"):
        return DEMO_WORLD_SENTENCE.format(name=spec.name, n=spec.num_labels)
    if spec.world == "photos" and kind == "demo":
        examples = ", ".join(spec.labels[:3])
        return PHOTO_WORLD_SENTENCE.format(name=spec.name, n=spec.num_labels, examples=examples)
    return None


def world_notice(spec: mlvis.ModelSpec, kind: str) -> None:
    sentence = world_sentence(spec, kind)
    if sentence:
        st.warning(sentence, icon=":material/public_off:")


# ----------------------------------------------------------------------------------------------- chips


def _escape(text: str) -> str:
    return "".join("\\" + ch if ch in "[]*_`:\\<>#|~$" else ch for ch in text)


def chips_markdown(probs: np.ndarray, labels: Sequence[str], threshold: float, k: int = 5) -> str:
    """Top-``k`` labels of one image as badges: blue when predicted present (≥ threshold), grey otherwise."""
    order = np.argsort(-np.asarray(probs), kind="stable")[:k]
    chips = []
    for j in order:
        colour = "blue" if probs[j] >= threshold else "gray"
        chips.append(f":{colour}-badge[{_escape(labels[j])} {probs[j]:.0%}]")
    return " ".join(chips)


@st.cache_data(max_entries=32, show_spinner="Classifying the images ...")
def _clean_probs(model_name: str, digest: str, _model: mlvis.MultiLabelModel, _images: np.ndarray) -> np.ndarray:
    """The model's confidences on a batch, keyed by model name and the batch's content digest."""
    return _model.predict_proba(torch.from_numpy(_images)).cpu().numpy()


def prediction_chips(model: mlvis.MultiLabelModel, images: np.ndarray, names: Sequence[str], k: int = 5) -> None:
    """What the model sees in each image before the attack: its top labels as chips."""
    from mlvis.data.images import image_digest

    batch = np.ascontiguousarray(images, np.float32)
    probs = _clean_probs(model.spec.name, image_digest(batch), model, batch)
    st.markdown(f"**{model.spec.name} sees** (top {k}; blue = predicted present at {model.threshold:g}):")
    for name, p in zip(names, probs):
        st.markdown(f"{_escape(str(name))}: " + chips_markdown(p, model.labels, model.threshold, k))


def result_chips(run) -> None:
    """After an attack: each image's top labels before and after, per method, as chips."""
    if not run.results:
        return
    first = run.results[0]
    with st.expander("Top labels before and after, as chips", expanded=True):
        for i in range(first.clean_probs.shape[0]):
            st.markdown(
                f"image {i + 1}, before: " + chips_markdown(first.clean_probs[i], first.labels, first.threshold)
            )
            for r in run.results:
                st.markdown(f"after {r.name}: " + chips_markdown(r.adv_probs[0, i], r.labels, r.threshold))


# ----------------------------------------------------------------------------------------------- card table


def _file_bytes(card: cards.Card) -> int | None:
    try:
        path = card.checkpoint_path()
        return path.stat().st_size if path is not None else None
    except (CheckpointError, OSError):
        return None


def _norm_text(mean, std) -> str:
    if tuple(mean) == (0.0, 0.0, 0.0) and tuple(std) == (1.0, 1.0, 1.0):
        return "none ([0, 1] pixels)"
    return "mean " + ", ".join(f"{v:.3f}" for v in mean) + " / std " + ", ".join(f"{v:.3f}" for v in std)


def card_column(name: str, spec: mlvis.ModelSpec | None, card: cards.Card | None, device: str) -> dict[str, str]:
    """One model's column of the comparison table (from the loaded spec, else from its card)."""
    d = card.data if card else {}
    size = spec.input_size if spec else d.get("input_size")
    params = spec.card.get("parameters") if spec else None
    nbytes = _file_bytes(card) if card else None
    memory = params * 4 if isinstance(params, int) else nbytes
    labels = spec.num_labels if spec else (len(d["labels"]) if isinstance(d.get("labels"), list) else d.get("labels"))
    return {
        "family": (spec.family if spec else d.get("family")) or "built in",
        "labels": str(labels if labels is not None else "from the checkpoint"),
        "input size": "×".join(str(v) for v in size) if isinstance(size, (list, tuple)) else "from the checkpoint",
        "resize": f"{spec.resize} ({spec.interpolation})"
        if spec
        else f"{d.get('resize', 'family default')} ({d.get('interpolation', 'family default')})",
        "normalisation": _norm_text(spec.mean, spec.std) if spec else "as the family says",
        "threshold": f"{spec.threshold:g}" if spec else str(d.get("threshold", 0.5)),
        "world": (spec.world or "unknown") if spec else "photos",
        "parameters": f"{params / 1e6:.2f} M" if isinstance(params, int) else "load to see",
        "memory (fp32 weights)": f"{memory / 2**20:.0f} MB" if memory else "n/a",
        "device": device if spec else "not loaded",
        "source": (d.get("source") or (spec.source if spec else "")) or "embedded",
        "licence": d.get("licence") or ("the project's (demo)" if not card else "n/a"),
        "registered by": model_source(name),
    }


def model_columns(names: Sequence[str], device: str, load_all: bool = False):
    """``(columns, errors, waiting)``: one column per model; a card whose weights are larger than
    ``AUTO_LOAD_BYTES`` waits for a click unless ``load_all`` or it is already in session state."""
    from mlvis.app import cache

    columns: dict[str, dict[str, str]] = {}
    errors: list[str] = []
    waiting: list[str] = []
    loaded = st.session_state.setdefault("models.loaded", [])
    for name in names:
        card = cards.card_of(name)
        big = card is not None and (_file_bytes(card) or 0) > AUTO_LOAD_BYTES
        spec = None
        if not big or load_all or name in loaded:
            with loading_progress(f"Loading {name} ..."):
                model, error = cache.try_load_model(name)
            if model is not None:
                spec = model.spec
                if name not in loaded:
                    loaded.append(name)
            else:
                errors.append(error or f"{name} could not be loaded.")
        else:
            waiting.append(name)
        columns[name] = card_column(name, spec, card, device)
    return columns, errors, waiting


# ----------------------------------------------------------------------------------------------- upload


def upload_form(folder: Path) -> None:
    """A form for a checkpoint, its labels and settings; writes a card into the models folder."""
    families = [*FAMILIES, "timm:<arch>", "torchvision:<arch>"]
    limit = st.get_option("server.maxUploadSize")
    with st.form(UPLOAD, clear_on_submit=False, border=True):
        st.markdown(f"**Add a model** to the models folder `{folder}` (every page can then pick it).")
        c1, c2 = st.columns(2)
        family = c1.selectbox(
            "Family", families, key="models.up.family",
            help="asl-tresnet-*: the ASL checkpoints; q2l-r101-448: Query2Label; timm / torchvision: any "
            "architecture with a multi-label head; torchscript: a scripted module.",
        )  # fmt: skip
        arch = c2.text_input("Architecture (timm / torchvision only)", key="models.up.arch",
                             placeholder="resnet50, mobilenetv3_small_050, ...")  # fmt: skip
        name = c1.text_input("Name", key="models.up.name", placeholder="asl-coco-l",
                             help="Lower-case letters, digits, '.', '_' or '-'.")  # fmt: skip
        ckpt = c2.file_uploader(
            f"Checkpoint (up to {limit} MB here; larger files: copy them into the folder and run `mlvis add-model`)",
            type=list(CHECKPOINT_EXTENSIONS), key="models.up.ckpt",
        )  # fmt: skip
        labels_choice = c1.selectbox("Labels", ["from the checkpoint", "coco", "voc", "nus-wide", "a labels file"],
                                     key="models.up.labels")  # fmt: skip
        labels_file = c2.file_uploader("Labels file (one per line, or a JSON list)", type=["txt", "json"],
                                       key="models.up.labels_file")  # fmt: skip
        c3, c4, c5, c6 = st.columns(4)
        size = c3.number_input("Input size S (S×S; 0 = the family's)", min_value=0, max_value=2048, value=0, step=32,
                               key="models.up.size")  # fmt: skip
        resize = c4.selectbox("Resize", ["stretch", "crop"], key="models.up.resize",
                              help="stretch: the whole image to S×S (ASL, Q2L); crop: centre crop first.")  # fmt: skip
        interp = c5.selectbox("Interpolation", ["bilinear", "bicubic", "lanczos", "nearest"], key="models.up.interp")
        threshold = c6.number_input("Threshold", min_value=0.01, max_value=0.99, value=0.5, step=0.05,
                                    key="models.up.threshold")  # fmt: skip
        c7, c8 = st.columns(2)
        mean = c7.text_input("Mean R,G,B (timm / torchvision / torchscript; empty = the architecture's)",
                             key="models.up.mean")  # fmt: skip
        std = c8.text_input("Std R,G,B", key="models.up.std")
        paper = st.checkbox("Query2Label: the paper's own setup (no ImageNet normalisation)", key="models.up.paper")
        source = c7.text_input("Source (URL or paper)", key="models.up.source")
        licence = c8.text_input("Licence note", key="models.up.licence")
        submitted = st.form_submit_button("Add the model", type="primary")
    if not submitted:
        return
    try:
        data = form_card(family, arch, name, labels_choice, size, resize, interp, threshold, mean, std, paper,
                         source, licence)  # fmt: skip
        if ckpt is None:
            raise CheckpointError("Choose a checkpoint file to upload.")
        labels_text = None
        if labels_choice == "a labels file":
            if labels_file is None:
                raise CheckpointError("Choose a labels file, or pick a label table.")
            labels_text = labels_file.getvalue().decode("utf-8", errors="replace")
        with loading_progress(f"Adding {data['name']} ...") as bar:
            path = cards.add_model(data, ckpt.name, _chunks(ckpt), labels_text, folder,
                                   progress=lambda f, s: bar.progress(min(max(f, 0.0), 1.0), text=s))  # fmt: skip
    except (ValueError, OSError) as exc:
        st.error(f"The model was not added: {exc}")
        return
    st.success(f"Added {data['name']} ({path.name}); pick it in the sidebar.")
    st.session_state["models.added"] = data["name"]


class _Chunks:
    """An uploaded file's bytes in 8 MB pieces, with its total size (for the progress bar)."""

    def __init__(self, upload):
        self.upload, self.total = upload, int(getattr(upload, "size", 0) or 0)

    def __iter__(self):
        self.upload.seek(0)
        while piece := self.upload.read(8 << 20):
            yield piece


def _chunks(upload) -> _Chunks:
    return _Chunks(upload)


def _triple(text: str, what: str):
    if not text.strip():
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise CheckpointError(f"{what} must be three comma-separated numbers, such as 0.485, 0.456, 0.406.") from None
    if len(values) != 3:
        raise CheckpointError(f"{what} must be three comma-separated numbers, such as 0.485, 0.456, 0.406.")
    return values


def form_card(family, arch, name, labels_choice, size, resize, interp, threshold, mean, std, paper, source, licence):
    """The card the upload form describes (validated when it is written)."""
    if family.endswith(":<arch>"):
        if not arch.strip():
            raise CheckpointError(f"Name the {family.split(':')[0]} architecture (e.g. resnet50).")
        family = f"{family.split(':')[0]}:{arch.strip()}"
    data: dict = {
        "name": name.strip().lower(),
        "family": family,
        "resize": resize,
        "interpolation": interp,
        "threshold": float(threshold),
        "source": source.strip() or "uploaded on the Models page",
        "licence": licence.strip() or "not stated",
    }
    if labels_choice in TABLES:
        data["labels"] = labels_choice
    if size:
        data["input_size"] = [int(size), int(size)]
    generic = family.startswith(("timm:", "torchvision:")) or family == "torchscript"
    for key, text in (("mean", mean), ("std", std)):
        value = _triple(text, key.capitalize())
        if value is not None:
            if not generic:
                raise CheckpointError(f"{family} sets its own normalisation; leave {key} empty.")
            data[key] = value
    if paper:
        if not family.startswith("q2l"):
            raise CheckpointError("The paper's setup without normalisation is a Query2Label option.")
        data["options"] = {"normalize": False}
    return data


# ---------------------------------------------------------------------------------------------------- the page's parts


def fmt_triple(values) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def fmt_minutes(seconds) -> str:
    return f"{seconds / 60:.1f} min" if isinstance(seconds, (int, float)) else "n/a"


def fmt_number(value, pattern: str = "{:g}") -> str:
    return pattern.format(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def loss_text(training: dict) -> str:
    if "gamma_neg" not in training:
        return "n/a"
    clip = training.get("clip") or 0
    return f"ASL (γ− = {training['gamma_neg']:g}, γ+ = {training.get('gamma_pos', 0):g}, clip {clip:g})"


def card_fields(spec: mlvis.ModelSpec | None, column: dict[str, str]) -> dict[str, str]:
    """One model's card as text, field by field (a column of the comparison table)."""
    if spec is None:
        na = "load to see"
        return {"labels": column["labels"], "input size": column["input size"], "mean (R, G, B)": na,
                "std (R, G, B)": na, "threshold": column["threshold"], **column}  # fmt: skip
    card, training = spec.card, spec.card.get("training", {})
    params = card.get("parameters")
    out = {
        "labels": str(spec.num_labels),
        "input size": "×".join(str(v) for v in spec.input_size),
        "mean (R, G, B)": fmt_triple(spec.mean),
        "std (R, G, B)": fmt_triple(spec.std),
        "threshold": f"{spec.threshold:g}",
        "parameters": f"{params / 1e6:.2f} M" if isinstance(params, (int, float)) else "n/a",
        "test mAP": fmt_number(card.get("test_mAP"), "{:.4f}"),
        "test images": fmt_number(card.get("test_images")),
        "training time": fmt_minutes(card.get("training_time_s")),
        "training threads": fmt_number(card.get("training_threads")),
        "training images": fmt_number(training.get("train_images")),
        "epochs": fmt_number(training.get("epochs")),
        "batch size": fmt_number(training.get("batch_size")),
        "learning rate": fmt_number(training.get("lr")),
        "training loss": loss_text(training),
        "weights": spec.source or "n/a",
    }
    return out | {k: v for k, v in column.items() if k not in out}


def cards_table(names: Sequence[str]) -> dict[str, mlvis.ModelSpec | None]:
    """The button that loads every model, each model's loading problem, and the cards side by side (one
    column per model); returns each shown model's spec (``None`` when it did not load)."""
    import pandas as pd

    from mlvis.app import cache

    device = cache.device_label()
    load_all = st.button("Load every model (large checkpoints too)", key="models.load_all")
    columns, errors, waiting = model_columns(names, device, load_all=load_all)
    for error in errors + card_problems():
        st.error(error)
    if waiting:
        st.info(
            f"{', '.join(waiting)}: large checkpoint(s), loaded on demand (the button above, or pick one in the "
            "sidebar)."
        )
    specs: dict[str, mlvis.ModelSpec | None] = {}
    for name in names:
        if name not in waiting:
            model, _ = cache.try_load_model(name)
            specs[name] = model.spec if model is not None else None
    fields = {name: card_fields(specs.get(name), columns[name]) for name in names}
    if fields:
        rows = list(next(iter(fields.values())))
        table = pd.DataFrame({"field": rows} | {n: [f.get(r, "n/a") for r in rows] for n, f in fields.items()})
        st.dataframe(table, hide_index=True, width="stretch", height=35 * (len(table) + 1) + 3, key="models.table")
    return specs


def model_section(name: str, spec: mlvis.ModelSpec | None) -> None:
    """One model's section: its description and notes, its preprocessing, its labels (with their test AP) and,
    for a demo model, how it was trained."""
    st.subheader(name)
    if spec is None:
        st.caption("Not loaded yet.")
        return
    import pandas as pd

    card = spec.card
    if spec.description:
        st.caption(spec.description)
    for note in spec.notes:
        st.warning(note)
    st.caption(preprocessing_sentence(spec))
    labels = pd.DataFrame({"label": list(spec.labels)})
    per_label = card.get("test_AP_per_label")
    if isinstance(per_label, list) and len(per_label) == spec.num_labels:
        labels["test AP"] = per_label
    with st.expander(f"{name}: its {spec.num_labels} labels, in output order" + (", with their test AP" if
                     "test AP" in labels else "")):  # fmt: skip
        st.dataframe(
            labels,
            width="stretch",
            column_config={"test AP": st.column_config.ProgressColumn(format="%.4f", min_value=0.0, max_value=1.0)},
            key=f"models.labels.{name}",
        )
    if name.startswith("demo-"):
        with st.expander(f"{name}: training configuration and dataset"):
            threads = card.get("training_threads")
            sentence = f"Trained in {fmt_minutes(card.get('training_time_s'))}"
            sentence += f" on {threads} CPU threads" if threads else ""
            sentence += f" with torch {card['torch']}" if card.get("torch") else ""
            sentence += f"; `mlvis train-demo --model {name}` reproduces the weights"
            st.markdown(sentence + ".")
            st.json({"training": card.get("training", {}), "dataset": card.get("dataset", {})}, expanded=True)
    else:
        st.caption(
            f"Profiles and label correlations are computed per set of weights: `mlvis profile --model {name} "
            f"--image-dir PHOTOS` and `mlvis correlations --model {name} --image-dir PHOTOS` cache them under the "
            "weights' fingerprint, and every page finds them."
        )
