"""``mlvis evaluate --data KIND:PATH --out RUN_DIR``: datasets and resumable run directories from the CLI.

The table printed with ``--out`` is computed from the run directory; the dataset path on a folder of
demo scenes written by ``mlvis write-scenes`` gives the demo path's table; a real run killed with
SIGKILL resumes to the identical table; the Ray backend gives the local backend's table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mlvis
from mlvis.analysis.evaluation import table_from_run
from mlvis.cli import main
from mlvis.data import open_dataset
from mlvis.runs import RunError, run_status

REPO = Path(__file__).resolve().parents[1]
BASE = ["--model", "demo-asl", "--device", "cpu", "--fractions", "0.05,0.1"]
DETERMINISTIC = ("BCE", "SLAM(q=0.5)", "CLASS(γ=0)", "CLASS(γ=0.5)", "CLASS(γ=1)")


def _json(capsys, argv) -> dict:
    capsys.readouterr()
    assert main([*argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "folder"
    assert main(["write-scenes", "--layout", "folder", "--n", "6", "--out", str(out)]) == 0
    return out


def test_write_scenes_writes_a_dataset_folder(scenes, tmp_path, capsys):
    ds = open_dataset("folder", scenes).align(mlvis.create_model("demo-asl").labels)
    x, y = mlvis.data.demo_batch(6)
    assert len(ds) == 6 and np.array_equal(ds.load_for(mlvis.create_model("demo-asl")), x.numpy())
    assert np.array_equal(ds.truth, y.numpy().astype(np.uint8))
    assert main(["write-scenes", "--n", "2", "--out", str(scenes)]) == 2  # never over an existing dataset
    assert "not an empty folder" in capsys.readouterr().err


def test_write_scenes_writes_the_voc_layout_read_back_bit_for_bit(tmp_path, capsys):
    model = mlvis.create_model("demo-asl")
    x, y = mlvis.data.demo_batch(4)
    assert main(["write-scenes", "--layout", "voc", "--n", "4", "--out", str(tmp_path / "voc")]) == 0
    assert "--data voc:" in capsys.readouterr().out
    root = tmp_path / "voc"
    assert sorted(p.name for p in root.iterdir()) == ["Annotations", "ImageSets", "JPEGImages", "labels.txt",
                                                      "mlvis-scenes.json"]  # fmt: skip
    ds = open_dataset("voc", root)  # split test, the paper's VOC split
    assert ds.labels == model.labels and len(ds) == 4 and ds.ids[0] == "000000"
    assert np.array_equal(ds.load_for(model), x.numpy())  # lossless: PNGs under JPEGImages/
    assert np.array_equal(ds.align(model.labels).truth, y.numpy().astype(np.uint8))
    assert all(f.endswith(".png") for f in ds.files)
    # the train scenes go to VOC's trainval split; --image-format jpeg writes real (lossy) JPEG files
    assert main(["write-scenes", "--layout", "voc", "--n", "2", "--split", "train", "--image-format", "jpeg",
                 "--out", str(tmp_path / "jpeg")]) == 0  # fmt: skip
    assert "--split trainval" in capsys.readouterr().out
    jp = open_dataset("voc", tmp_path / "jpeg", split="trainval")
    assert all(f.endswith(".jpg") for f in jp.files)
    xt, yt = mlvis.data.demo_batch(2, split="train")
    got = jp.load_for(model)
    assert not np.array_equal(got, xt.numpy()) and np.abs(got - xt.numpy()).mean() < 0.02
    assert np.array_equal(jp.truth, yt.numpy().astype(np.uint8))


def test_data_folder_gives_the_demo_paths_table(scenes, tmp_path, capsys):
    """On the same scenes in the same order (--order listed) the tables are identical, random subset included;
    with the default seeded sample the images come in another order, so the chunks (and the random subset's
    draws, seeded per chunk) differ, while every deterministic method's per-image flips are the same."""
    common = [*BASE, "--images", "6", "--chunk", "3"]
    listed = _json(capsys, ["evaluate", *common, "--data", f"folder:{scenes}", "--order", "listed",
                            "--out", str(tmp_path / "listed")])  # fmt: skip
    demo = _json(capsys, ["evaluate", *common, "--out", str(tmp_path / "demo")])
    assert listed == demo
    assert (tmp_path / "listed" / "table.md").read_text() == (tmp_path / "demo" / "table.md").read_text()
    assert np.asarray(demo["flips"]).shape == (6, 2, 6)  # 6 methods, 2 budgets, 6 images

    sampled = _json(capsys, ["evaluate", *common, "--data", f"folder:{scenes}", "--out", str(tmp_path / "sampled")])
    ids = open_dataset("folder", scenes).sample(6, 0).ids
    order = [int(Path(i).stem.split("_")[1]) for i in ids]  # scene index of each sampled image
    assert order != sorted(order)  # really another order
    for name in DETERMINISTIC:
        i, j = demo["methods"].index(name), sampled["methods"].index(name)
        assert np.array_equal(np.asarray(sampled["flips"][j]), np.asarray(demo["flips"][i])[:, order])
        assert sampled["mean"][j] == demo["mean"][i]
    # the printed table is the run directory's
    assert table_from_run(tmp_path / "sampled").to_dict() == sampled


