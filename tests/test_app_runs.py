"""AppTest of the Runs page: it lists the run directories under $MLVIS_RUNS_DIR, shows a stopped run's
progress and a finished evaluate run's table (the one computed from the run directory), and opens
nothing outside that folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import mlvis
from mlvis.analysis.chunked import profile_from_run, profile_run
from mlvis.analysis.evaluation import evaluate_run, table_from_run
from mlvis.app import runs_page
from mlvis.runs import CHUNKS, DemoImages, chunk_name, make_manifest, run_chunks
from mlvis.store import StoreError

APP = Path(__file__).resolve().parents[1] / "app.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    evaluate_run(mlvis.create_model("demo-asl"), DemoImages(4), folder / "eval-demo", ["bce", "slam"], [0.05, 0.1],
                 chunk_size=2)  # fmt: skip
    # a stopped run: 2 of its 3 chunks written
    manifest = make_manifest("evaluate", model="demo-asl")
    run_chunks(folder / "stopped", manifest, 2, 1, lambda s, e: {"x": np.ones(e - s)})
    m = (folder / "stopped" / "manifest.json").read_text().replace('"num_items": 2', '"num_items": 3')
    (folder / "stopped" / "manifest.json").write_text(m)
    (folder / "not-a-run").mkdir()
    # an unfinished evaluate run: 2 of its 3 one-image chunks written
    evaluate_run(mlvis.create_model("demo-asl"), DemoImages(3), folder / "partial", ["bce", "slam"], [0.05, 0.1],
                 chunk_size=1)  # fmt: skip
    (folder / "partial" / CHUNKS / chunk_name(2)).unlink()
    profile_run(mlvis.create_model("demo-asl"), DemoImages(2), folder / "profile", interval=2, max_eps=0.03,
                chunk_size=1, round_steps=8)  # fmt: skip
    return folder


def test_the_glue_lists_runs_and_stays_in_its_folder(runs, tmp_path):
    rows = {r.name: r for r in runs_page.list_runs(runs)}
    assert set(rows) == {"eval-demo", "stopped", "partial", "profile"}
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
    assert list(frame["run"]) == ["eval-demo", "partial", "profile", "stopped"]
    prof = runs_page.status("profile", runs)  # a staged run: every round's chunks, one image each
    assert prof.finished and prof.done == prof.total == 2 * int(prof.stage.split()[1])
    assert list(frame["chunks"]) == ["2/2", "2/3", f"{prof.done}/{prof.total}", "2/3"]
    want = table_from_run(runs / "eval-demo").to_markdown()
    assert any(m.value == want for m in at.markdown)  # the finished run's table, from its directory
    at.selectbox(key="runs_open").set_value("stopped").run()
    assert not at.exception
    assert "2 of 3 chunks" in at.get("progress")[0].proto.text
    assert any("not finished" in i.value for i in at.info)
    assert not any(m.value == want for m in at.markdown)


def test_an_unfinished_run_shows_its_finished_chunks_labelled_and_refreshes_itself(runs, monkeypatch):
    monkeypatch.setenv(runs_page.ENV, str(runs))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("pages/runs.py").run()
    at.selectbox(key="runs_open").set_value("partial").run()
    assert not at.exception
    want = table_from_run(runs / "partial", partial=True)
    assert want.flips.shape[-1] == 2
    assert any(m.value == want.to_markdown() for m in at.markdown)
    assert any("2 of 3 images (the run is not finished)" in h.value for h in at.subheader)
    assert any(f"every {runs_page.REFRESH_S:g} s" in i.value for i in at.info)
    chart = at.get("plotly_chart")[0].proto.spec
    assert "2 of 3 images" in chart and "flips vs budget" in chart
    # the page re-reads the folder: the last chunk written by the run, the next view shows the finished table
    evaluate_run(mlvis.create_model("demo-asl"), DemoImages(3), runs / "partial", ["bce", "slam"], [0.05, 0.1],
                 chunk_size=1)  # fmt: skip
    at.run()
    whole = table_from_run(runs / "partial")
    assert any(m.value == whole.to_markdown() for m in at.markdown)
    assert any("(3 images)" in h.value for h in at.subheader) and not any("not finished" in i.value for i in at.info)


def test_a_profile_run_shows_its_profile_and_figure(runs, monkeypatch):
    monkeypatch.setenv(runs_page.ENV, str(runs))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("pages/runs.py").run()
    at.selectbox(key="runs_open").set_value("profile").run()
    assert not at.exception
    prof = profile_from_run(runs / "profile")
    assert any(f"{prof.eps_max:.4g}" in m.value for m in at.markdown)
    assert runs_page.status("profile", runs).stage in at.get("progress")[0].proto.text  # "round 4 of at most 10"
    assert "flip profile" in at.get("plotly_chart")[0].proto.spec


def test_the_sidebar_bf16_switch_shows_on_every_page_and_reaches_the_labs_job(monkeypatch):
    from mlvis import recipe as rc
    from mlvis.app import lab, state

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.sidebar.toggle(key=state.BF16).value
    assert not any("bf16" in c.value for c in at.sidebar.caption)
    on = AppTest.from_file(str(APP), default_timeout=120)
    on.session_state[state.BF16] = True  # the switch turned on (AppTest reads the sidebar of a first run)
    on.run()
    assert not on.exception and on.sidebar.toggle(key=state.BF16).value
    assert any("Lab: bf16 autocast" in c.value for c in on.sidebar.caption)  # app.py draws it for every page
    model = mlvis.create_model("demo-asl")
    recipe = rc.Recipe("demo-asl", ("bce",), 0.002, rc.ImageSource(start=0, count=1))
    images = rc.demo_images(recipe.images, model.spec.input_size)
    run = lab.run_lab(model, recipe, images, ("BCE",), autocast=True)
    assert run.results[0].config["autocast"] is True
