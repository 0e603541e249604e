"""Query2Label with a ResNet-101 backbone at 448 (SlongLiu/query2labels), our own implementation of
MODELS.md §2.4.

torchvision's ResNet-101 cut after ``layer4`` with every batch norm frozen (``FrozenBatchNorm2d``: four
buffers, eps 1e-5), the DETR sine positional encoding stored as the persistent buffer ``backbone.1.pe``,
a post-norm transformer built from torch's ``nn.MultiheadAttention`` (1 encoder layer; 2 decoder layers
without self-attention, a final decoder norm), one learned query per label and the group-wise linear
head. Module names follow the official state dict, so the checkpoint loads with ``strict=True``. The
wrapper applies ImageNet mean/std (``orid_norm`` False, the official test transform); the paper's own
attack code fed raw [0, 1] inputs, which ``normalize=False`` reproduces and says so on every page.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlvis.errors import InvalidInput, ModelLoadError
from mlvis.models.labels import resolve_labels
from mlvis.models.loading import (
    CheckpointError,
    check_fits_memory,
    read_checkpoint,
    read_text,
    state_dict_from,
    tensor_bytes,
)
from mlvis.models.spec import ModelSpec
from mlvis.models.wrapper import MultiLabelModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ResNet depth -> blocks per stage (torchvision names)
RESNETS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
PAPER_SETUP_NOTE = (
    "Normalisation is off: Query2Label sees raw [0, 1] pixels, as in the paper's own attack code, not the "
    "ImageNet mean/std its authors evaluate it with."
)


def sine_position_encoding(dim: int, h: int, w: int, temperature: float = 10000.0) -> torch.Tensor:
    """DETR's normalised sine encoding ``(1, dim, h, w)`` (MODELS.md §2.4, item 2), in float32.

    With ``F = dim / 2``: ``ŷ = (r + 1) / (h + 1e-6) · 2π``, ``λ_i = T^(2·floor(i/2)/F)``; channel
    ``i < F`` is ``sin(ŷ/λ_i)`` for even ``i`` and ``cos(ŷ/λ_i)`` for odd ``i``; channel ``F + i`` the
    same with ``x̂`` of column ``c``.
    """
    feats = dim // 2
    scale = 2 * math.pi
    ones = torch.ones(1, h, w)
    y = ones.cumsum(1, dtype=torch.float32)
    x = ones.cumsum(2, dtype=torch.float32)
    eps = 1e-6
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    i = torch.arange(feats, dtype=torch.float32)
    lam = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / feats)
    px, py = x[:, :, :, None] / lam, y[:, :, :, None] / lam
    px = torch.stack((px[:, :, :, 0::2].sin(), px[:, :, :, 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[:, :, :, 0::2].sin(), py[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2).contiguous()


class Body(nn.Module):
    """torchvision ResNet cut after layer4, frozen batch norm; state-dict names ``body.<resnet name>``."""

    def __init__(self, arch: str = "resnet101"):
        super().__init__()
        import torchvision
        from torchvision.models._utils import IntermediateLayerGetter
        from torchvision.ops.misc import FrozenBatchNorm2d

        resnet = getattr(torchvision.models, arch)(weights=None, norm_layer=FrozenBatchNorm2d)
        self.body = IntermediateLayerGetter(resnet, return_layers={"layer4": "0"})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)["0"]


class PositionBuffer(nn.Module):
    """Holds the positional encoding ``pe`` as a persistent buffer (``backbone.1.pe``)."""

    def __init__(self, dim: int, grid: int):
        super().__init__()
        self.register_buffer("pe", sine_position_encoding(dim, grid, grid))


class EncoderLayer(nn.Module):
    """Post-norm encoder layer: self-attention with positions on q and k, then the FFN."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout, self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        q = k = src + pos
        src = self.norm1(src + self.dropout1(self.self_attn(q, k, value=src, need_weights=False)[0]))
        return self.norm2(src + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(src))))))