def test_other_commands_take_data(scenes, tmp_path, capsys):
    data = ["--model", "demo-asl", "--device", "cpu", "--data", f"folder:{scenes}", "--order", "listed"]
    assert main(["correlations", *data, "--images", "1", "--eps", "0.002", "--direction", "up",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    on_data = mlvis.analysis.CorrelationMatrix.load(tmp_path / "demo-asl.correlations-up.json")
    x, _ = mlvis.data.demo_batch(1)
    want = mlvis.correlations(mlvis.create_model("demo-asl"), x, eps=0.002, direction="up")
    assert np.array_equal(on_data.matrix, want.matrix, equal_nan=True)
    assert main(["profile", *data, "--images", "1", "--max-eps", "0.01", "--interval", "5",
                 "--out", str(tmp_path / "p.json")]) == 0  # fmt: skip
    assert mlvis.analysis.FlipProfile.load(tmp_path / "p.json").settings["images"] == 1
    capsys.readouterr()
    assert main(["compare-related", *data, "--images", "1", "--methods", "ml-deepfool", "--deepfool-iters", "2",
                 "--format", "json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)
    assert main(["evaluate", *data, "--images", "2", "--image-dir", str(scenes)]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["evaluate", "--model", "demo-asl", "--data", "coco:/nonexistent/x", "--images", "2"]) == 2
    assert "does not exist" in capsys.readouterr().err


def _cli(*argv: str, **kw) -> list[str]:
    return [sys.executable, "-m", "mlvis", *argv]


ENV = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def test_mlvis_table_shows_a_run_directory_finished_or_partial_with_its_figure(tmp_path, capsys):
    from mlvis.runs import CHUNKS, chunk_name

    run = tmp_path / "run"
    args = ["evaluate", *BASE, "--images", "3", "--chunk", "1", "--methods", "bce,slam", "--format", "json"]
    whole = _json(capsys, [*args, "--out", str(run)])
    capsys.readouterr()
    assert main(["table", str(run), "--format", "json", "--figure", str(tmp_path / "fig.html")]) == 0
    assert json.loads(capsys.readouterr().out) == whole
    html = (tmp_path / "fig.html").read_text()
    assert "flips vs budget (3 images)" in html and "plotly" in html
    (run / CHUNKS / chunk_name(2)).unlink()  # as if the run were still running
    assert main(["table", str(run)]) == 2
    assert "finish it first" in capsys.readouterr().err
    assert main(["table", str(run), "--partial"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("evaluate run run: 2 of 3 images (the run is not finished)")
    assert table_from_run(run, partial=True).to_markdown() in out
    assert main(["table", str(tmp_path)]) == 2  # not a run directory: a sentence
    assert "not a run directory" in capsys.readouterr().err


def test_a_killed_run_resumes_to_the_identical_table(tmp_path, capsys):
    args = ["evaluate", *BASE, "--images", "8", "--chunk", "2", "--methods", "bce,slam,random,class:0.5",
            "--format", "json"]  # fmt: skip
    run = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*args, "--out", str(run)), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = run / "chunks" / "chunk-000000.npz"
    deadline = time.monotonic() + 240
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    st = run_status(run)
    assert 1 <= st.done < st.total == 4  # killed mid-way, after the first chunk
    with pytest.raises(RunError, match="finish it first"):
        table_from_run(run)
    again = subprocess.run(_cli(*args, "--out", str(run)), env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    first_line = next(t for t in again.stderr.splitlines() if "(chunks)" in t)
    assert f"({st.done}/4)" in first_line  # it started from the chunks already there
    whole = _json(capsys, [*args[:-2], "--out", str(tmp_path / "whole")])
    assert json.loads(again.stdout) == whole
    assert (run / "table.json").read_text() == (tmp_path / "whole" / "table.json").read_text()


def test_the_ray_backend_gives_the_local_table(tmp_path, capsys):
    """A local Ray (started by mlvis on 127.0.0.1, two CPUs) computes the chunks; the same table as local."""
    args = ["evaluate", *BASE, "--images", "4", "--chunk", "2", "--methods", "bce,random,class:0.5", "--format", "json"]
    ray_run = subprocess.run(_cli(*args, "--out", str(tmp_path / "ray"), "--backend", "ray"), env=ENV,
                             capture_output=True, text=True, timeout=400)  # fmt: skip
    assert ray_run.returncode == 0, ray_run.stderr[-3000:]
    local = _json(capsys, [*args[:-2], "--out", str(tmp_path / "local")])
    assert json.loads(ray_run.stdout) == local
    assert main([*args, "--out", str(tmp_path / "x"), "--address", "auto"]) == 2
    assert "--address is for --backend ray" in capsys.readouterr().err
