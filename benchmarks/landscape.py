"""Correlation-matrix extraction speed (Algorithm 1), ratios measured side by side in one run.

The work is C x n single-label attacks of n_steps(eps) MI-FGSM steps each. Three timings per model:

1. limit: C * n * steps image-passes of forward + backward w.r.t. the input, in batches of the
   engine's chunk size (128 rows on a CPU), i.e. the compute alone; goal: extraction <= 1.2x it;
2. mlvis.correlations: the whole extraction as one batched job;
3. loop: the paper's shape, one attack per (label, image) at batch 1; timed on ``--loop`` pairs and
   scaled to C * n (its cost is linear in the pairs); goal: extraction >= 1.5x faster on a CPU, 30x on a GPU.

Run: .venv/bin/python benchmarks/landscape.py [--images 20] [--loop 24] [--models demo-asl,demo-q2l]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import mlvis
from mlvis.attacks import AttackSpec, n_steps, run_job


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def fwd_bwd(model, x, reps: int = 5) -> float:
    ts = []
    for _ in range(reps + 2):
        xx = x.clone().requires_grad_(True)
        sync()
        t = time.perf_counter()
        torch.autograd.grad(model(xx).sum(), xx)
        sync()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts[2:])


def bench(name: str, device: str, images: int, loop: int, eps: float) -> dict:
    model = mlvis.create_model(name, device=device)
    x, _ = mlvis.data.demo_batch(images)
    x = x.to(device)
    c = len(model.labels)
    steps = n_steps(eps, mlvis.attacks.DEFAULT_ALPHA)
    rows = c * images
    chunk = 128 if device == "cpu" else rows
    mlvis.correlations(model, x[:2], eps=eps, cache=False)  # warm-up
    # 1. the compute limit: full chunks plus the remainder
    full, rest = divmod(rows, chunk)
    xb = x.repeat((chunk + images - 1) // images, 1, 1, 1)[:chunk]
    t_chunk = fwd_bwd(model, xb)
    t_rest = fwd_bwd(model, xb[:rest]) if rest else 0.0
    limit = steps * (full * t_chunk + t_rest)
    # 2. the extraction
    sync()
    t = time.perf_counter()
    cm = mlvis.correlations(model, x, eps=eps, cache=False)
    sync()
    t_ext = time.perf_counter() - t
    # 3. one attack per (label, image), batch 1
    rng = np.random.default_rng(0)
    pairs = [(int(rng.integers(c)), int(rng.integers(images))) for _ in range(loop)]
    sync()
    t = time.perf_counter()
    for lab, i in pairs:
        run_job(model, x[i : i + 1], [AttackSpec("single-label", {"labels": [lab]})], eps)
    sync()
    t_loop = (time.perf_counter() - t) * rows / loop
    return {
        "model": name,
        "device": device,
        "rows": rows,
        "steps": steps,
        "limit_s": limit,
        "extraction_s": t_ext,
        "loop_s_scaled": t_loop,
        "vs_limit": t_ext / limit,
        "speedup_vs_loop": t_loop / t_ext,
        "mean_attackability": float(np.nanmean(cm.attackability)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--loop", type=int, default=24)
    ap.add_argument("--eps", type=float, default=0.005)
    ap.add_argument("--models", default="demo-asl,demo-q2l")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    for name in args.models.split(","):
        r = bench(name, args.device, args.images, args.loop, args.eps)
        print(
            f"{r['model']:<9} {r['rows']} single-label attacks x {r['steps']} steps: limit {r['limit_s']:.1f} s, "
            f"extraction {r['extraction_s']:.1f} s ({r['vs_limit']:.2f}x the limit; goal <= 1.2), "
            f"loop {r['loop_s_scaled']:.1f} s (extraction {r['speedup_vs_loop']:.2f}x faster; goal >= 1.5 on CPU)"
        )


if __name__ == "__main__":
    main()
