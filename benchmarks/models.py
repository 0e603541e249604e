"""Demo-model speed: forward + backward w.r.t. the input, batch 100 at 64x64, against torchvision's
resnet18 with 20 outputs, measured side by side (interleaved) in one run. Goal: <= 0.5x resnet18.

Run: .venv/bin/python benchmarks/models.py
"""

from __future__ import annotations

import statistics
import time

import torch
import torchvision

import mlvis


def fwd_bwd_input(model: torch.nn.Module, x: torch.Tensor) -> float:
    xx = x.clone().requires_grad_(True)
    t = time.perf_counter()
    model(xx).sum().backward()
    return time.perf_counter() - t


def main(batch: int = 100, reps: int = 15) -> None:
    torch.manual_seed(0)
    x = torch.rand(batch, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    resnet = torchvision.models.resnet18(num_classes=20).eval().requires_grad_(False)
    resnet = resnet.to(memory_format=torch.channels_last)
    models = {"resnet18": resnet} | {n: mlvis.create_model(n, device="cpu") for n in mlvis.list_models("demo-*")}
    times: dict[str, list[float]] = {n: [] for n in models}
    for m in models.values():  # warm-up
        fwd_bwd_input(m, x)
    for _ in range(reps):  # interleaved, so machine noise hits every model alike
        for n, m in models.items():
            times[n].append(fwd_bwd_input(m, x))
    med = {n: statistics.median(t) for n, t in times.items()}
    threads = torch.get_num_threads()
    print(f"forward+backward w.r.t. the input, batch {batch}, 64x64, {threads} threads, median of {reps}")
    for n, t in med.items():
        params = sum(p.numel() for p in models[n].parameters())
        ratio = t / med["resnet18"]
        goal = "" if n == "resnet18" else f"  ratio {ratio:.2f} ({'met' if ratio <= 0.5 else 'NOT met'}: goal <= 0.50)"
        print(f"  {n:<10} {t * 1e3:7.1f} ms  {params / 1e6:5.2f} M params{goal}")


if __name__ == "__main__":
    main()
