"""Scene generation speed on one core: images per second (goal: >= 1,000).

Run: .venv/bin/python benchmarks/data.py
"""

from __future__ import annotations

import time

from mlvis.data import world


def main(n: int = 4000) -> None:
    w = world(0)
    w.batch_uint8("train", range(50))  # warm the mask caches
    rates = []
    for rep in range(3):
        t = time.perf_counter()
        w.batch_uint8("train", range(rep * n, (rep + 1) * n))
        rates.append(n / (time.perf_counter() - t))
    best, median = max(rates), sorted(rates)[1]
    print(f"scene generation, one process: median {median:,.0f} images/s (best {best:,.0f}) over 3 x {n} scenes")
    print(f"goal >= 1,000 images/s: {'met' if median >= 1000 else 'NOT met'}")


if __name__ == "__main__":
    main()
