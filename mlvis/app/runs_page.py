"""Glue of the Runs page: the run directories under ``$MLVIS_RUNS_DIR`` (default ``./runs``), their progress,
and the tables and figures of their results (a finished run's, or an unfinished run's finished chunks,
labelled "n of N images"). Reads run directories only; computes no attack."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

ENV = "MLVIS_RUNS_DIR"
REFRESH_S = 5.0  # how often the page re-reads a running run's directory


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


def result(name: str, folder: Path | None = None, partial: bool = False):
    """The run's result (:func:`mlvis.analysis.chunked.result_from_run`), the finished chunks' when ``partial``."""
    from mlvis.analysis.chunked import result_from_run

    return result_from_run(open_run(name, folder), partial=partial)


def caption(res, total: int) -> str:
    """How many images ``res`` covers: ``"100 images"`` or ``"40 of 100 images (the run is not finished)"``."""
    from mlvis.analysis.chunked import images_in

    n = images_in(res)
    return f"{n} of {total} images (the run is not finished)" if n < total else f"{n} images"


def figure(res, text: str = ""):
    """The result's figure (:func:`mlvis.viz.runs.run_figure`), ``text`` in its title."""
    from mlvis.viz.runs import run_figure

    return run_figure(res, text)
