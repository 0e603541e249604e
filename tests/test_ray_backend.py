"""The Ray backend on a real local Ray cluster of two CPU workers, started here and shut down after.

Same run-directory format as the local backend, identical arrays, one model load per worker, a
killed worker's chunk retried, and a run interrupted on the driver resumed.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlvis.runs import (
    AttackChunks,
    DemoImages,
    RunError,
    load_run,
    loopback_ray,
    make_manifest,
    run_chunks,
    run_status,
)

loopback_ray()  # the test cluster listens on 127.0.0.1 only (set before Ray is imported)
import ray  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COMPUTE = AttackChunks("demo-asl", DemoImages(8), ("bce",), (0.002, 0.004))
MANIFEST = make_manifest("evaluate", model="demo-asl", dataset=DemoImages(8).describe(), seed=0, methods=["bce"])


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """Two CPU workers on this machine, no dashboard; the test's classes are pickled by value for the workers."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        # workers compute with as many threads as this process, so their arrays equal this process's
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(torch.get_num_threads())}},
    )
    try:
        yield
    finally:
        ray.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


class DiesOnce:
    """Kills its own worker process (SIGKILL) the first time it meets chunk ``start``, then computes."""

    def __init__(self, marker: Path, start: int):
        self.marker, self.start = marker, start

    def __call__(self, start, stop):
        if start == self.start and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return COMPUTE(start, stop)


class AlwaysDies:
    def __call__(self, start, stop):
        os.kill(os.getpid(), signal.SIGKILL)


class Fails:
    def __call__(self, start, stop):
        raise ValueError(f"image {start} cannot be read.")


class LoadsOnce:
    """Reports the worker's pid and how many times its process loaded the (toy) model."""

    def __call__(self, start, stop):
        from mlvis import runs

        def load():
            runs._PROCESS_CACHE["loads"] = runs._PROCESS_CACHE.get("loads", 0) + 1
            return object()

        runs.cached(("toy-model",), load)
        n = stop - start
        return {"pid": np.full(n, os.getpid()), "loads": np.full(n, runs._PROCESS_CACHE["loads"])}


def test_local_and_ray_runs_give_identical_arrays_and_ray_survives_a_killed_worker(tmp_path):
    local = run_chunks(tmp_path / "local", MANIFEST, 8, 2, COMPUTE).load()
    marker = tmp_path / "died"
    seen = []
    run = run_chunks(
        tmp_path / "ray", MANIFEST, 8, 2, DiesOnce(marker, 4), backend="ray", progress=lambda d, t: seen.append(d)
    )
    assert marker.exists()  # chunk 2's first worker really died ...
    assert seen == [0, 1, 2, 3, 4] and run.status().finished  # ... and the chunk was retried
    remote = run.load()
    assert remote.keys() == local.keys()
    for k in local:
        assert np.array_equal(remote[k], local[k], equal_nan=True), k
    assert sorted(p.name for p in (tmp_path / "ray" / "chunks").iterdir()) == sorted(
        p.name for p in (tmp_path / "local" / "chunks").iterdir()
    )


def test_each_worker_loads_its_model_once(tmp_path):
    out = run_chunks(tmp_path / "r", make_manifest("loads"), 12, 2, LoadsOnce(), backend="ray").load()
    assert set(out["loads"].tolist()) == {1}
    assert len(set(out["pid"].tolist())) < 6  # six chunks, fewer processes: workers are reused


def test_a_run_interrupted_on_the_driver_resumes(tmp_path):
    def interrupt(done, total):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_chunks(tmp_path / "r", MANIFEST, 8, 2, COMPUTE, backend="ray", progress=interrupt, max_in_flight=1)
    st = run_status(tmp_path / "r")
    assert 1 <= st.done < st.total
    run_chunks(tmp_path / "r", MANIFEST, 8, 2, COMPUTE, backend="ray")
    local = run_chunks(tmp_path / "local", MANIFEST, 8, 2, COMPUTE).load()
    resumed = load_run(tmp_path / "r")
    assert all(np.array_equal(resumed[k], local[k], equal_nan=True) for k in local)


def test_ray_failures_are_sentences(tmp_path):
    with pytest.raises(ValueError, match="image 0 cannot be read"):
        run_chunks(tmp_path / "f", make_manifest("fails"), 2, 2, Fails(), backend="ray")
    assert run_status(tmp_path / "f").error == "image 0 cannot be read."
    with pytest.raises(RunError, match="Ray worker died on each of its 1 attempt"):
        run_chunks(tmp_path / "d", make_manifest("dies"), 2, 2, AlwaysDies(), backend="ray", max_retries=0)


def test_the_local_cluster_listens_on_loopback_only():
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
