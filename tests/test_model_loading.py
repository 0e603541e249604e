"""Real-model families on random-weight stand-ins of the official files (tests/model_files.py).

Every checkpoint is generated in its official container and key layout (shared/models/*.json) and loaded
with ``strict=True``; forward shapes, label order, the |w| + 1e-5 fold, determinism, Query2Label's
positional encoding against MODELS.md §2.4's formula, and every refusal sentence.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from model_files import asl_checkpoint, manifest, q2l_checkpoint

import mlvis
from mlvis.models import CheckpointError, ModelTooLargeError, UnsafeCheckpointError, loading
from mlvis.models.labels import COCO80, NUSWIDE81, VOC20
from mlvis.models.q2l import IMAGENET_MEAN, PAPER_SETUP_NOTE, sine_position_encoding


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tmp_path_factory.mktemp("checkpoints")


# --------------------------------------------------------------------------------------------------- ASL


@pytest.fixture(scope="module")
def asl_m(files):
    labels = tuple(f"label {i:02d}" for i in range(80))
    path = files / "MS_COCO_TRresNet_M_224_81.8.pth"
    sd = asl_checkpoint(path, "asl-m", "official", labels=labels)
    return path, sd, labels


def test_asl_m_official_container_loads_strictly_with_its_label_order(asl_m):
    path, sd, labels = asl_m
    model = mlvis.create_model("asl-tresnet-m", checkpoint=path, device="cpu")
    assert model.spec.labels == labels  # idx_to_class, in integer-key order
    assert model.spec.input_size == (224, 224)  # from the file name
    assert (model.spec.resize, model.spec.interpolation) == ("stretch", "bilinear")
    assert model.spec.mean == (0.0, 0.0, 0.0) and model.spec.std == (1.0, 1.0, 1.0)
    assert model.spec.world == "photos" and model.spec.family == "asl-tresnet-m"
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    net = model.net.state_dict()
    # the ABN fold: every batch-norm weight is |w| + 1e-5 of the file's, everything else is copied
    w = sd["body.layer1.0.conv1.1.weight"]
    assert (w < 0).any()
    torch.testing.assert_close(net["body.layer1.0.conv1.bn.weight"], w.abs() + 1e-5, rtol=0, atol=0)
    torch.testing.assert_close(net["body.layer1.0.conv1.bn.running_var"], sd["body.layer1.0.conv1.1.running_var"])
    torch.testing.assert_close(net["head.fc.weight"], sd["head.fc.weight"])
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    y1, y2 = model(x), model(x)
    assert y1.shape == (2, 80) and torch.isfinite(y1).all()
    assert torch.equal(y1, y2)  # eval mode, deterministic on the CPU


def test_asl_label_order_sorts_integer_keys_not_insertion_order(files):
    path = files / "shuffled.pth"
    sd = manifest("asl-m")
    from model_files import fill

    obj = {"model": fill(sd), "num_classes": 80, "idx_to_class": {str(i): f"c{i}" for i in reversed(range(80))}}
    torch.save(obj, path)
    model = mlvis.create_model("asl-tresnet-m", checkpoint=path, device="cpu")
    assert model.spec.labels[:3] == ("c0", "c1", "c2") and model.spec.labels[-1] == "c79"


def test_asl_refusals_are_one_sentence_each(asl_m, files):
    path, _, _ = asl_m
    with pytest.raises(CheckpointError, match="is a TResNet-M checkpoint, not TResNet-L; load it as asl-tresnet-m"):
        mlvis.create_model("asl-tresnet-l", checkpoint=path, device="cpu")
    with pytest.raises(ValueError, match="3 labels were given but .* has 80 outputs"):
        mlvis.create_model("asl-tresnet-m", checkpoint=path, device="cpu", labels=["a", "b", "c"])
    with pytest.raises(CheckpointError, match="needs a checkpoint file"):
        mlvis.create_model("asl-tresnet-m", device="cpu")
    broken = files / "broken.pth"
    sd = dict(torch.load(path, weights_only=True)["model"])
    sd["body.layer2.0.conv2.1.bias"] = torch.zeros(7)
    del sd["body.layer1.0.se.fc1.weight"]
    torch.save({"model": sd}, broken)
    with pytest.raises(CheckpointError, match=r"does not fit TResNet-M: 1 shape\(s\) differ .*1 key\(s\) are missing"):
        mlvis.create_model("asl-tresnet-m", checkpoint=broken, device="cpu")
    junk = files / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth is not a PyTorch checkpoint"):
        mlvis.create_model("asl-tresnet-m", checkpoint=junk, device="cpu")


def test_asl_l_third_party_state_dict_with_module_prefix_gets_the_nus_wide_order(files):
    path = files / "tresnetl-asl-nuswide-epoch80.pth"
    asl_checkpoint(path, "asl-l-81", "state_dict", prefix="module.")
    model = mlvis.create_model("asl-tresnet-l", checkpoint=path, device="cpu")
    assert model.spec.labels == NUSWIDE81
    assert model.spec.input_size == (448, 448)  # the file name says nothing: the L default
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 81)


def test_asl_xl_bare_state_dict_gets_the_voc_order_and_the_size_of_its_name(files):
    path = files / "PASCAL_VOC_TResNet_xl_448_96.0.pth"
    asl_checkpoint(path, "asl-xl", "bare")
    model = mlvis.create_model("asl-tresnet-xl", checkpoint=path, device="cpu", threshold=0.7)
    assert model.spec.labels == VOC20 and model.spec.input_size == (448, 448) and model.threshold == 0.7
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 20)
    with pytest.raises(CheckpointError, match="is a TResNet-XL checkpoint, not TResNet-M"):
        mlvis.create_model("asl-tresnet-m", checkpoint=path, device="cpu")


# --------------------------------------------------------------------------------------------------- Q2L


@pytest.fixture(scope="module")
def q2l_full(files):
    path = files / "Q2L-R101-448" / "checkpoint.pkl"
    path.parent.mkdir()
    q2l_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def q2l_small(files):
    """The official keys with a 2×2 positional-encoding grid (a 64×64 input), for fast forwards."""
    path = files / "q2l-small.pkl"
    sd = q2l_checkpoint(path, grid=2, prefix="")
    return path, sd


def test_q2l_official_container_loads_strictly_and_infers_its_configuration(q2l_full):
    model = mlvis.create_model("q2l-r101-448", checkpoint=q2l_full, device="cpu")
    spec = model.spec
    assert spec.labels == COCO80 and spec.input_size == (448, 448)
    assert spec.mean == IMAGENET_MEAN and spec.notes == ()
    cfg = spec.card["config"]
    assert (cfg["hidden_dim"], cfg["dim_feedforward"], cfg["enc_layers"], cfg["dec_layers"]) == (2048, 8192, 1, 2)
    assert cfg["nheads"] == 4 and cfg["backbone"] == "resnet101" and not cfg["keep_input_proj"]
    assert set(model.net.state_dict()) == set(manifest("q2l"))  # exactly the official keys, nothing else
    assert 193e6 < spec.card["parameters"] < 194.5e6
    assert not model.training
    y = model(torch.rand(1, 3, 448, 448))
    assert y.shape == (1, 80) and torch.isfinite(y).all()
    with pytest.raises(ValueError, match="takes exactly 448×448 images"):
        model(torch.rand(1, 3, 480, 480))


def test_q2l_refuses_another_input_size_before_building(q2l_full):
    with pytest.raises(CheckpointError, match=r"takes exactly 448×448 images .* not 480×480"):
        mlvis.create_model("q2l-r101-448", checkpoint=q2l_full, device="cpu", input_size=(480, 480))


def test_q2l_reads_config_new_json_and_the_paper_setup_is_recorded(q2l_small, files):
    path, sd = q2l_small
    config = files / "config_heads8.json"
    config.write_text('{"nheads": 8, "orid_norm": "False", "img_size": 64}')
    model = mlvis.create_model("q2l-r101-448", checkpoint=path, config=config, device="cpu")
    heads = model.net.transformer.encoder.layers[0].self_attn.num_heads
    assert heads == 8 and model.spec.mean == IMAGENET_MEAN
    paper = mlvis.create_model("q2l-r101-448", checkpoint=path, device="cpu", normalize=False)
    assert paper.spec.mean == (0.0, 0.0, 0.0) and paper.spec.std == (1.0, 1.0, 1.0)
    assert paper.spec.notes == (PAPER_SETUP_NOTE,)
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    y1, y2 = paper(x), paper(x)
    assert y1.shape == (3, 80) and torch.equal(y1, y2)  # eval: no dropout
    # normalisation lives inside the wrapper: the same net on (x - mean) / std
    normal = mlvis.create_model("q2l-r101-448", checkpoint=path, device="cpu")
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    torch.testing.assert_close(normal(x), paper((x - mean) / std), rtol=1e-5, atol=1e-5)


def test_q2l_forward_follows_the_description(q2l_small):
    """Logits = group-wise linear over the final decoder norm; the head reads its own query only."""
    path, sd = q2l_small
    model = mlvis.create_model("q2l-r101-448", checkpoint=path, device="cpu", normalize=False)
    net = model.net
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    feats = net.backbone[0](x)
    assert feats.shape == (2, 2048, 2, 2)
    src = feats.flatten(2).permute(2, 0, 1)
    pos = net.backbone[1].pe.flatten(2).permute(2, 0, 1).expand(-1, 2, -1)
    hs = net.transformer(src, pos, net.query_embed.weight.unsqueeze(1).expand(-1, 2, -1))
    expected = torch.einsum("kd,bkd->bk", sd["fc.W"][0], hs.transpose(0, 1)) + sd["fc.b"]
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_q2l_positional_encoding_matches_the_formula():
    d, h, w = 2048, 14, 14
    pe = sine_position_encoding(d, h, w).double()
    f = d // 2
    r = torch.arange(h, dtype=torch.float64)
    c = torch.arange(w, dtype=torch.float64)
    yhat = (r + 1) / (h + 1e-6) * 2 * math.pi
    xhat = (c + 1) / (w + 1e-6) * 2 * math.pi
    i = torch.arange(f, dtype=torch.float64)
    lam = 10000 ** (2 * torch.floor(i / 2) / f)
    even = (i % 2 == 0).view(-1, 1)
    ay = yhat.view(1, -1) / lam.view(-1, 1)  # (F, h)
    ax = xhat.view(1, -1) / lam.view(-1, 1)  # (F, w)
    fy = torch.where(even, ay.sin(), ay.cos())
    fx = torch.where(even, ax.sin(), ax.cos())
    want = torch.cat([fy[:, :, None].expand(f, h, w), fx[:, None, :].expand(f, h, w)])[None]
    assert pe.shape == (1, d, h, w)
    torch.testing.assert_close(pe, want, rtol=0, atol=2e-6)
    # channel 0 varies with the row only, channel F with the column only
    assert torch.equal(pe[0, 0, :, 0], pe[0, 0, :, 5]) and torch.equal(pe[0, f, 0, :], pe[0, f, 7, :])


# --------------------------------------------------------------------------------------------------- safety


def test_a_checkpoint_that_would_run_code_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "pwned.txt"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('owned')",))

    path = tmp_path / "MS_COCO_TRresNet_M_224_81.8.pth"
    torch.save({"model": {"head.fc.weight": torch.zeros(80, 2048)}, "extra": Payload()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"was refused: loading it would run code \(exec\)"):
        mlvis.create_model("asl-tresnet-m", checkpoint=path, device="cpu")
    with pytest.raises(UnsafeCheckpointError):
        mlvis.create_model("timm:resnet10t", checkpoint=path, device="cpu")
    assert not marker.exists()


def test_q2l_best_map_numpy_scalar_is_the_only_extra_allowed(tmp_path):
    path = tmp_path / "c.pkl"
    torch.save({"state_dict": {"a": torch.ones(2)}, "best_mAP": np.float64(84.9)}, path)
    obj = loading.read_checkpoint(path)
    assert float(obj["best_mAP"]) == 84.9
    torch.save({"state_dict": {"a": torch.ones(2)}, "when": np.datetime64("2021-01-01")}, path)
    with pytest.raises(UnsafeCheckpointError):
        loading.read_checkpoint(path)


def test_a_model_too_large_for_the_device_is_refused_before_it_is_built(asl_m, monkeypatch):
    path, _, _ = asl_m
    monkeypatch.setattr(loading, "available_memory", lambda device: 50 * 2**20)
    import timm

    built = []
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: built.append(a))
    with pytest.raises(ModelTooLargeError, match=r"TResNet-M .* needs about 0\.3 GB .* this machine has 0\.0 GB free"):
        mlvis.create_model("asl-tresnet-m", checkpoint=path, device="cpu")
    assert built == []


def test_path_escapes_are_refused(tmp_path):
    (tmp_path / "inside.pth").write_bytes(b"x")
    assert loading.resolve_inside(tmp_path, "inside.pth") == tmp_path / "inside.pth"
    for bad in ("../outside.pth", "/etc/passwd", "sub/../../x.pth"):
        with pytest.raises(CheckpointError, match="leaves the models folder"):
            loading.resolve_inside(tmp_path, bad)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.pth"
    outside.write_bytes(b"x")
    (tmp_path / "link.pth").symlink_to(outside)
    with pytest.raises(CheckpointError, match="symbolic link"):
        loading.resolve_inside(tmp_path, "link.pth")


# --------------------------------------------------------------------------------------------------- generic


def test_timm_architecture_from_safetensors_matches_the_network_it_came_from(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model("resnet10t", num_classes=5).eval()
    path = tmp_path / "r10.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    labels = ["cat", "dog", "car", "tree", "sky"]
    model = mlvis.create_model("timm:resnet10t", checkpoint=path, device="cpu", labels=labels, input_size=(64, 64))
    assert model.spec.labels == tuple(labels) and model.spec.input_size == (64, 64)
    assert model.spec.mean == tuple(float(v) for v in net.pretrained_cfg["mean"])
    x = torch.rand(2, 3, 64, 64)
    mean = torch.tensor(model.spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net((x - mean) / std))
    with pytest.raises(ValueError, match="2 labels were given but r10.safetensors has 5 outputs"):
        mlvis.create_model("timm:resnet10t", checkpoint=path, device="cpu", labels=["a", "b"])
    with pytest.raises(ValueError, match="timm has no architecture 'resnet9000'"):
        mlvis.create_model("timm:resnet9000", checkpoint=path, device="cpu")


def test_torchvision_architecture_from_a_weights_only_pth(tmp_path):
    import torchvision

    net = torchvision.models.resnet18(num_classes=3).eval()
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    model = mlvis.create_model("torchvision:resnet18", checkpoint=path, device="cpu")
    assert model.spec.labels == ("label 0", "label 1", "label 2") and model.spec.input_size == (224, 224)
    x = torch.rand(1, 3, 32, 32)
    mean = torch.tensor(model.spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net((x - mean) / std))


def test_torchscript_round_trip(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 6)).eval()  # fmt: skip
    path = tmp_path / "net.pt"
    torch.jit.trace(net, torch.rand(1, 3, 16, 16)).save(str(path))
    labels = [f"l{i}" for i in range(6)]
    model = mlvis.create_model("torchscript", checkpoint=path, device="cpu", input_size=(16, 16), labels=labels)
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x))
    assert model.spec.labels[0] == "l0" and model.spec.family == "torchscript"
    with pytest.raises(ValueError, match="needs input_size"):
        mlvis.create_model("torchscript", checkpoint=path, device="cpu")
    with pytest.raises(CheckpointError, match="is a TorchScript archive, not a state dict"):
        mlvis.create_model("timm:resnet10t", checkpoint=path, device="cpu")


def test_the_optional_download_fails_with_a_sentence_offline(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    from mlvis.models import official

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(CheckpointError, match=r"could not be downloaded from https://miil-public-eu.*\(no network\)"):
        official.download("asl-coco-l-448", tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    with pytest.raises(CheckpointError, match="download checkpoint.pkl and config_new.json by hand"):
        official.download("q2l-coco-r101-448", tmp_path)


def test_deterministic_switch_sets_the_flags():
    try:
        mlvis.models.set_deterministic(True)
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled() and os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    finally:
        mlvis.models.set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()
