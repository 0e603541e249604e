"""The measured effect of each difference between ``protocol="paper"`` and ``protocol="authors"``.

docs/decisions.md ("Two protocols and the correlation budget") and docs/results.md ("Two protocols") quote
its output. Not a speed benchmark: a reproduction script, on the shipped demo artifacts.

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/protocol_effects.py`` (about 25 min on one busy core,
most of it the two ML-CW runs; ``--no-ml-cw`` skips them).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

import mlvis
from mlvis.attacks.class_subset import class_masks, correlation_pair, profile_lengths


def changed(masks: np.ndarray, base: np.ndarray) -> list[int]:
    """Per budget, the images whose subset differs from ``base``'s."""
    return [int((masks[k] != base[k]).any(1).sum()) for k in range(len(base))]


def model_effects(name: str) -> None:
    m = mlvis.create_model(name)
    x, _ = mlvis.data.demo_batch(16)
    a = mlvis.attack(m, x, "bce", 0.05)
    b = mlvis.attack(m, x, "bce", 0.05, protocol="authors")
    moved = int((np.abs(a.adv - b.adv).reshape(16, -1).max(1) > 0).sum())
    print(f"{name} clip once, BCE at eps 0.05, 16 scenes: flips change on {int((a.flips != b.flips).sum())}, "
          f"mean {a.flips.mean():.3f} -> {b.flips.mean():.3f}; images that change {moved}", flush=True)  # fmt: skip
    pp, pa = mlvis.profile(m), mlvis.profile(m, protocol="authors")
    print(f"{name} eps_max paper {pp.eps_max} (converged {pp.settings['converged']}), authors {pa.eps_max} "
          f"(converged {pa.settings['converged']})")  # fmt: skip
    print(f"{name} p at eps_max: paper {pp.flip_ratio(pp.eps_max):.4f}, authors 1.0")
    for fr in (0.05, 0.1, 0.2, 0.4, 1.0):
        e, ea = fr * pp.eps_max, fr * pa.eps_max
        floor, trunc = profile_lengths(pp, [e], 24)[0], profile_lengths(pp, [e], 24, rule="int-int")[0]
        theirs = profile_lengths(pa, [ea], 24, rule="int-int")[0]
        print(f"{name} length at {fr:.0%}: E {pp.expected_flips(e):.3f}: floor {floor}, int-int {trunc}; "
              f"authors' profile at {fr:.0%} of its eps_max ({ea:.4f}): E {pa.expected_flips(ea):.3f} -> {theirs}")
    x100, _ = mlvis.data.demo_batch(100)
    with torch.no_grad():
        probs = torch.sigmoid(m(x100)).double().numpy()
    target = (probs < 0.5).astype(np.float64)
    up = mlvis.correlations(m, direction="up")  # the shipped default (fixed-budget) matrices, as quoted
    lengths = profile_lengths(pp, [0.1 * pp.eps_max, 0.2 * pp.eps_max], 24)
    for g in (0.5, 1.0):
        u, d = correlation_pair(up)
        ug, dg = correlation_pair(up, "global")
        base = class_masks(probs, target, lengths, u, d, g)
        raw_z = changed(class_masks(probs, target, lengths, u, d, g, normalise_z=False), base)
        glob = changed(class_masks(probs, target, lengths, ug, dg, g), base)
        both = changed(class_masks(probs, target, lengths, ug, dg, g, normalise_z=False), base)
        print(f"{name} gamma {g}: subsets changed of 100 at 10 % / 20 % (lengths {lengths.tolist()}): "
              f"raw Z {raw_z}, global min-max {glob}, both {both}", flush=True)


def ml_cw_effects() -> None:
    m = mlvis.create_model("demo-asl")
    x, _ = mlvis.data.demo_batch(4)
    for preset in ("fast", "authors"):
        t = time.time()
        r = mlvis.attack(m, x, "ml-cw", 1.0, preset=preset)
        print(f"ml-cw {preset}: flips {r.flips[0].tolist()}, linf {np.round(r.linf[0], 4).tolist()}, "
              f"l2 {np.round(r.l2[0], 3).tolist()}, steps {r.steps[0].tolist()}, {time.time() - t:.0f} s", flush=True)


if __name__ == "__main__":
    for model_name in ("demo-asl", "demo-q2l"):
        model_effects(model_name)
    if "--no-ml-cw" not in sys.argv:
        ml_cw_effects()
