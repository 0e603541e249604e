"""Peak memory of a streaming run: 1,000 images against 100 (goal: within 10 %), demo model.

Each measurement is a fresh Python process (its peak resident set size, ``ru_maxrss``): a demo-asl
BCE attack at two budgets on demo scenes, through ``mlvis.runs.run_chunks`` in chunks of ``--chunk``
images with the 8-bit adversarial images saved as PNGs, against the same attack held in memory as
one ``AttackResult`` (``mlvis.attack`` on every image at once), for 100 and for 1,000 images.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/run_memory.py [--chunk 50]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

STREAM = """
import resource, sys
from mlvis.runs import AttackChunks, DemoImages, make_manifest, run_chunks
n, chunk, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
compute = AttackChunks("demo-asl", DemoImages(n), ("bce",), (0.002, 0.004), save_images=True)
run = run_chunks(out, make_manifest("memory", seed=0), n, chunk, compute)
flips = sum(int(a["bce.flips"].sum()) for _, _, a in run.chunks(["bce.flips"]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flips)
"""

IN_MEMORY = """
import resource, sys
import mlvis
n = int(sys.argv[1])
x, _ = mlvis.data.demo_batch(n)
res = mlvis.attack(mlvis.create_model("demo-asl"), x, "bce", [0.002, 0.004])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, int(res.flips.sum()), res.psnr.shape)
"""


def peak_mib(code: str, *args: str) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    kib, rest = out.stdout.split()[0], " ".join(out.stdout.split()[1:])
    return int(kib) / 1024, rest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--sizes", default="100,1000")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlvis-mem-") as tmp:
        for n in sizes:
            stream, s_flips = peak_mib(STREAM, str(n), str(args.chunk), str(Path(tmp) / f"run{n}"))
            memory, m_flips = peak_mib(IN_MEMORY, str(n))
            rows.append((n, stream, memory))
            print(f"{n:>5} images: streaming run {stream:7.0f} MiB (flips {s_flips}), in memory {memory:7.0f} MiB")
    (n0, s0, m0), (n1, s1, m1) = rows[0], rows[-1]
    print(f"\n{n1} vs {n0} images: streaming {s1 / s0:.3f}x, in memory {m1 / m0:.3f}x")
    print(f"goal: streaming within 10 %: {'met' if s1 / s0 <= 1.10 else 'NOT met'}")


if __name__ == "__main__":
    main()
