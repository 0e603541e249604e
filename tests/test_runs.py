"""Run directories: chunk files, resuming after SIGKILL, corrupt chunks, manifests, locking, images."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import mlvis
from mlvis.runs import (
    CHUNKS,
    AttackChunks,
    DemoImages,
    Run,
    RunError,
    chunk_name,
    load_run,
    make_manifest,
    run_chunks,
    run_status,
)

REPO = Path(__file__).resolve().parents[1]


class Counting:
    """A cheap deterministic compute function that records which chunks it computed."""

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    def __call__(self, start, stop):
        self.calls.append((start, stop))
        idx = np.arange(start, stop)
        rng = np.random.default_rng(idx[:, None] + 1)
        return {"square": idx**2, "noise": rng.random((len(idx), 3)).astype(np.float32)}


def _manifest(**kw):
    return make_manifest("test", model="m0", dataset={"kind": "toy"}, seed=kw.pop("seed", 0), **kw)


def test_run_writes_one_checked_file_per_chunk_and_loads_them_in_order(tmp_path):
    seen = []
    run = run_chunks(tmp_path / "r", _manifest(), 10, 4, Counting(), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert sorted(p.name for p in (tmp_path / "r" / CHUNKS).iterdir()) == [chunk_name(i) for i in range(3)]
    out = load_run(tmp_path / "r")
    assert out["square"].tolist() == [i * i for i in range(10)] and out["noise"].shape == (10, 3)
    st = run.status()
    assert (st.done, st.total, st.finished, st.num_items, st.chunk_size) == (3, 3, True, 10, 4)
    assert run.manifest["versions"]["numpy"] == np.__version__ and "created" in run.manifest


def test_sigkill_mid_run_resumes_from_finished_chunks_to_identical_arrays(tmp_path):
    """A real attack run on the demo model, killed with SIGKILL between chunks, then started again."""
    child = textwrap.dedent(
        """
        import sys, time
        from mlvis.runs import AttackChunks, DemoImages, make_manifest, run_chunks
        compute = AttackChunks("demo-asl", DemoImages(8), ("bce",), (0.002, 0.004))
        manifest = make_manifest("evaluate", model="demo-asl", dataset=DemoImages(8).describe(), seed=0,
                                 methods=["bce"], budgets=[0.002, 0.004])
        def slow(start, stop):  # widen the window in which the parent kills it
            time.sleep(0.3)
            return compute(start, stop)
        run_chunks(sys.argv[1], manifest, 8, 2, slow)
        """
    )
    run_dir = tmp_path / "killed"
    # the child computes with as many threads as this process, so its arrays equal this process's bit for bit
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.Popen([sys.executable, "-c", child, str(run_dir)], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    chunks = run_dir / CHUNKS
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if chunks.is_dir() and list(chunks.glob("chunk-*.npz")):
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    done = {p.name: p.stat().st_mtime_ns for p in chunks.glob("chunk-*.npz")}
    assert 1 <= len(done) < 4 and run_status(run_dir).done == len(done)

    compute = AttackChunks("demo-asl", DemoImages(8), ("bce",), (0.002, 0.004))
    manifest = make_manifest(
        "evaluate", model="demo-asl", dataset=DemoImages(8).describe(), seed=0, methods=["bce"], budgets=[0.002, 0.004]
    )
    resumed = run_chunks(run_dir, manifest, 8, 2, compute).load()
    assert {p.name: p.stat().st_mtime_ns for p in chunks.glob("chunk-*.npz") if p.name in done} == done  # kept
    whole = run_chunks(tmp_path / "whole", manifest, 8, 2, compute).load()
    assert resumed.keys() == whole.keys()
    for k in whole:
        assert np.array_equal(resumed[k], whole[k], equal_nan=True), k
    assert resumed["bce.flips"].shape == (8, 2) and resumed["bce.adv_probs"].shape == (8, 2, 24)


def test_corrupt_partial_and_stray_chunk_files_are_recomputed_never_read(tmp_path):
    run_dir = tmp_path / "r"
    run_chunks(run_dir, _manifest(), 12, 3, Counting())
    good = load_run(run_dir)
    files = [run_dir / CHUNKS / chunk_name(i) for i in range(4)]
    # chunk 1: a valid npz with the right layout whose numbers were changed (the checksum no longer matches)
    raw = files[1].read_bytes()
    body, sep, digest = raw.rpartition(b"\nmlvis-chunk-sha256:")
    with np.load(io.BytesIO(body)) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["square"] = arrays["square"] + 1
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    files[1].write_bytes(buf.getvalue() + sep + digest)
    # chunk 2: cut short, as by a crash in the middle of a non-atomic write
    files[2].write_bytes(files[2].read_bytes()[:100])
    # chunk 3: bytes flipped in the middle
    raw = bytearray(files[3].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    files[3].write_bytes(bytes(raw))
    (run_dir / CHUNKS / ".chunk-000000.npz.123.tmp").write_bytes(b"half a file")
    with pytest.raises(RunError, match="partial or corrupt"):
        load_run(run_dir)  # reading refuses them
    counting = Counting()
    out = run_chunks(run_dir, _manifest(), 12, 3, counting).load()
    assert counting.calls == [(3, 6), (6, 9), (9, 12)]
    assert all(np.array_equal(out[k], good[k]) for k in good)
    assert not list((run_dir / CHUNKS).glob(".*.tmp"))
    with zipfile.ZipFile(files[1]) as z:  # the file stays a plain npz for other readers
        assert z.testzip() is None and np.load(files[1])["square"].tolist() == [9, 16, 25]


def test_a_different_manifest_is_one_sentence(tmp_path):
    run_chunks(tmp_path / "r", _manifest(), 6, 3, Counting())
    with pytest.raises(RunError, match=r"holds a different run \(seed: 0 there, 1 here\); use a new folder"):
        run_chunks(tmp_path / "r", _manifest(seed=1), 6, 3, Counting())
    with pytest.raises(RunError, match="chunk_size: 3 there, 2 here"):
        run_chunks(tmp_path / "r", _manifest(), 6, 2, Counting())
    with pytest.raises(RunError, match=r"budgets"):
        run_chunks(tmp_path / "r", _manifest(budgets=[0.1]), 6, 3, Counting())
    # the same images mounted elsewhere (another machine) continue the run: only the fingerprint counts
    moved = make_manifest("test", model="m0", dataset={"kind": "toy", "root": "/mnt/other"}, seed=0)
    run_chunks(tmp_path / "r", moved, 6, 3, Counting())
    with pytest.raises(RunError, match=r"dataset.fingerprint only here"):
        run_chunks(
            tmp_path / "r",
            make_manifest("test", model="m0", dataset={"kind": "toy", "fingerprint": "x"}, seed=0),
            6,
            3,
            Counting(),
        )
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty and has no manifest.json"):
        run_chunks(tmp_path / "busy", _manifest(), 6, 3, Counting())
    with pytest.raises(RunError, match="not a run directory"):
        run_status(tmp_path / "busy")


def test_progress_is_readable_from_the_directory_while_it_runs_and_failures_are_recorded(tmp_path):
    run_dir = tmp_path / "r"
    seen = []

    def compute(start, stop):
        if start == 6:
            raise ValueError("image 6 cannot be read.")
        seen.append(run_status(run_dir).done)
        return Counting()(start, stop)

    with pytest.raises(ValueError, match="image 6"):
        run_chunks(run_dir, _manifest(), 9, 3, compute)
    assert seen == [0, 1]
    st = run_status(run_dir)
    assert (st.done, st.total, st.finished, st.error) == (2, 3, False, "image 6 cannot be read.")
    assert Run(run_dir).load(partial=True)["square"].tolist() == [i * i for i in range(6)]
    with pytest.raises(RunError, match="2 of its 3 chunks"):
        load_run(run_dir)
    run_chunks(run_dir, _manifest(), 9, 3, Counting())
    assert run_status(run_dir).error is None and run_status(run_dir).finished


def test_bad_chunk_outputs_are_refused_with_a_sentence(tmp_path):
    with pytest.raises(RunError, match=r"'a' with 2 rows for the 3 items 0..2"):
        run_chunks(tmp_path / "a", _manifest(), 3, 3, lambda s, e: {"a": np.zeros(2)})
    with pytest.raises(RunError, match="dtype object"):
        run_chunks(tmp_path / "b", _manifest(), 3, 3, lambda s, e: {"a": np.array([None] * 3)})
    with pytest.raises(RunError, match="backend"):
        run_chunks(tmp_path / "c", _manifest(), 3, 3, Counting(), backend="dask")


def test_a_run_directory_in_use_is_refused(tmp_path):
    run_dir = tmp_path / "r"
    inner = []

    def progress(done, total):
        if done == 1 and not inner:
            with pytest.raises(RunError, match=f"in use by process {os.getpid()}"):
                run_chunks(run_dir, _manifest(), 6, 3, Counting())
            inner.append(True)

    run_chunks(run_dir, _manifest(), 6, 3, Counting(), progress=progress)
    assert inner and run_status(run_dir).finished


def test_attack_chunks_match_the_engine_per_chunk_and_save_images_losslessly(tmp_path):
    model = mlvis.create_model("demo-asl")
    x, _ = mlvis.data.demo_batch(6)
    parts = [mlvis.attack(model, x[a:b], "bce", [0.004, 0.008]) for a, b in ((0, 4), (4, 6))]
    compute = AttackChunks("demo-asl", DemoImages(6), ("bce",), (0.004, 0.008), save_images=True)
    run = run_chunks(tmp_path / "r", _manifest(), 6, 4, compute)
    out = run.load()
    assert not any(k.startswith("images/") for k in out)  # images are files, never loaded with the results
    for key, field in (("bce.flips", "flips"), ("bce.linf", "linf"), ("bce.adv_probs", "adv_probs")):
        assert np.array_equal(out[key], np.concatenate([np.moveaxis(getattr(p, field), 0, 1) for p in parts])), key
    assert np.array_equal(out["clean_probs"], np.concatenate([p.clean_probs for p in parts]))
    # one batch of 6 differs from batches of 4 + 2 only in float rounding (batch-size dependent kernels)
    whole = mlvis.attack(model, x, "bce", [0.004, 0.008])
    np.testing.assert_allclose(out["bce.adv_probs"], whole.adv_probs.transpose(1, 0, 2), atol=1e-5)
    saved = list(run.images("bce"))
    assert [i for i, _ in saved] == list(range(6))
    expect = np.concatenate([p.adv_8bit.transpose(1, 0, 2, 3, 4) for p in parts])
    assert np.array_equal(np.stack([im for _, im in saved]), expect)
    # float images are kept bit-exact, one .npy per chunk
    floats = run_chunks(
        tmp_path / "f", _manifest(), 6, 4, lambda s, e: {"images/adv": whole.adv[1, s:e], "n": np.arange(s, e)}
    )
    assert np.array_equal(np.stack([im for _, im in floats.images("adv")]), whole.adv[1])
    assert json.loads((tmp_path / "f" / "manifest.json").read_text())["num_items"] == 6


def test_ray_stays_out_of_the_default_import_path():
    code = "import sys, mlvis, mlvis.runs, mlvis.data.datasets; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True)
    assert out.stdout.decode().strip() == "False", out.stderr.decode()[-2000:]


def test_a_scene_dataset_folder_gives_the_demo_paths_arrays(tmp_path):
    """The real-dataset path (folder layout on disk, read back, labels aligned by name) = the demo path."""
    from mlvis.data import open_dataset, write_scene_dataset

    folder = write_scene_dataset(tmp_path / "scenes", "coco", n=6, split="test", seed=0)
    model = mlvis.create_model("demo-asl")
    ds = open_dataset("coco", folder).align(model.labels)
    manifest = _manifest()
    on_disk = run_chunks(tmp_path / "disk", manifest, 6, 3, AttackChunks("demo-asl", ds, ("bce",), (0.004,))).load()
    demo = run_chunks(
        tmp_path / "demo", manifest, 6, 3, AttackChunks("demo-asl", DemoImages(6), ("bce",), (0.004,))
    ).load()
    assert on_disk.keys() == demo.keys()
    assert all(np.array_equal(on_disk[k], demo[k], equal_nan=True) for k in demo)
