"""Random-weight stand-ins for the official checkpoints, in their exact containers and key layouts.

The key -> shape manifests come from ``shared/models/*.json`` beside the repository checkout (derived
from the official code, see MODELS.md). Values are cheap but not degenerate: every tensor is a small
seeded pattern, batch-norm variances are positive and some ABN weights are negative (so the |w| + 1e-5
fold matters).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
KEYS = SHARED / "models"


def manifest(name: str) -> dict[str, list[int]]:
    """``{key: shape}`` of ``shared/models/<file>``: ``asl-m`` / ``asl-l`` / ``asl-xl`` / ``asl-l-81`` / ``q2l``."""
    if name == "q2l":
        return json.loads((KEYS / "q2l_r101_coco_keys.json").read_text())
    variant = {"asl-m": "tresnet_m_80", "asl-l": "tresnet_l_80", "asl-xl": "tresnet_xl_20", "asl-l-81": "tresnet_l_81"}
    return json.loads((KEYS / "asl_all_variants_keys.json").read_text())[variant[name]]["required"]


def fill(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with these shapes: small seeded values, positive variances."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        n = int(np.prod(shape)) if shape else 1
        if key.endswith("running_var"):
            t = torch.rand(n, generator=g) + 0.5
        elif key.endswith("running_mean"):
            t = torch.randn(n, generator=g) * 0.1
        elif key.endswith(".pe"):
            t = torch.zeros(n)
        elif len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            t = torch.randn(n, generator=g) * (1.0 / fan_in) ** 0.5
        else:
            t = torch.randn(n, generator=g) * 0.1
            if key.endswith("weight"):  # a norm's scale: around 0.5, every 7th one negative (ABN keeps |w|)
                t = t + 0.5
                t[::7] *= -1
        sd[key] = t.reshape(shape)
    return sd


def asl_checkpoint(
    path: Path,
    variant: str = "asl-m",
    container: str = "official",
    seed: int = 0,
    labels: tuple[str, ...] | None = None,
    prefix: str = "",
) -> dict[str, torch.Tensor]:
    """Write an ASL TResNet checkpoint: ``official`` ``{'model', 'num_classes', 'idx_to_class'}``, ``bare``
    state dict, or the paper's authors' ``{'epoch', 'state_dict', ...}``. Returns the state dict."""
    sd = fill(manifest(variant), seed)
    n = sd["head.fc.weight"].shape[0]
    sd_out = {prefix + k: v for k, v in sd.items()}
    if container == "official":
        names = labels or tuple(f"class {i}" for i in range(n))
        obj = {"model": sd_out, "num_classes": n, "idx_to_class": {i: names[i] for i in range(n)}}
    elif container == "state_dict":
        obj = {"epoch": 80, "state_dict": sd_out, "optimizer": {}}
    else:
        obj = sd_out
    torch.save(obj, path)
    return sd


def q2l_checkpoint(
    path: Path, seed: int = 0, prefix: str = "module.", grid: int | None = None, best_map: bool = True
) -> dict[str, torch.Tensor]:
    """Write a Query2Label checkpoint ``{'state_dict', 'epoch', 'arch', 'best_mAP' (numpy float64)}``.

    ``grid`` replaces the 14×14 positional-encoding grid (a smaller input for fast tests); the encoding
    is filled with the sine formula so the file looks like one the official code wrote.
    """
    from mlvis.models.q2l import sine_position_encoding

    shapes = dict(manifest("q2l"))
    if grid is not None:
        shapes["backbone.1.pe"] = [1, 2048, grid, grid]
    sd = fill(shapes, seed)
    g = shapes["backbone.1.pe"][-1]
    sd["backbone.1.pe"] = sine_position_encoding(2048, g, g)
    obj = {"state_dict": {prefix + k: v for k, v in sd.items()}, "epoch": 10, "arch": "Q2L-R101-448"}
    if best_map:
        obj["best_mAP"] = np.float64(84.9)
    torch.save(obj, path)
    return sd


SMALL_ARCH = "mobilenetv3_small_050"


def timm_card(
    folder: Path,
    name: str = "tiny-photos",
    labels: tuple[str, ...] = ("cat", "dog", "car", "tree"),
    size: int = 64,
    seed: int = 0,
    arch: str = SMALL_ARCH,
    **fields,
) -> Path:
    """A model card for a small timm architecture with random weights (safetensors) and a labels file."""
    import timm
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = timm.create_model(arch, num_classes=len(labels)).eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.labels.txt").write_text("\n".join(labels) + "\n")
    card = {"name": name, "family": f"timm:{arch}", "checkpoint": f"{name}.safetensors",
            "labels": f"{name}.labels.txt", "input_size": [size, size], "resize": "stretch",
            "interpolation": "bilinear", "threshold": 0.5, "source": "random weights (tests)",
            "licence": "none", **fields}  # fmt: skip
    path = folder / f"{name}.json"
    path.write_text(json.dumps(card))
    return path
