"""Real models on the CPU (issue 10's figures), measured side by side in one run.

For TResNet-M at 224 and TResNet-L at 448 (random weights in ASL's official container, loaded through
``mlvis.create_model("asl-tresnet-*", checkpoint=...)``), batch 8:

1. raw: one forward + backward w.r.t. the input (BCE on logits, summed), per image; median of ``--repeats``;
2. engine: ``mlvis.attack(model, x, "bce", eps=steps * alpha)`` (MI-FGSM, ``steps`` iterations), timed
   after one warm-up job; the ratio engine / (steps x raw step) is the engine's overhead (goal <= 1.10);
3. fixed costs: one no-grad forward of the batch (the engine's clean pass, its final adversarial pass and
   the 8-bit pass are such forwards), so the ratio can be explained as
   (steps x raw + k x forward) / (steps x raw); the fixed part does not grow with the steps, so a run with
   fewer steps (448 on a shared CPU) also gives the ratio at 25 steps: (25 raw + fixed) / (25 raw).

With ``--gpu`` (only where PyTorch sees CUDA) the same on the GPU with and without bf16 autocast, and the
agreement of the flips between the two.

Run: OMP_NUM_THREADS=2 .venv/bin/python benchmarks/real_models.py [--steps-m 25] [--steps-l 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_model(variant: str, folder: Path, device: str):
    import timm
    import torch

    import mlvis

    torch.manual_seed(0)
    net = timm.create_model(f"tresnet_{variant}", num_classes=80)
    path = folder / f"bench_tresnet_{variant}.pth"
    torch.save({"model": net.state_dict(), "num_classes": 80}, path)  # timm layout: loads without the remap
    return mlvis.create_model(f"asl-tresnet-{variant}", checkpoint=path, device=device)


def raw_step(model, x, target) -> float:
    import torch

    t = time.perf_counter()
    xx = x.clone().requires_grad_(True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xx), target, reduction="sum")
    (grad,) = torch.autograd.grad(loss, xx)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def forward(model, x) -> float:
    import torch

    t = time.perf_counter()
    with torch.no_grad():
        model(x)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def engine(model, x, steps: int, autocast: bool = False):
    import torch

    import mlvis
    from mlvis.attacks.geometry import DEFAULT_ALPHA

    t = time.perf_counter()
    res = mlvis.attack(model, x, "bce", steps * DEFAULT_ALPHA, autocast=autocast)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t, res


def measure(
    variant: str, side: int, steps: int, repeats: int, folder: Path, device: str, batch: int, engine_runs: int = 1
) -> dict:
    import torch

    model = make_model(variant, folder, device)
    x = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        target = (torch.sigmoid(model(x)) < model.threshold).float()
    raw_step(model, x, target)  # warm-up
    engine(model, x[:1], 1)  # warm-up: the engine's one-off probes for this model and shape
    raws, fwds, engines = [], [], []
    for _ in range(repeats):  # interleaved, so a noisy neighbour hits both sides alike
        raws.append(raw_step(model, x, target))
        fwds.append(forward(model, x))
        if len(engines) < engine_runs:
            engines.append(engine(model, x, steps)[0])
        raws.append(raw_step(model, x, target))
    raw, fwd, eng = statistics.median(raws), statistics.median(fwds), min(engines)
    return {
        "model": f"TResNet-{variant.upper()} {side}", "batch": batch, "steps": steps,
        "raw_per_image_s": raw / batch, "raw_step_s": raw, "forward_s": fwd, "engine_s": eng,
        "ratio": eng / (steps * raw), "fixed_s": eng - steps * raw, "fixed_in_forwards": (eng - steps * raw) / fwd,
        "ratio_at_25": (25 * raw + eng - steps * raw) / (25 * raw),
    }  # fmt: skip


def gpu_section(folder: Path, steps: int, batch: int) -> None:
    import numpy as np
    import torch

    for variant, side in (("m", 224), ("l", 448)):
        model = make_model(variant, folder, "cuda")
        x = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(1)).cuda()
        engine(model, x[:1], 1)
        engine(model, x[:1], 1, autocast=True)
        t32, r32 = engine(model, x, steps)
        t16, r16 = engine(model, x, steps, autocast=True)
        f32, f16 = r32.flips[0], r16.flips[0]
        agree = float(np.mean(r32.adv_pred[0] == r16.adv_pred[0])) if hasattr(r32, "adv_pred") else float("nan")
        print(f"GPU TResNet-{variant.upper()} {side} x{batch}, {steps} steps: fp32 {t32:.2f} s, bf16 {t16:.2f} s "
              f"(x{t32 / t16:.2f}); mean flips fp32 {f32.mean():.2f} / bf16 {f16.mean():.2f}; per-image flips equal "
              f"{int((f32 == f16).sum())}/{len(f32)}; label-level agreement {agree:.4f}")  # fmt: skip


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps-m", type=int, default=25, help="MI-FGSM steps for TResNet-M 224 (default 25)")
    ap.add_argument("--steps-l", type=int, default=25, help="MI-FGSM steps for TResNet-L 448 (default 25)")
    ap.add_argument("--repeats", type=int, default=2, help="rounds of (raw, forward, [engine], raw) per model")
    ap.add_argument("--engine-runs", type=int, default=1, help="engine jobs per model (the fastest is kept)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--gpu", action="store_true", help="also the GPU section (fp32 vs bf16 autocast)")
    ap.add_argument("--only", choices=["m", "l"], default=None, help="one model only")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = []
        for variant, side, steps in (("m", 224, args.steps_m), ("l", 448, args.steps_l)):
            if args.only and variant != args.only:
                continue
            rows.append(measure(variant, side, steps, args.repeats, folder, "cpu", args.batch, args.engine_runs))
            r = rows[-1]
            print(f"{r['model']}: raw fwd+bwd {r['raw_per_image_s'] * 1e3:.0f} ms/image ({r['raw_step_s']:.2f} s per "
                  f"batch step), no-grad forward {r['forward_s']:.2f} s; engine {r['steps']} steps "
                  f"{r['engine_s']:.1f} s "
                  f"-> ratio {r['ratio']:.3f} (goal <= 1.10); fixed cost {r['fixed_s']:.2f} s = "
                  f"{r['fixed_in_forwards']:.1f} batch forwards; at 25 steps the ratio would be {r['ratio_at_25']:.3f}",
                  flush=True)  # fmt: skip
        if args.gpu and torch.cuda.is_available():
            gpu_section(folder, max(args.steps_m, 25), args.batch)


if __name__ == "__main__":
    main()
