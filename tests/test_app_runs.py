"""AppTest of the Runs page: it lists the run directories under $MLVIS_RUNS_DIR, shows a stopped run's
progress and a finished evaluate run's table (the one computed from the run directory), and opens
nothing outside that folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mlvis.analysis.evaluation import evaluate_run, table_from_run
from mlvis.app import runs_page
from mlvis.runs import DemoImages, make_manifest, run_chunks
from mlvis.store import StoreError

APP = Path(__file__).resolve().parents[1] / "app.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import mlvis

    folder = tmp_path_factory.mktemp("runs")
    evaluate_run(mlvis.create_model("demo-asl"), DemoImages(4), folder / "eval-demo", ["bce", "slam"], [0.05, 0.1],
                 chunk_size=2)  # fmt: skip
    # a stopped run: 2 of its 3 chunks written
    manifest = make_manifest("evaluate", model="demo-asl")
    run_chunks(folder / "stopped", manifest, 2, 1, lambda s, e: {"x": np.ones(e - s)})
    m = (folder / "stopped" / "manifest.json").read_text().replace('"num_items": 2', '"num_items": 3')
    (folder / "stopped" / "manifest.json").write_text(m)
    (folder / "not-a-run").mkdir()
    return folder


def test_the_glue_lists_runs_and_stays_in_its_folder(runs, tmp_path):
    rows = {r.name: r for r in runs_page.list_runs(runs)}
    assert set(rows) == {"eval-demo", "stopped"}
    assert (rows["eval-demo"].done, rows["eval-demo"].total, rows["eval-demo"].state) == (2, 2, "finished")
    assert rows["stopped"].state == "running or stopped" and rows["stopped"].done == 2 < rows["stopped"].total
    (runs / "escape").symlink_to(tmp_path, target_is_directory=True)
    for bad in ("../x", "/etc", "escape"):
        with pytest.raises(StoreError):
            runs_page.open_run(bad, runs)
    assert "escape" not in {r.name for r in runs_page.list_runs(runs)}
    (runs / "escape").unlink()


def test_the_runs_page_shows_progress_and_the_table(runs, monkeypatch):
    monkeypatch.setenv(runs_page.ENV, str(runs))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    frame = at.dataframe[0].value
    assert list(frame["run"]) == ["eval-demo", "stopped"] and list(frame["chunks"]) == ["2/2", "2/3"]
    want = table_from_run(runs / "eval-demo").to_markdown()
    assert any(m.value == want for m in at.markdown)  # the finished run's table, from its directory
    at.selectbox(key="runs_open").set_value("stopped").run()
    assert not at.exception
    assert "2 of 3 chunks" in at.get("progress")[0].proto.text
    assert any("not finished" in i.value for i in at.info)
    assert not any(m.value == want for m in at.markdown)
