"""Cost estimates against measured time, for every page's default job (issue 13 §4: within ±30 %).

For each page that shows a cost (Attack Lab, Histograms, Landscape, Profiles, and the Budget sweep's four
tabs) this runs the page's default job once, as the page's glue runs it, and prints side by side:

- the page's estimate: image-steps (the engine's dry run) x the machine's seconds per image-step
  (``mlvis.app.jobs.step_seconds``: forward + backward at batch 16, this thread's CPU time), and the
  time a person waits now, that estimate x the machine's busy factor (``jobs.busy_factor``, measured
  just before the job);
- the job's measured CPU time (this thread) and wall time;
- the ratios measured / estimated, CPU against the machine's speed and wall against the shown time.

On a machine shared with other work the wall time depends on the load, so both ratios are printed; the CPU
ratio checks the estimate's formula, the wall ratio what the page says. Each job runs once after a warm-up
(the first attack of the process pays one-off costs no estimate includes). The artifacts cache is a fresh
temporary folder, so the profile is measured, not served.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/estimates.py [--only lab,sweep.table] [--images N]
(``--images`` overrides every job's image count, for a quicker look; the default is each page's own.)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLVIS_CACHE", tempfile.mkdtemp(prefix="mlvis-estimates-"))

PAGES = ("lab", "histograms", "landscape", "profile", "sweep.table", "sweep.targets", "sweep.bce_linear", "sweep.q")


def jobs_for(model_name: str, images: int | None):
    """``{page: (estimate, compute)}`` for each page's default settings (``images`` overrides the count)."""
    from mlvis import recipe as rc
    from mlvis.app import cache, jobs, lab
    from mlvis.app import histograms_page as hp
    from mlvis.app import landscape_page as lp
    from mlvis.app import profiles_page as pp
    from mlvis.app import sweep_page as sp
    from mlvis.app.page import DIMS

    def n(settings):
        return dataclasses.replace(settings, images=images) if images else settings

    model = cache.load_model(model_name)
    eps_max = cache.artifact(model_name, "profile").eps_max
    recipe = rc.Recipe(model_name, lab.DEFAULT_METHODS, lab.DEFAULT_EPS)
    lab_images = rc.demo_images(recipe.images, model.spec.input_size)
    h, ls, ps = n(hp.HistogramSettings()), n(lp.LandscapeSettings()), n(pp.ProfileSettings())
    sw, ts, bs, qs = n(sp.SweepSettings()), n(sp.TargetsSettings()), n(sp.BceLinearSettings()), n(sp.QSweepSettings())

    def landscape_cost(count):
        return jobs.estimate(model_name, count.total, "landscape", calls=count.calls)

    return {
        "lab": (lambda: lab.lab_cost(model_name, recipe, len(lab_images), DIMS),
                lambda: lab.run_lab(model, recipe, lab_images, ("scene",))),
        "histograms": (lambda: hp.histogram_cost(model_name, h), lambda: hp.compute_histograms(model_name, h)),
        "landscape": (lambda: landscape_cost(lp.landscape_steps(model_name, ls)),
                      lambda: lp.compute_landscape(model_name, ls)),
        "profile": (lambda: pp.profile_cost(model_name, ps), lambda: pp.compute_profile(model_name, ps)),
        "sweep.table": (lambda: sp.sweep_cost(model_name, sw, eps_max), lambda: sp.compute_sweep(model_name, sw)),
        "sweep.targets": (lambda: jobs.estimate(model_name, sp.targets_steps(ts), "sweep.targets"),
                          lambda: sp.compute_targets(model_name, ts)),
        "sweep.bce_linear": (lambda: jobs.estimate(model_name, sp.bce_linear_steps(bs), "sweep.bce_linear"),
                             lambda: sp.compute_bce_linear(model_name, bs)),
        "sweep.q": (lambda: jobs.estimate(model_name, sp.q_sweep_steps(qs, eps_max), "sweep.q"),
                    lambda: sp.compute_q_sweep(model_name, qs)),
    }  # fmt: skip


def main() -> int:
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="demo-asl")
    parser.add_argument("--only", default=",".join(PAGES), help="comma-separated pages: " + ", ".join(PAGES))
    parser.add_argument("--images", type=int, default=None, help="override every job's image count")
    args = parser.parse_args()

    import torch

    import mlvis
    from mlvis.app import cache, jobs

    model = cache.load_model(args.model)
    mlvis.attack(model, mlvis.data.demo_batch(2)[0], "bce", 0.02)  # warm-up: one-off costs of the first attack
    table = jobs_for(args.model, args.images)
    speed = jobs.engine_speed(args.model)
    print(f"model {args.model}, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores; CPU ms per image-step: {jobs.step_seconds(args.model) * 1e3:.2f} at "
          f"batch 16, engine {speed.step_s * 1e3:.2f} + {speed.call_s * 1e3:.2f} per call")  # fmt: skip
    head = (f"{'page':<17} {'image-steps':>11} {'est s':>7} {'busy':>5} {'est wall':>8} | {'CPU s':>7} {'wall s':>7}"
            f" | {'CPU/est':>7} {'wall/est':>8}")  # fmt: skip
    print(head)
    print("-" * len(head))
    ratios = []
    for page in [p.strip() for p in args.only.split(",") if p.strip()]:
        if page not in table:
            parser.error(f"no page {page!r}; choose from {', '.join(PAGES)}")
        cost_fn, compute = table[page]
        jobs._BUSY["at"] = -float("inf")  # a fresh load probe for each job
        cost = cost_fn()
        wall, cpu = time.perf_counter(), time.thread_time()
        compute()
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        r_cpu, r_wall = cpu / cost.seconds, wall / cost.wall_seconds
        ratios.append((page, r_cpu, r_wall))
        print(f"{page:<17} {cost.image_steps:>11,} {cost.seconds:>7.2f} {cost.busy:>5.2f} {cost.wall_seconds:>8.2f} | "
              f"{cpu:>7.2f} {wall:>7.2f} | {r_cpu:>7.2f} {r_wall:>8.2f}", flush=True)  # fmt: skip
    inside = [p for p, r, _ in ratios if 0.7 <= r <= 1.3]
    print(f"\nCPU ratio within ±30 %: {len(inside)} of {len(ratios)} ({', '.join(inside)})")
    inside_w = [p for p, _, r in ratios if 0.7 <= r <= 1.3]
    print(f"wall ratio within ±30 %: {len(inside_w)} of {len(ratios)} ({', '.join(inside_w)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
