"""Attack replay: what recording a run costs, measured side by side in one process (issue 13 section 2).

Runs the Lab's default methods (BCE, SLAM, CLASS) on demo scenes at one budget, alternately without and with
a :class:`mlvis.analysis.trajectory.TrajectoryRecorder` as the engine's hook (every step, images kept), and
prints the time ratio and the recording's memory. Usage::

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/replay.py [--images 8] [--eps 0.02] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import mlvis
from mlvis.analysis.trajectory import TrajectoryRecorder
from mlvis.attacks import run_job
from mlvis.attacks.plan import evaluation_specs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="demo-asl")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--eps", type=float, default=0.02)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    model = mlvis.create_model(args.model, device="cpu")
    x, _ = mlvis.data.demo_batch(args.images)
    specs = evaluation_specs(["bce", "slam", "class"], mlvis.profile(model), mlvis.correlations(model, direction="up"))
    run_job(model, x[:1], specs, args.eps)  # warm-up
    plain, recorded, rec = [], [], None
    for _ in range(args.repeats):
        t = time.perf_counter()
        run_job(model, x, specs, args.eps)
        plain.append(time.perf_counter() - t)
        hook = TrajectoryRecorder(every=1)
        t = time.perf_counter()
        rec = hook.recording(run_job(model, x, specs, args.eps, hook=hook))
        recorded.append(time.perf_counter() - t)
    assert rec is not None
    probs = sum(t.probs.nbytes + t.flips.nbytes for t in rec.traces)
    images = sum(t.images.nbytes for t in rec.traces if t.images is not None)
    print(f"{args.model}, {args.images} scenes, eps {args.eps:g}, {rec.max_step} steps, methods {', '.join(rec.names)}")
    print(f"  without the hook {min(plain):.2f} s, recording every step {min(recorded):.2f} s: "
          f"ratio {min(recorded) / min(plain):.3f}")  # fmt: skip
    print(f"  recording: confidences + flips {probs / 2**20:.2f} MiB, 8-bit images {images / 2**20:.2f} MiB "
          f"(every {rec.image_every} step(s); cap {hook.image_budget / 2**20:.0f} MiB)")  # fmt: skip


if __name__ == "__main__":
    main()
