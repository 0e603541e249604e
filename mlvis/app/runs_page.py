"""Glue of the Runs page: the run directories under ``$MLVIS_RUNS_DIR`` (default ``./runs``), their progress
and, for a finished evaluate run, its table. Reads run directories only; computes nothing."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

ENV = "MLVIS_RUNS_DIR"


def runs_dir() -> Path:
    """The folder the page lists run directories from (``$MLVIS_RUNS_DIR`` or ``./runs``)."""
    return Path(os.environ.get(ENV) or "runs")


@dataclasses.dataclass(frozen=True)
class RunRow:
    """One run directory as the page lists it."""

    name: str
    kind: str
    model: str
    done: int
    total: int
    images: int
    error: str | None

    @property
    def state(self) -> str:
        if self.error:
            return "failed"
        return "finished" if self.done >= self.total else "running or stopped"


def list_runs(folder: Path | None = None) -> list[RunRow]:
    """Every run directory directly inside ``folder`` (sub-folders with a manifest), by name."""
    from mlvis.runs import MANIFEST, RunError, run_status

    base = folder if folder is not None else runs_dir()
    if not base.is_dir():
        return []
    rows = []
    for p in sorted(base.iterdir()):
        if not p.is_dir() or p.is_symlink() or not (p / MANIFEST).is_file():
            continue
        try:
            st = run_status(open_run(p.name, base))
        except (RunError, ValueError):
            continue
        model = st.manifest.get("model")
        name = model.get("name", "") if isinstance(model, dict) else str(model or "")
        rows.append(RunRow(p.name, str(st.manifest.get("kind", "")), name, st.done, st.total, st.num_items, st.error))
    return rows


def open_run(name: str, folder: Path | None = None) -> Path:
    """The run directory ``name`` inside the runs folder, refused when it leaves it (``mlvis.store.confined``)."""
    from mlvis.store import confined

    return confined(folder if folder is not None else runs_dir(), name)


def status(name: str, folder: Path | None = None):
    from mlvis.runs import run_status

    return run_status(open_run(name, folder))


def table(name: str, folder: Path | None = None):
    """The evaluation table of a finished evaluate run (see :func:`mlvis.analysis.evaluation.table_from_run`)."""
    from mlvis.analysis.evaluation import table_from_run

    return table_from_run(open_run(name, folder))
