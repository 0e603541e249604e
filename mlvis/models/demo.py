"""The embedded demo models: small networks trained on the project's scene world.

* ``demo-asl``: a CNN trained with the asymmetric loss (the paper's ASL / TResNet role).
* ``demo-q2l``: a CNN backbone + transformer decoder with one learned query per label and a
  group-wise linear head (the Query2Label role).

Their weights ship in ``mlvis/models/weights/`` as safetensors beside a JSON model card and are
reproduced by ``mlvis train-demo --model NAME`` (see ``mlvis.models.training``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from mlvis.models.registry import register_model
from mlvis.models.spec import ModelSpec
from mlvis.models.wrapper import MultiLabelModel

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with an identity shortcut (same width, stride 1)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = conv_bn(c, c)
        self.conv2 = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv2(self.conv1(x)))


class Trunk(nn.Module):
    """Strided stem and stages: 64x64 -> 32x32 -> 16x16 -> 8x8 (-> 4x4 when ``widths`` has 4)."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 160)):
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, widths[0], stride=2), ResidualBlock(widths[0])]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [conv_bn(cin, cout, stride=2), ResidualBlock(cout)]
        self.body = nn.Sequential(*layers)
        self.out_channels = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DemoCNN(nn.Module):
    """ASL-role classifier: trunk, global average pooling, one linear layer."""

    def __init__(self, num_labels: int, widths: tuple[int, ...] = (32, 64, 128, 160)):
        super().__init__()
        self.trunk = Trunk(widths)
        self.head = nn.Linear(self.trunk.out_channels, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.trunk(x).mean(dim=(2, 3))
        return self.head(f)


class GroupWiseLinear(nn.Module):
    """Query2Label's head: label ``c`` gets its own weight vector applied to its query's output."""

    def __init__(self, num_labels: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_labels, dim))
        self.bias = nn.Parameter(torch.zeros(num_labels))
        nn.init.uniform_(self.weight, -dim**-0.5, dim**-0.5)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # h: (N, C, D)
        return (h * self.weight).sum(-1) + self.bias


class DemoQ2L(nn.Module):
    """Query2Label-role classifier: CNN features as keys/values, one learned query per label."""

    def __init__(
        self,
        num_labels: int,
        widths: tuple[int, ...] = (32, 64, 128),
        dim: int = 96,
        heads: int = 4,
        layers: int = 2,
        ffn: int = 192,
        dropout: float = 0.1,
        tokens: int = 64,
    ):
        super().__init__()
        self.trunk = Trunk(widths)
        self.proj = nn.Conv2d(self.trunk.out_channels, dim, 1)
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.queries = nn.Parameter(torch.randn(num_labels, dim) * 0.02)
        layer = nn.TransformerDecoderLayer(dim, heads, ffn, dropout=dropout, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.head = GroupWiseLinear(num_labels, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.proj(self.trunk(x))  # (N, D, h, w)
        mem = f.flatten(2).transpose(1, 2) + self.pos  # (N, h*w, D)
        q = self.queries.unsqueeze(0).expand(x.shape[0], -1, -1)
        return self.head(self.decoder(q, mem))


ARCHITECTURES = {"demo-asl": DemoCNN, "demo-q2l": DemoQ2L}


def build_network(name: str, num_labels: int, **arch) -> nn.Module:
    return ARCHITECTURES[name](num_labels, **arch)


def card_path(name: str, weights_dir: Path | None = None) -> Path:
    return (weights_dir or WEIGHTS_DIR) / f"{name}.json"


def weights_path(name: str, weights_dir: Path | None = None) -> Path:
    return (weights_dir or WEIGHTS_DIR) / f"{name}.safetensors"


def load_demo(name: str, weights_dir: Path | None = None) -> MultiLabelModel:
    """Build a demo network from its model card and load its safetensors weights."""
    from safetensors.torch import load_file

    cpath, wpath = card_path(name, weights_dir), weights_path(name, weights_dir)
    if not cpath.exists() or not wpath.exists():
        raise FileNotFoundError(
            f"The weights of {name!r} are missing ({wpath.name}). Reproduce them with "
            f"`mlvis train-demo --model {name}`."
        )
    card = json.loads(cpath.read_text())
    net = build_network(name, len(card["labels"]), **card.get("architecture", {}))
    net.load_state_dict(load_file(str(wpath)), strict=True)
    spec = ModelSpec(
        name=name,
        labels=tuple(card["labels"]),
        input_size=tuple(card["input_size"]),
        mean=tuple(card["mean"]),
        std=tuple(card["std"]),
        threshold=float(card.get("threshold", 0.5)),
        source="embedded" if weights_dir is None else str(wpath),
        description=card.get("description", ""),
        family=name,
        world="demo",
        card=card,
    )
    model = MultiLabelModel(net, spec)
    return model.to(memory_format=torch.channels_last)


@register_model
def demo_asl(weights_dir: Path | None = None) -> MultiLabelModel:
    """Demo CNN trained with the asymmetric loss on the scene world (ASL role)."""
    return load_demo("demo-asl", weights_dir)


@register_model
def demo_q2l(weights_dir: Path | None = None) -> MultiLabelModel:
    """Demo CNN + transformer decoder with label queries on the scene world (Query2Label role)."""
    return load_demo("demo-q2l", weights_dir)
