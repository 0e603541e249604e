"""Models: the registry's models side by side with their cards, and the device they run on."""

import pandas as pd
import streamlit as st

import mlvis
from mlvis.app import cache


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


def card_fields(spec: mlvis.ModelSpec) -> dict[str, str]:
    """One model's card as text, field by field (a column of the comparison table)."""
    card, training = spec.card, spec.card.get("training", {})
    params = card.get("parameters")
    return {
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


st.title("Models")
names = mlvis.list_models()
st.markdown(
    f"""
Every page attacks a model from mlvis's **registry**. `mlvis.list_models()` names the
{len(names)} registered models, and `mlvis.create_model(name)` builds one on the device, in eval
mode with frozen weights. Each model carries a **card** (`model.spec`): its labels in output
order, the input size it expects, the mean/std normalisation that runs *inside* the model (so
every attack works on images in [0, 1] and ε means the same for every model), the decision
threshold, and how it was trained and measured. The table compares the cards; the sections
under it list each model's labels and training configuration.
"""
)
st.metric(
    "Device in use",
    cache.device_label(),
    help="Models and attacks run on the GPU when PyTorch sees one, else on the CPU.",
)

cards = cache.model_cards(names)
for _name, _spec, error in cards:
    if error:
        st.error(error)
loaded = [(name, spec) for name, spec, _ in cards if spec is not None]
if loaded:
    fields = {name: card_fields(spec) for name, spec in loaded}
    table = pd.DataFrame({"field": list(fields[loaded[0][0]])} | {n: list(f.values()) for n, f in fields.items()})
    st.dataframe(table, hide_index=True, width="stretch", height=35 * (len(table) + 1) + 3, key="models.table")

for name, spec in loaded:
    card = spec.card
    st.subheader(name)
    if spec.description:
        st.caption(spec.description)
    labels = pd.DataFrame({"label": list(spec.labels)})
    per_label = card.get("test_AP_per_label")
    if isinstance(per_label, list) and len(per_label) == spec.num_labels:
        labels["test AP"] = per_label
    with st.expander(f"{name}: its {spec.num_labels} labels, in output order, with their test AP"):
        st.dataframe(
            labels,
            width="stretch",
            column_config={"test AP": st.column_config.ProgressColumn(format="%.4f", min_value=0.0, max_value=1.0)},
            key=f"models.labels.{name}",
        )
    with st.expander(f"{name}: training configuration and dataset"):
        threads = card.get("training_threads")
        sentence = f"Trained in {fmt_minutes(card.get('training_time_s'))}"
        sentence += f" on {threads} CPU threads" if threads else ""
        sentence += f" with torch {card['torch']}" if card.get("torch") else ""
        if name.startswith("demo-"):
            sentence += f"; `mlvis train-demo --model {name}` reproduces the weights"
        st.markdown(sentence + ".")
        st.json({"training": card.get("training", {}), "dataset": card.get("dataset", {})}, expanded=True)

st.header("The paper's own models")
st.markdown(
    """
The paper attacks ASL (TResNet-L, trained on MS-COCO, NUS-WIDE and Pascal VOC) and Query2Label
(ResNet-101, MS-COCO at 448×448). mlvis cannot load those checkpoints yet: reading them safely,
with their exact input size, normalisation and label order, is the work of the real-model issue.
Until then the registry holds the demo models above, which play the same two roles (a CNN trained
with the asymmetric loss, and a CNN with a transformer decoder over label queries) on the
project's own scene world, so everything runs offline.

Code that uses the library can add a model of its own today: decorate a factory that returns an
`mlvis.MultiLabelModel` (your network plus an `mlvis.ModelSpec` card) with `@mlvis.register_model`,
and `mlvis.create_model(name)` builds it like the demo models.
"""
)
