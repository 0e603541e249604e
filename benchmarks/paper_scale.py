"""The paper-scale plan's numbers: image-steps of a COCO val sweep on TResNet-L 448, and their cost here.

Sweep: 5,000 COCO val images x 7 budgets x 6 methods (BCE, SLAM, random subset, CLASS gamma 0 / 0.5 / 1)
on TResNet-L at 448 x 448, budgets = {5, 10, 20, 40, 60, 80, 100} % of the ASL MS-COCO eps_max = 0.031
(Table IV: 0.001 ... 0.031), the engine's step rule n = max(1, floor(eps / alpha + 1e-9)), alpha = 1/2560.
The engine runs BCE once to the largest budget with a snapshot per budget (eps-independent loss), and
every other method once per budget (SLAM's p and the subsets depend on eps).

Measured: seconds per image-step (one forward + backward with respect to the input, the attack loop's
unit of work) of timm's ``tresnet_l`` with random weights and 80 outputs, at 448 x 448, batch ``--batch``,
on this machine's CPU threads (and on a GPU with ``--device cuda``, where one is present).

Run: .venv/bin/python benchmarks/paper_scale.py [--batch 2 --steps 3 --threads 2 --device cpu]
"""

from __future__ import annotations

import argparse
import time

from mlvis.attacks.geometry import DEFAULT_ALPHA, n_steps

EPS_MAX = 0.031  # ASL TResNet-L on MS-COCO, Table IV's largest budget
FRACTIONS = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)
METHODS = ("bce", "slam", "random subset", "class gamma=0", "class gamma=0.5", "class gamma=1")
IMAGES = 5000


def image_steps_per_image() -> tuple[list[int], int, int]:
    """Steps per budget, the engine's image-steps per image for the six methods, and without sharing."""
    steps = [n_steps(f * EPS_MAX, DEFAULT_ALPHA) for f in FRACTIONS]
    shared = max(steps) + (len(METHODS) - 1) * sum(steps)  # BCE: one trajectory; the rest: one per budget
    return steps, shared, len(METHODS) * sum(steps)


def seconds_per_image_step(batch: int, steps: int, device: str) -> float:
    import timm
    import torch

    torch.manual_seed(0)
    net = timm.create_model("tresnet_l", pretrained=False, num_classes=80).to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    x = torch.rand(batch, 3, 448, 448, device=device)

    def step() -> None:
        xi = x.clone().requires_grad_(True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xi), torch.zeros(batch, 80, device=device))
        loss.backward()
        if device != "cpu":
            torch.cuda.synchronize()

    step()  # warm-up (allocations, kernel selection)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / (steps * batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    steps, shared, unshared = image_steps_per_image()
    total = IMAGES * shared
    print(f"budgets {[round(f * EPS_MAX, 5) for f in FRACTIONS]} -> steps {steps} (sum {sum(steps)})")
    print(f"image-steps per image: {shared} with BCE's shared trajectory ({unshared} without)")
    print(f"{IMAGES} images: {total:,} image-steps ({total / 1e6:.2f} M)")
    sec = seconds_per_image_step(args.batch, args.steps, args.device)
    where = f"{args.device}, {args.threads} thread(s)" if args.device == "cpu" else args.device
    print(f"TResNet-L 448, batch {args.batch}: {sec:.3f} s per image-step ({1 / sec:.2f} image-steps/s) on {where}")
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)
    print(f"peak resident memory of this process: {peak:.2f} GiB")
    hours = total * sec / 3600
    print(f"the sweep at that speed: {hours:,.0f} hours on this device ({hours * args.threads:,.0f} core-hours)")


if __name__ == "__main__":
    main()