class DecoderLayer(nn.Module):
    """Post-norm decoder layer; self-attention only when the checkpoint keeps it (R101 does not)."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float, self_attn: bool = False):
        super().__init__()
        if self_attn:
            self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout)
            self.norm1, self.dropout1 = nn.LayerNorm(d), nn.Dropout(dropout)
        self.has_self_attn = self_attn
        self.multihead_attn = nn.MultiheadAttention(d, heads, dropout=dropout)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout, self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, t: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor, query_pos: torch.Tensor):
        if self.has_self_attn:
            q = k = t + query_pos
            t = self.norm1(t + self.dropout1(self.self_attn(q, k, value=t, need_weights=False)[0]))
        a = self.multihead_attn(t + query_pos, memory + pos, value=memory, need_weights=False)[0]
        t = self.norm2(t + self.dropout2(a))
        return self.norm3(t + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(t))))))


class Stack(nn.Module):
    """The checkpoint's ``encoder`` / ``decoder``: its ``layers``, and the decoder's final ``norm``."""

    def __init__(self, layers: Iterable[nn.Module], norm: nn.Module | None = None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = norm if norm is not None else nn.Identity()  # Identity holds no parameters: same state dict


class Transformer(nn.Module):
    def __init__(self, d: int, heads: int, ff: int, enc: int, dec: int, dropout: float, dec_self_attn=()):
        super().__init__()
        self.encoder = Stack(EncoderLayer(d, heads, ff, dropout) for _ in range(enc))
        self.decoder = Stack(
            (DecoderLayer(d, heads, ff, dropout, self_attn=i in dec_self_attn) for i in range(dec)), nn.LayerNorm(d)
        )

    def forward(self, src: torch.Tensor, pos: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        memory = src
        for layer in self.encoder.layers:
            memory = layer(memory, pos)
        t = torch.zeros_like(query)
        for layer in self.decoder.layers:
            t = layer(t, memory, pos, query)
        return self.decoder.norm(t)


class GroupWiseLinear(nn.Module):
    """``logit[b, k] = Σ_j W[0, k, j] · h[b, k, j] + b[0, k]``."""

    def __init__(self, classes: int, dim: int):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(1, classes, dim))
        self.b = nn.Parameter(torch.zeros(1, classes))
        bound = 1 / math.sqrt(dim)
        nn.init.uniform_(self.W, -bound, bound)
        nn.init.uniform_(self.b, -bound, bound)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return (self.W * h).sum(-1) + self.b


class Query2Label(nn.Module):
    """Images ``(B, 3, S, S)`` (already normalised) -> logits ``(B, K)``."""

    def __init__(self, config: dict):
        super().__init__()
        d, k, grid = config["hidden_dim"], config["num_class"], config["img_size"] // 32
        self.backbone = nn.ModuleList([Body(config["backbone"]), PositionBuffer(d, grid)])
        self.input_proj = nn.Conv2d(2048, d, 1) if config["keep_input_proj"] else nn.Identity()
        self.transformer = Transformer(
            d, config["nheads"], config["dim_feedforward"], config["enc_layers"], config["dec_layers"],
            config["dropout"], dec_self_attn=tuple(config["dec_self_attn"]),
        )  # fmt: skip
        self.query_embed = nn.Embedding(k, d)
        self.fc = GroupWiseLinear(k, d)
        self.img_size = int(config["img_size"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            h, w = x.shape[-2:]
            raise InvalidInput(
                f"Query2Label takes exactly {self.img_size}×{self.img_size} images (its positional encoding fixes the "
                f"grid), not {w}×{h}."
            )
        src = self.input_proj(self.backbone[0](x))  # (B, d, h, w)
        pe = self.backbone[1].get_buffer("pe")  # (1, d, h, w)
        b = src.shape[0]
        src = src.flatten(2).permute(2, 0, 1)  # (L, B, d), row-major
        pos = pe.flatten(2).permute(2, 0, 1).expand(-1, b, -1)
        query = self.query_embed.weight.unsqueeze(1).expand(-1, b, -1)  # (K, B, d)
        hs = self.transformer(src, pos, query).transpose(0, 1)  # (B, K, d)
        return self.fc(hs)


DEFAULTS: dict[str, Any] = {
    "backbone": "resnet101", "img_size": 448, "num_class": 80, "hidden_dim": 2048, "dim_feedforward": 8192,
    "enc_layers": 1, "dec_layers": 2, "nheads": 4, "dropout": 0.1, "pre_norm": False,
    "position_embedding": "sine", "keep_input_proj": False, "orid_norm": False,
}  # fmt: skip


def _flag(v) -> bool:
    return v in (True, "True", "true", 1, "1")


def infer_config(sd: dict[str, torch.Tensor], name: str, given: dict | None = None) -> dict:
    """The network's configuration: ``given`` (a ``config_new.json``) where it speaks, else what the shapes
    say (MODELS.md §2.3), else the R101-448 defaults; then checked against the shapes."""
    cfg: dict[str, Any] = dict(DEFAULTS)
    if "query_embed.weight" not in sd or "backbone.1.pe" not in sd or "fc.W" not in sd:
        raise CheckpointError(
            f"{name} is not a Query2Label checkpoint: it lacks query_embed.weight, backbone.1.pe or fc.W."
        )
    k, d = sd["query_embed.weight"].shape
    cfg.update(num_class=int(k), hidden_dim=int(d))
    cfg["img_size"] = 32 * int(sd["backbone.1.pe"].shape[-1])
    layer = "transformer.encoder.layers.0.linear1.weight"
    if layer in sd:
        cfg["dim_feedforward"] = int(sd[layer].shape[0])
    enc = {m.group(1) for key in sd if (m := re.match(r"transformer\.encoder\.layers\.(\d+)\.", key))}
    dec = {m.group(1) for key in sd if (m := re.match(r"transformer\.decoder\.layers\.(\d+)\.", key))}
    cfg.update(enc_layers=len(enc), dec_layers=len(dec))
    cfg["keep_input_proj"] = "input_proj.weight" in sd
    cfg["pre_norm"] = "transformer.encoder.norm.weight" in sd
    blocks = {m.group(1) for key in sd if (m := re.match(r"backbone\.0\.body\.layer3\.(\d+)\.", key))}
    cfg["backbone"] = {6: "resnet50", 23: "resnet101"}.get(len(blocks), f"a ResNet with {len(blocks)} layer-3 blocks")
    if given:
        for key in ("nheads", "dropout", "orid_norm", "backbone", "img_size", "hidden_dim", "dim_feedforward",
                    "enc_layers", "dec_layers", "pre_norm", "keep_input_proj"):  # fmt: skip
            if key in given:
                cfg[key] = given[key]
        for key in ("hidden_dim", "dim_feedforward", "enc_layers", "dec_layers", "img_size", "nheads"):
            cfg[key] = int(cfg[key])
        cfg["pre_norm"], cfg["keep_input_proj"] = _flag(cfg["pre_norm"]), _flag(cfg["keep_input_proj"])
    cfg["orid_norm"] = _flag(cfg["orid_norm"])
    cfg["dec_self_attn"] = [
        i for i in range(cfg["dec_layers"]) if f"transformer.decoder.layers.{i}.self_attn.in_proj_weight" in sd
    ]
    _check_config(cfg, sd, name)
    return cfg


def _check_config(cfg: dict, sd: dict, name: str) -> None:
    if cfg["backbone"] not in RESNETS:
        raise CheckpointError(f"{name} has the backbone {cfg['backbone']}; the q2l family loads ResNet-50/101 only.")
    if cfg["pre_norm"]:
        raise CheckpointError(f"{name} uses a pre-norm transformer, which the q2l family does not implement.")
    if not cfg["keep_input_proj"] and cfg["hidden_dim"] != 2048:
        raise CheckpointError(f"{name}: without input_proj the hidden size must be 2048, not {cfg['hidden_dim']}.")
    if cfg["hidden_dim"] % cfg["nheads"]:
        raise CheckpointError(f"{name}: the hidden size {cfg['hidden_dim']} does not split into {cfg['nheads']} heads.")
    pe = sd["backbone.1.pe"].shape
    if cfg["img_size"] != 32 * pe[-1] or pe[-1] != pe[-2]:
        raise CheckpointError(
            f"{name}: its positional encoding {tuple(pe)} fixes the input at {32 * pe[-1]}×{32 * pe[-2]}, but the "
            f"configuration says {cfg['img_size']}."
        )


def read_config(path: Path | None) -> dict | None:
    if path is None:
        return None
    try:
        data = json.loads(read_text(path))  # in a card's folder: without following links
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"The Query2Label configuration {Path(path).name} cannot be read ({exc}).") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"The Query2Label configuration {Path(path).name} is not a JSON object.")
    return data


def build_q2l(
    checkpoint: str | Path | None = None,
    *,
    name: str | None = None,
    config: str | Path | None = None,
    normalize: bool | None = None,
    labels=None,
    input_size=None,
    threshold: float = 0.5,
    device: torch.device | None = None,
    progress=None,
    **card,
) -> MultiLabelModel:
    """Query2Label-R101 with the weights of ``checkpoint`` (``checkpoint.pkl``).

    Args:
        checkpoint: the official ``{'state_dict': ...}`` file (``module.`` stripped), or a bare state dict.
        config: its ``config_new.json``; default the one beside the checkpoint when present, else the
            configuration is inferred from the shapes (``nheads`` 4 and ``orid_norm`` False for R101).
        normalize: ImageNet mean/std inside the wrapper (default: as the configuration's ``orid_norm``
            says, i.e. on for R101). ``False`` is the paper's own setup; the spec's notes then say so.
        labels: label names, a table name or a labels file (default the MS-COCO order).
        input_size: must equal the size the positional encoding fixes (448); anything else is refused.
        threshold: decision threshold on sigmoid confidences.
        device, progress, **card: as for :func:`mlvis.models.asl.build_asl`.
    """
    family = "q2l-r101-448"
    if checkpoint is None:
        raise CheckpointError(f"{family} needs a checkpoint file: create_model({family!r}, checkpoint=PATH).")
    path = Path(checkpoint)
    report = progress or (lambda *_: None)
    report(0.05, f"Reading {path.name} ...")
    sd = state_dict_from(read_checkpoint(path), path.name, keys=("state_dict", "model"))
    if config is None and (path.parent / "config_new.json").is_file():
        config = path.parent / "config_new.json"
    cfg = infer_config(sd, path.name, read_config(Path(config) if config is not None else None))
    side = cfg["img_size"]
    if input_size is not None:
        h, w = (input_size, input_size) if isinstance(input_size, int) else (int(v) for v in input_size)
        if (h, w) != (side, side):
            raise CheckpointError(
                f"{path.name} takes exactly {side}×{side} images (its positional encoding fixes the grid), not {w}×{h}."
            )
    label_names, label_note = resolve_labels(labels, cfg["num_class"], what=path.name)
    check_fits_memory(tensor_bytes(sd), device or torch.device("cpu"), f"Query2Label ({path.name})")
    report(0.3, "Building Query2Label ...")
    with torch.device("meta"):  # no random init of 194 M parameters: every tensor comes from the file
        net = Query2Label(cfg)
    report(0.6, "Loading the weights (strict) ...")
    from mlvis.models.asl import check_shapes

    check_shapes(sd, net.state_dict(), path.name, f"Query2Label-{cfg['backbone']} at {side}")
    net.load_state_dict(sd, strict=True, assign=True)
    normalized = (not cfg["orid_norm"]) if normalize is None else bool(normalize)
    notes = tuple(card.pop("notes", ())) + (() if normalized else (PAPER_SETUP_NOTE,))
    spec = ModelSpec(
        name=name or family,
        labels=label_names,
        input_size=(side, side),
        mean=IMAGENET_MEAN if normalized else (0.0, 0.0, 0.0),
        std=IMAGENET_STD if normalized else (1.0, 1.0, 1.0),
        threshold=float(threshold),
        source=card.pop("source", str(path)),
        description=card.pop(
            "description", f"Query2Label {cfg['backbone']}, {cfg['num_class']} classes, {side}×{side} ({label_note})."
        ),
        resize=card.pop("resize", "stretch"),
        interpolation=card.pop("interpolation", "bilinear"),
        family=family,
        world="photos",
        notes=notes,
        card={
            "parameters": sum(p.numel() for p in net.parameters()),
            "labels_from": label_note,
            "config": {k: v for k, v in cfg.items() if k != "dec_self_attn"},
            "normalized": normalized,
            **card.pop("card", {}),
        },
    )
    if card:
        raise ModelLoadError(f"{family} does not take the option(s) {', '.join(sorted(card))}.")
    report(0.9, "Ready.")
    return MultiLabelModel(net, spec)
