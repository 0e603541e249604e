"""Models: every registered model's card side by side, how to add real models, and an upload form."""

import pandas as pd
import streamlit as st

import mlvis
from mlvis.app import cache, models_page


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


st.title("Models")
names = mlvis.list_models()
folder = models_page.models_folder()
st.markdown(
    f"""
Every page attacks a model from mlvis's **registry**: the {len(names)} registered models are the
embedded demo models, every **model card** in the models folder `{folder.resolve()}`
(`MLVIS_MODELS_DIR`), and models that installed packages add (entry-point group `mlvis.models`).
Each model carries a **card** (`model.spec`): its labels in output order, the input size and the
**resize rule** every image path uses (so a photo is resized exactly as the model was evaluated), the
mean/std normalisation that runs *inside* the model (so every attack works on images in [0, 1] and ε
means the same for every model), and the decision threshold. The table compares the cards; the
sections under it list each model's labels and, for the demo models, how they were trained.
"""
)
st.metric(
    "Device in use",
    cache.device_label(),
    help="Models and attacks run on the GPU when PyTorch sees one, else on the CPU; weights are float32.",
)
st.caption(f"Weights: {models_page.dtype_label()}. bf16 autocast: `mlvis attack --bf16` (the engine's `autocast=`).")

device = cache.device_label()
load_all = st.button("Load every model (large checkpoints too)", key="models.load_all")
columns, errors, waiting = models_page.model_columns(names, device, load_all=load_all)
for error in errors + models_page.card_problems():
    st.error(error)
if waiting:
    st.info(
        f"{', '.join(waiting)}: large checkpoint(s), loaded on demand (the button above, or pick one in the sidebar)."
    )
specs = {}
for name in names:
    if name not in waiting:
        model, _ = cache.try_load_model(name)
        specs[name] = model.spec if model is not None else None
fields = {name: card_fields(specs.get(name), columns[name]) for name in names}
if fields:
    rows = list(next(iter(fields.values())))
    table = pd.DataFrame({"field": rows} | {n: [f.get(r, "n/a") for r in rows] for n, f in fields.items()})
    st.dataframe(table, hide_index=True, width="stretch", height=35 * (len(table) + 1) + 3, key="models.table")

for name in names:
    spec = specs.get(name)
    st.subheader(name)
    if spec is None:
        st.caption("Not loaded yet.")
        continue
    card = spec.card
    if spec.description:
        st.caption(spec.description)
    for note in spec.notes:
        st.warning(note)
    st.caption(models_page.preprocessing_sentence(spec))
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

st.header("The paper's own models")
st.markdown(
    """
The paper attacks **ASL** (TResNet-L on MS-COCO, NUS-WIDE and Pascal VOC; Alibaba-MIIL/ASL's
`MODEL_ZOO.md`) and **Query2Label** (ResNet-101 on MS-COCO at 448×448; SlongLiu/query2labels'
README). mlvis reads their files safely (weights only; a file that would run code is refused) with
their exact input size, resize rule, normalisation and label order:

- **Drop two files in the models folder**: the checkpoint and a card, e.g. `asl-coco-l.json` with
  `{"family": "asl-tresnet-l", "checkpoint": "MS_COCO_TRresNet_L_448_86.6.pth"}`; or
- `mlvis add-model --family asl-tresnet-l --checkpoint MS_COCO_TRresNet_L_448_86.6.pth` (copies the file
  in and writes the card); with network, `mlvis add-model --official asl-coco-l-448` downloads it; or
- the form below.

Families: `asl-tresnet-m/-l/-xl` (the official `{'model', 'idx_to_class'}` files, bare state dicts and the
paper's authors' `{'state_dict'}` files), `q2l-r101-448` (`checkpoint.pkl`, with `config_new.json` beside it;
option `normalize=false` reproduces the paper's own setup without ImageNet normalisation and says so on
every page), `timm:<arch>` / `torchvision:<arch>` (any architecture with a multi-label head) and
`torchscript`. docs/model-loading.md describes each format.
"""
)
models_page.upload_form(folder)
