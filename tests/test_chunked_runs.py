"""``mlvis profile / correlations / compare-related --run RUN_DIR``: the profile, the correlation matrices and
Table VII computed in chunks of images into run directories (mlvis.analysis.chunked), equal to the in-memory
functions, resumable after SIGKILL, a corrupt chunk or attack state recomputed."""

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
import torch

import mlvis
from mlvis.analysis import chunked
from mlvis.analysis.chunked import (
    ProbeRound,
    correlations_from_run,
    correlations_run,
    profile_from_run,
    profile_run,
    related_from_run,
    related_run,
)
from mlvis.analysis.correlation_matrices import correlation_matrix, single_label_attacks
from mlvis.analysis.related import compare_related
from mlvis.cli import main
from mlvis.runs import CHUNKS, DemoImages, RunError, chunk_name, chunk_seed, run_status, stage_dir

REPO = Path(__file__).resolve().parents[1]
PROBE = {"interval": 2, "max_eps": 0.03}  # converges after 14 steps on demo-asl's first test scenes


@pytest.fixture(scope="module")
def model():
    return mlvis.create_model("demo-asl")


def _same_profile(a, b) -> bool:
    return json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)


def test_the_profile_in_rounds_is_the_in_memory_profile_bit_for_bit(model, tmp_path):
    x, _ = mlvis.data.demo_batch(5)
    want = mlvis.profile(model, x, **PROBE, max_batch=2, cache=False)  # the probe's batches = the chunks
    seen = []
    got = profile_run(model, DemoImages(5), tmp_path / "p", **PROBE, chunk_size=2, round_steps=6,
                      progress=lambda d, t: seen.append((d, t)))  # fmt: skip
    assert _same_profile(got, want) and want.settings["converged"]
    assert want.cost["steps"] == 14  # rounds of 6 steps: the third round was cut at the stopping point
    assert sorted(p.name for p in (tmp_path / "p" / "stages").iterdir()) == ["000", "001", "002"]
    assert not any((tmp_path / "p" / "stages").glob("*/images"))  # the attack states are removed when done
    st = run_status(tmp_path / "p")
    assert st.finished and st.stage == "round 3 of at most 13" and (st.done, st.total) == (9, 9)
    assert seen[-1] == (3, 3)
    assert _same_profile(profile_from_run(tmp_path / "p"), want)
    assert _same_profile(profile_run(model, DemoImages(5), tmp_path / "p", **PROBE, chunk_size=2, round_steps=6), want)
    with pytest.raises(RunError, match="different run"):
        profile_run(model, DemoImages(5), tmp_path / "p", **PROBE, chunk_size=2, round_steps=4)


def test_a_probe_that_does_not_converge_runs_to_max_eps_in_rounds(model, tmp_path):
    x, _ = mlvis.data.demo_batch(3)
    settings = {"interval": 2, "max_eps": 0.0043}  # 11 steps: still rising, the last point at step 11
    want = mlvis.profile(model, x, **settings, max_batch=3, cache=False)
    got = profile_run(model, DemoImages(3), tmp_path / "p", **settings, chunk_size=3, round_steps=4)
    assert not want.settings["converged"] and _same_profile(got, want)
    assert json.loads((stage_dir(tmp_path / "p", 2) / "manifest.json").read_text())["settings"]["final"]


def test_corrupt_chunks_and_attack_states_are_recomputed_to_the_same_profile(model, tmp_path, monkeypatch):
    x, _ = mlvis.data.demo_batch(4)
    want = mlvis.profile(model, x, **PROBE, max_batch=2, cache=False)
    run = tmp_path / "p"
    monkeypatch.setattr(chunked.shutil, "rmtree", lambda *a, **k: None)  # keep every round's attack state
    args = (model, DemoImages(4), run)
    kw = {**PROBE, "chunk_size": 2, "round_steps": 6}
    assert _same_profile(profile_run(*args, **kw), want)
    restored = []
    original = ProbeRound._restore
    monkeypatch.setattr(ProbeRound, "_restore", lambda self, *a: restored.append(original(self, *a)) or restored[-1])
    (run / "profile.json").unlink()
    f = stage_dir(run, 1) / CHUNKS / chunk_name(0)
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 1
    f.write_bytes(bytes(raw))  # a changed byte: recomputed from round 0's state
    (stage_dir(run, 2) / CHUNKS / chunk_name(1)).unlink()  # a missing chunk of the last round
    state = next((stage_dir(run, 1) / "images").glob("state-delta0/chunk-0000002.npy"))
    raw = bytearray(state.read_bytes())
    raw[-5] ^= 0x40
    state.write_bytes(bytes(raw))  # round 1's state of chunk 1, damaged: round 2 recomputes it from step 0
    assert _same_profile(profile_run(*args, **kw), want)
    assert restored == [True, False]


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "mlvis", *argv]


