"""The command line, run in-process on small settings into temporary folders."""

from __future__ import annotations

import io
import json

import torch

import mlvis
from mlvis.cli import ProgressBar, main


def test_models_lists_the_registry(capsys):
    assert main(["models", "demo-*"]) == 0
    out = capsys.readouterr().out
    assert "demo-asl" in out and "demo-q2l" in out


def test_train_demo_writes_loadable_weights_and_card(tmp_path, capsys):
    args = ["train-demo", "--model", "demo-q2l", "--out", str(tmp_path), "--train-images", "256", "--epochs", "1"]
    assert main(args + ["--eval-images", "64"]) == 0
    card = json.loads((tmp_path / "demo-q2l.json").read_text())
    assert card["training"]["train_images"] == 256 and card["test_images"] == 64
    assert len(card["labels"]) == 24 and 0 <= card["test_mAP"] <= 1
    model = mlvis.create_model("demo-q2l", device="cpu", weights_dir=tmp_path)
    assert model.spec.source.endswith("demo-q2l.safetensors")
    shipped = mlvis.create_model("demo-q2l", device="cpu")
    x, _ = mlvis.data.demo_batch(2)
    assert not torch.allclose(model(x), shipped(x))  # really the freshly trained weights
    assert "test mAP" in capsys.readouterr().out


