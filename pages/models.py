"""Models: every registered model's card side by side, how to add real models, and an upload form."""

import streamlit as st

import mlvis
from mlvis.app import cache, models_page
from mlvis.app.page import in_frame

in_frame()  # a cold link straight to this page still gets the sidebar

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

specs = models_page.cards_table(names)
for name in names:
    models_page.model_section(name, specs.get(name))

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