def test_a_killed_profile_run_resumes_to_the_same_profile(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(torch.get_num_threads()))
    args = ["profile", "--model", "demo-asl", "--device", "cpu", "--images", "4", "--chunk", "1", "--interval", "2",
            "--max-eps", "0.03", "--round-steps", "4"]  # fmt: skip
    run = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*args, "--run", str(run)), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    mark = stage_dir(run, 1) / CHUNKS / chunk_name(1)
    deadline = time.monotonic() + 240
    while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    st = run_status(run)
    assert not st.finished and st.stage.startswith("round 2")
    with pytest.raises(RunError, match="not finished"):
        profile_from_run(run)
    again = subprocess.run(_cli(*args, "--run", str(run)), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert main([*args, "--run", str(tmp_path / "whole")]) == 0
    assert (run / "profile.json").read_text() == (tmp_path / "whole" / "profile.json").read_text()
    assert main([*args, "--out", str(tmp_path / "x.json")]) == 2  # --chunk without --run is a sentence


def test_the_correlation_matrices_from_a_run_directory(model, tmp_path, capsys):
    x, _ = mlvis.data.demo_batch(3)
    run = correlations_run(model, DemoImages(3), tmp_path / "c", eps=0.002, chunk_size=2)
    got = correlations_from_run(run.path)
    for d in ("up", "down"):  # flip-down over the images where the label is present, as mlvis.correlations
        present = d == "down"
        parts = [single_label_attacks(model, x[a:b], 0.002, d, 1 / 2560, present_only=present)
                 for a, b in ((0, 2), (2, 3))]  # fmt: skip
        clean = np.concatenate([p[0] for p in parts], axis=1)
        adv = np.concatenate([p[1] for p in parts], axis=1)
        want = correlation_matrix("demo-asl", parts[0][2], d, 0.002, 1 / 2560, clean, adv, parts[0][3],
                                  present_only=present)  # fmt: skip
        assert got[d].to_dict() == want.to_dict()  # the chunks' attacks, reduced by the in-memory code
        whole = mlvis.correlations(model, x, eps=0.002, direction=d, cache=False)
        # one batch: float rounding only; flip-down attacks only the (label, image) rows with the label present,
        # batched otherwise in one job than in the chunks, so a rounding may tip a sign step (seen: 7e-5 on one row)
        np.testing.assert_allclose(got[d].matrix, whole.matrix, atol=1e-6 if d == "up" else 1e-4)
        assert np.array_equal(got[d].attackability, whole.attackability, equal_nan=True)
        assert got[d].labels == whole.labels and got[d].images == 3
    (run.path / CHUNKS / chunk_name(1)).unlink()
    with pytest.raises(RunError, match="finish it first"):
        correlations_from_run(run.path)
    assert correlations_from_run(run.path, partial=True)["up"].images == 2
    common = ["correlations", "--model", "demo-asl", "--images", "3", "--eps", "0.002", "--direction", "up"]
    assert main([*common, "--run", str(tmp_path / "cli"), "--chunk", "2"]) == 0
    saved = mlvis.analysis.CorrelationMatrix.load(tmp_path / "cli" / "demo-asl.correlations-up.json")
    assert saved.to_dict()["matrix"] == got["up"].to_dict()["matrix"]
    assert main([*common, "--run", str(tmp_path / "s"), "--ship"]) == 2
    assert "--ship" in capsys.readouterr().err


def test_table_vii_from_a_run_directory(model, tmp_path, capsys):
    x, _ = mlvis.data.demo_batch(3)
    opts = {"mla-lp": {"max_iter": 2, "basis": 4}}  # small budgets: MI-FGSM and SLAM at them are cheap
    run = related_run(model, DemoImages(3), tmp_path / "r", ["mla-lp"], options=opts, chunk_size=2)
    got = related_from_run(run.path)
    parts = [compare_related(model, x[a:b], ["mla-lp"], options=opts, seed=chunk_seed(0, a))
             for a, b in ((0, 2), (2, 3))]  # fmt: skip
    for f in ("flips", "flips_8bit", "linf", "l2", "mifgsm_flips", "slam_flips", "slam_p"):
        assert np.array_equal(getattr(got, f), np.concatenate([getattr(p, f) for p in parts], axis=1)), f
    assert got.num_images == 3 and got.settings["options"] == opts
    assert list(got.summary()["method"]) == ["MLA-LP"]
    capsys.readouterr()
    args = ["compare-related", "--model", "demo-asl", "--images", "3", "--methods", "mla-lp", "--lp-iters", "2",
            "--lp-basis", "4", "--preset", "fast", "--format", "json"]  # fmt: skip
    assert main([*args, "--run", str(tmp_path / "cli"), "--chunk", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["flips"] == got.flips.tolist()
    assert (tmp_path / "cli" / "table.md").read_text().strip() == related_from_run(tmp_path / "cli").to_markdown()


def test_bf16_autocast_works_on_the_cpu_for_profile_correlations_and_evaluate(model, tmp_path):
    x, _ = mlvis.data.demo_batch(2)
    fp32 = mlvis.correlations(model, x, eps=0.002, cache=False)
    bf16 = mlvis.correlations(model, x, eps=0.002, cache=False, autocast=True)
    assert not np.array_equal(bf16.matrix, fp32.matrix)  # really another precision
    np.testing.assert_allclose(bf16.matrix, fp32.matrix, atol=0.05)
    prof = mlvis.profile(model, x, **PROBE, cache=False, autocast=True)
    assert prof.settings["autocast"] is True
    assert "autocast" not in mlvis.profile(model, x, **PROBE, cache=False).settings
    common = ["--model", "demo-asl", "--device", "cpu", "--images", "2", "--bf16"]
    assert main(["evaluate", *common, "--methods", "bce", "--fractions", "0.05", "--out", str(tmp_path / "e")]) == 0
    assert json.loads((tmp_path / "e" / "manifest.json").read_text())["settings"]["job"] == {"autocast": True}
    assert main(["correlations", *common, "--eps", "0.002", "--direction", "up", "--run", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["settings"]["autocast"] is True