def test_bad_arguments_are_one_clear_sentence(tmp_path, capsys):
    assert main(["train-demo", "--model", "demo-asl", "--out", str(tmp_path), "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert "epochs must be a positive integer" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_profile_correlations_and_evaluate_commands(tmp_path, capsys):
    base = ["--model", "demo-asl", "--images", "3", "--device", "cpu"]
    assert main(["profile", *base, "--max-eps", "0.03", "--interval", "5", "--out", str(tmp_path / "p.json")]) == 0
    prof = mlvis.analysis.FlipProfile.load(tmp_path / "p.json")
    assert prof.model == "demo-asl" and prof.eps[1] == 5 / 2560 and "eps_max" in capsys.readouterr().out
    assert main(["correlations", *base, "--images", "2", "--eps", "0.002", "--out", str(tmp_path)]) == 0
    up = mlvis.analysis.CorrelationMatrix.load(tmp_path / "demo-asl.correlations-up.json")
    down = mlvis.analysis.CorrelationMatrix.load(tmp_path / "demo-asl.correlations-down.json")
    assert up.matrix.shape == (24, 24) and up.images == 2 and down.direction == "down"
    assert (up.matrix.diagonal() >= 0).all() and (down.matrix.diagonal() <= 0).all()
    out = tmp_path / "eval"
    args = ["evaluate", *base, "--methods", "bce,slam,class:0.5", "--fractions", "0.05,0.1", "--out", str(out)]
    assert main(args) == 0
    table = json.loads((out / "table.json").read_text())
    assert table["methods"] == ["BCE", "SLAM(q=0.5)", "CLASS(γ=0.5)"] and len(table["eps"]) == 2
    assert (out / "table.md").read_text().startswith("| Method |") and (out / "table.csv").exists()
    assert main(["evaluate", *base, "--methods", "bce,class:x"]) == 2
    assert "is not a number" in capsys.readouterr().err


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_bar_redraws_on_a_terminal_and_writes_ten_lines_to_a_log():
    term, log = _Stream(True), _Stream(False)
    for stream in (term, log):
        bar = ProgressBar("job", stream)
        for done in range(0, 1001):
            bar(done, 1000)
    assert term.getvalue().count("\r") == 101 and term.getvalue().count("\n") == 1
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [line.split("%")[0].split()[-1] for line in lines] == [str(p) for p in range(0, 101, 10)]
    assert lines[-1] == f"job [{'#' * 25}] 100% (1000/1000)"


# --------------------------------------------------------------------- mlvis figure (the paper's figures, issue 12)


def test_figure_class_tree_exports_the_trees_of_the_attacked_subset(tmp_path, capsys):
    import numpy as np
    import plotly.io

    from mlvis.analysis.class_tree import class_tree
    from mlvis.recipe import ImageSource, demo_images

    model = mlvis.create_model("demo-asl", device="cpu")
    prof = mlvis.profile(model)
    pair = (mlvis.correlations(model, direction="up"), mlvis.correlations(model, direction="down"))
    image = demo_images(ImageSource("demo", "test", 0, 3, 1), (64, 64))[0]
    want = class_tree(model, image, float(prof.grid()[1]), correlations=pair, profile=prof, gamma=0.2)
    base = ["figure", "class-tree", "--model", "demo-asl", "--device", "cpu", "--scene", "3", "--gamma", "0.2"]
    assert main([*base, "--out", str(tmp_path / "tree.json")]) == 0
    assert json.loads((tmp_path / "tree.json").read_text()) == json.loads(json.dumps(want.to_dict()))
    assert main([*base, "--iteration", "2", "--out", str(tmp_path / "tree.plotly.json")]) == 0
    fig = plotly.io.from_json((tmp_path / "tree.plotly.json").read_text())
    nodes = next(t for t in fig.data if t.meta["kind"] == "nodes")
    assert len(nodes.x) == len(want.nodes(1)) and want.labels[want.iterations[1]["chosen"]] in fig.layout.title.text
    assert main([*base, "--out", str(tmp_path / "tree.html")]) == 0
    html = (tmp_path / "tree.html").read_text()
    assert html.startswith("<!doctype html>") and "Plotly.newPlot" in html
    assert "<script src=" not in html.replace(" ", "")  # plotly.js inlined: the file works offline
    assert np.isfinite([n["score"] for n in want.to_dict()["iterations"][0]["nodes"][1:]]).all()


def test_figure_loss_curves_export_the_curves_data(tmp_path):
    import numpy as np
    import plotly.io
    from apptools import plotly_array

    from mlvis.analysis.loss_curves import bce_curves, slam_curves

    out = tmp_path / "slam.json"
    assert main(["figure", "slam-loss", "--shares", "0.25,0.75", "--target", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == json.loads(json.dumps(slam_curves((0.25, 0.75), target=1).to_dict()))
    # with a model and a budget, the model's own p·q (equation 7, q = 0.5) joins the curves
    model = mlvis.create_model("demo-asl", device="cpu")
    share = round(float(mlvis.profile(model).flip_ratio(np.array([0.02]))[0]) * 0.5, 4)
    args = ["figure", "slam-loss", "--model", "demo-asl", "--device", "cpu", "--eps", "0.02", "--shares", "0.5"]
    assert main([*args, "--out", str(out)]) == 0
    assert [c["bce_share"] for c in json.loads(out.read_text())["curves"]] == sorted({0.5, share})
    fig_out = tmp_path / "bce.plotly.json"
    assert main(["figure", "bce-loss", "--logit-range=-20,20", "--axis", "confidence", "--out", str(fig_out)]) == 0
    fig = plotly.io.from_json(fig_out.read_text())
    want = bce_curves(logit_range=(-20, 20))
    deriv = next(t for t in fig.data if t.meta == {"kind": "derivative", "name": "t = 1"})
    np.testing.assert_allclose(plotly_array(deriv.y), want.dconf[1])
    assert main(["figure", "bce-loss", "--targets", "0", "--out", str(tmp_path / "bce.html")]) == 0


def test_figure_gallery_writes_the_cells_of_the_analysis(tmp_path):
    import numpy as np
    from PIL import Image

    from mlvis.analysis.gallery import gallery
    from mlvis.recipe import ImageSource, demo_images
    from mlvis.viz.adversarial_gallery import gallery_layout

    model = mlvis.create_model("demo-asl", device="cpu")
    image = demo_images(ImageSource("demo", "test", 0, 1, 1), (64, 64))[0]
    want = gallery(model, image, ["bce", ("class", {"gamma": 0.0})], (0.05,))
    base = ["figure", "gallery", "--model", "demo-asl", "--device", "cpu", "--methods", "bce,class:0",
            "--fractions", "0.05"]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "g.json")]) == 0
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["methods"] == ["BCE", "CLASS(γ=0)"] and doc["flips"] == want.flips.tolist()
    assert doc["eps"] == want.eps.tolist() and doc["cells"][0][1]["flipped_up"] == list(want.cell(1, 0).flipped_up)
    assert main([*base, "--scale", "2", "--out", str(tmp_path / "g.png")]) == 0
    png = np.asarray(Image.open(tmp_path / "g.png"))
    (width, height), prims = gallery_layout(want, scale=2)
    assert png.shape == (height, width, 3)
    for p in (p for p in prims if p[0] == "image"):  # every tile, pixel for pixel
        np.testing.assert_array_equal(png[p[2] : p[2] + p[4], p[1] : p[1] + p[3]], p[5])
    assert main([*base, "--show", "perturbation", "--out", str(tmp_path / "g.svg")]) == 0
    assert (tmp_path / "g.svg").read_text().count("<image ") == 3


def test_figure_on_a_real_model_card_reads_an_image_file(tmp_path, monkeypatch, capsys):
    import numpy as np
    from model_files import timm_card
    from PIL import Image

    from mlvis.analysis.gallery import gallery
    from mlvis.data.images import load_image
    from mlvis.models import cards

    timm_card(tmp_path / "models", name="tiny-cli-figs")
    monkeypatch.setenv(cards.ENV, str(tmp_path / "models"))
    cards.sync(force=True)
    try:
        photo = tmp_path / "photo.png"
        Image.fromarray(np.random.default_rng(3).integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(photo)
        base = ["figure", "gallery", "--model", "tiny-cli-figs", "--device", "cpu", "--methods", "bce,linear"]
        assert main([*base, "--out", str(tmp_path / "g.json")]) == 2  # demo scenes are not its world
        assert "was trained on photos, not on the demo scenes; give --image FILE." in capsys.readouterr().err
        out = tmp_path / "g.json"
        assert main([*base, "--image", str(photo), "--eps", "0.004,0.008", "--out", str(out)]) == 0
        model = mlvis.create_model("tiny-cli-figs", device="cpu")
        x = load_image(photo.read_bytes(), (64, 64), fit="stretch", interpolation="bilinear").array
        want = gallery(model, x, ["bce", "linear"], eps=[0.004, 0.008])
        doc = json.loads(out.read_text())
        assert doc["labels"] == ["cat", "dog", "car", "tree"] and doc["flips"] == want.flips.tolist()
        assert doc["fractions"] == [None, None]  # no profile: explicit budgets
        assert main(["figure", "class-tree", "--model", "tiny-cli-figs", "--image", str(photo),
                     "--out", str(tmp_path / "t.html")]) == 2  # fmt: skip
        assert "has no correlation matrices yet" in capsys.readouterr().err
    finally:
        monkeypatch.delenv(cards.ENV)
        cards.sync(force=True)


def test_figure_refuses_bad_outputs_before_any_work(tmp_path, capsys):
    assert main(["figure", "gallery", "--model", "demo-asl", "--out", str(tmp_path / "g.html")]) == 2
    assert "--out must end in .png or .svg or .json for gallery" in capsys.readouterr().err
    assert main(["figure", "bce-loss", "--out", str(tmp_path / "no" / "b.html")]) == 2
    assert "does not exist; create it first" in capsys.readouterr().err
    assert main(["figure", "class-tree", "--out", str(tmp_path / "t.html")]) == 2
    assert "give --model NAME" in capsys.readouterr().err
    assert main(["figure", "bce-loss", "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["figure", "slam-loss", "--shares", "2", "--out", str(tmp_path / "s.json")]) == 2
    assert "p·q must be a number in [0, 1]" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
