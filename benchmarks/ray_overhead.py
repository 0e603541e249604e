"""The Ray backend's overhead against the local backend on the same cores (goal: ratio <= 1.15).

Workload: a demo-asl attack sweep (BCE and linear at three budgets) on demo scenes, in chunks, run
through ``mlvis.runs.run_chunks`` into fresh run directories. Measured side by side in one process,
alternating the backends, on a Ray cluster started here with as many CPUs as the machine has:

- **one core**: the local backend on one PyTorch thread against Ray with one task at a time
  (``max_in_flight=1``, one thread per worker): the pure cost of Ray's task machinery;
- **all cores**: the local backend on all PyTorch threads against Ray with one single-threaded task
  per core: what a user of a multi-core machine gets.

"Cold" runs include the first use of the model (the local process loads it once; each Ray worker
starts, imports torch and mlvis and loads it once); "warm" runs reuse them (a long sweep's steady
state). The ratio is Ray's wall time over the local backend's: the median of the repetitions' ratios
(each repetition runs the two back to back) and the ratio of the fastest runs (the least disturbed by
other work on a shared machine).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ray_overhead.py [--images 48 --chunk 4 --reps 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    from mlvis.runs import AttackChunks, DemoImages, loopback_ray, make_manifest, run_chunks

    loopback_ray()  # the benchmark's cluster listens on 127.0.0.1 only
    import ray
    import torch

    cores = os.cpu_count() or 1
    os.environ["OMP_NUM_THREADS"] = "1"
    t0 = time.perf_counter()
    ray.init(
        num_cpus=cores,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}},
    )
    print(f"Ray cluster of {cores} CPUs started in {time.perf_counter() - t0:.1f} s (not counted below)")
    images = DemoImages(args.images)
    compute = AttackChunks("demo-asl", images, ("bce", "linear"), (0.004, 0.008, 0.016))
    manifest = make_manifest("benchmark", model="demo-asl", dataset=images.describe(), seed=0)
    tmp = Path(tempfile.mkdtemp(prefix="mlvis-ray-bench-"))
    n_chunks = -(-args.images // args.chunk)
    print(f"workload: {args.images} demo scenes in {n_chunks} chunks of {args.chunk}, bce + linear at 3 budgets")

    def timed(backend: str, threads: int, in_flight: int | None) -> float:
        torch.set_num_threads(threads)
        d = Path(tempfile.mkdtemp(dir=tmp))
        t = time.perf_counter()
        run_chunks(d, manifest, args.images, args.chunk, compute, backend=backend, max_in_flight=in_flight)
        dt = time.perf_counter() - t
        shutil.rmtree(d)
        return dt

    rows = []
    try:
        for label, threads, in_flight in (("one core", 1, 1), (f"all {cores} cores", cores, None)):
            local_cold = timed("local", threads, in_flight)
            ray_cold = timed("ray", threads, in_flight)
            local, remote = [], []
            for _ in range(args.reps):
                local.append(timed("local", threads, in_flight))
                remote.append(timed("ray", threads, in_flight))
            median_ratio = statistics.median(r / lo for r, lo in zip(remote, local))
            rows.append((label, local_cold, ray_cold, statistics.median(local), statistics.median(remote),
                         median_ratio, min(remote) / min(local)))  # fmt: skip
            # later configurations start from fresh Ray workers too
            ray.shutdown()
            ray.init(
                num_cpus=cores,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}},
            )
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    head = ("local cold", "ray cold", "ratio", "local warm", "ray warm", "ratio", "fastest")
    print(f"\n{'configuration':<16} " + " ".join(f"{h:>10}" for h in head))
    for label, lc, rc, lw, rw, mr, fr in rows:
        print(f"{label:<16} {lc:>9.2f}s {rc:>9.2f}s {rc / lc:>10.2f} {lw:>9.2f}s {rw:>9.2f}s {mr:>10.2f} {fr:>10.2f}")
    print(
        "(warm: medians of the repetitions; ratio: median of the paired ratios; fastest: fastest Ray / fastest local)"
    )
    worst = max(row[5] for row in rows)
    verdict = "met" if worst <= 1.15 else "NOT met"
    print(f"\ngoal: warm Ray / local <= 1.15 on the same cores: {verdict} (worst {worst:.2f})")
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, ray {ray.__version__}, {cores} CPUs")


if __name__ == "__main__":
    main()
