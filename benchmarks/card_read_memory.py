"""Peak memory of reading a large checkpoint through a card (opened once, without following links) against
reading it straight with ``torch.load(mmap=True)`` / ``safetensors.load_file``: the goal is the same memory
(ratio about 1.0), far below a read that copies the weights (``torch.load`` without ``mmap``).

Each measurement is a fresh Python process: its resident memory (``VmRSS``, Linux) grown by the read, the
weights held (a memory-mapped file's pages count only once touched; a sum over one tensor touches its pages).
The checkpoint is ``--mb`` megabytes of float32 in 16 tensors, written once as ``.pth`` and as
``.safetensors`` into a temporary folder (deleted at the end).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/card_read_memory.py [--mb 256]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

READ = """
import sys
from pathlib import Path
import torch
from safetensors.torch import load_file
from mlvis.models.loading import read_checkpoint, reading_inside

def rss_kb():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))

how, path = sys.argv[1], Path(sys.argv[2])
before = rss_kb()
if how == "card":
    with reading_inside(path.parent):
        sd = read_checkpoint(path)
elif how == "mmap":
    sd = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, weights_only=True, mmap=True)
else:
    sd = torch.load(path, weights_only=True)
read = rss_kb() - before
total = float(sd["layer3.weight"].sum())  # touches one sixteenth of the weights
print(read, rss_kb() - before, total)
"""


def grown_mb(how: str, path: Path) -> tuple[float, float]:
    """Resident memory grown by the read, and after touching one tensor (MB)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    out = subprocess.run([sys.executable, "-c", READ, how, str(path)], env=env, check=True, capture_output=True,
                         text=True).stdout.split()  # fmt: skip
    return int(out[0]) / 1024, int(out[1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=256, help="size of the checkpoint in MB")
    args = ap.parse_args()
    import torch
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        n = args.mb * 2**20 // 4 // 16
        sd = {f"layer{i}.weight": torch.full((n,), float(i)) for i in range(16)}
        pth, st = Path(tmp) / "big.pth", Path(tmp) / "big.safetensors"
        torch.save(sd, pth)
        save_file(sd, str(st))
        del sd
        print(f"checkpoint: {args.mb} MB; resident memory grown by the read / after touching one tensor of 16")
        for path in (pth, st):
            card, direct = grown_mb("card", path), grown_mb("mmap", path)
            line = f"{path.suffix:13s} card {card[0]:6.1f} / {card[1]:6.1f} MB   direct {direct[0]:6.1f} / "
            line += f"{direct[1]:6.1f} MB   card / direct (touched) {card[1] / max(direct[1], 0.1):.2f}"
            if path.suffix == ".pth":
                copy = grown_mb("copy", path)
                line += f"   copying read {copy[0]:.0f} MB: card / copying {card[0] / max(copy[0], 0.1):.3f}"
            print(line)


if __name__ == "__main__":
    main()
