"""AppTest of the Attack Lab's imperceptibility audit (issue 13): level histogram, blink and loupe, the semantic
detectability check with its sentences, and the slide-ready downloads. Expected values come from the library."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from apptools import chart_specs, plotly_array
from PIL import Image
from streamlit.testing.v1 import AppTest

import mlvis
from mlvis.analysis.coherence import CooccurrenceRules
from mlvis.app import cooccurrence, lab
from mlvis.viz.audit import common_factor, level_counts

APP = Path(__file__).resolve().parents[1] / "app.py"
LAB = "pages/attack_lab.py"

pytestmark = pytest.mark.usefixtures("fresh_caches")


@pytest.fixture(scope="module")
def lab_at():
    at = AppTest.from_file(str(APP), default_timeout=180).run()
    at.switch_page(LAB)
    return at.run()


def lab_run(at: AppTest) -> lab.LabRun:
    results = at.session_state[f"{lab.SECTION}._results"]
    return results[next(reversed(results))]["result"]


def test_the_shipped_cooccurrence_table_is_the_demo_worlds():
    stats = mlvis.data.scene_statistics(cooccurrence.SPLIT, cooccurrence.N)  # about 40 s
    np.testing.assert_array_equal(cooccurrence.statistics().cooccurrence, stats.cooccurrence)
    want = CooccurrenceRules.from_statistics(stats)
    np.testing.assert_array_equal(cooccurrence.demo_rules().exclusions, want.exclusions)


def test_the_audit_panel_shows_levels_blink_loupe_and_the_semantic_check(lab_at):
    at = lab_at
    assert not at.exception, at.exception
    run = lab_run(at)
    clean = run.results[0].clean[0]
    levels = next(f for f in chart_specs(at) if (f["data"][0].get("meta") or {}).get("kind") == "levels")
    assert [t["meta"]["method"] for t in levels["data"]] == list(run.methods)
    for t, r in zip(levels["data"], run.results):
        counts = level_counts(clean, r.adv_8bit[0, 0])
        np.testing.assert_array_equal(plotly_array(t["y"]), counts[: len(plotly_array(t["y"]))])
    assert any("mlvis-blink" in h.proto.body for h in at.get("html"))
    factor = common_factor(clean, [r.adv[0, 0] for r in run.results])
    assert any(f"× {factor:g} (stated once" in c.value for c in at.caption)
    table = next(d.value for d in at.dataframe if "newly flagged" in d.value.columns)
    rules = cooccurrence.demo_rules()
    assert table["method"].tolist() == list(run.methods)
    for r, (_, row) in zip(run.results, table.iterrows()):
        s = rules.compare(r.clean_pred, r.adv_pred[0]).summary()
        assert row["implausible flips"] == s["implausible flips"] and row["flips"] == int(r.flips[0].sum())
        assert row["coherence adversarial"] == pytest.approx(s["coherence adversarial"])
    text = " ".join(m.value for m in at.markdown)
    for method, sentences in lab.new_violations(run, rules, 0).items():
        assert all(sent in text for sent in sentences)
        if not sentences:
            assert f"**{method}** on this image breaks no co-occurrence rule" in text


def test_the_new_violations_are_the_rules_the_attack_broke():
    labels = list(mlvis.data.LABELS)
    rules = cooccurrence.demo_rules()
    i, j = (int(v) for v in np.argwhere(rules.exclusions)[0])  # a pair that never meets

    class R:  # the two fields new_violations reads, for a constructed prediction
        name = "X"
        clean_pred = np.zeros((1, len(labels)), bool)
        adv_pred = np.zeros((1, 1, len(labels)), bool)

    R.clean_pred[0, i] = True
    R.adv_pred[0, 0, [i, j]] = True
    run = lab.LabRun(recipe=None, results=(R,), names=("a",))
    (sentences,) = lab.new_violations(run, rules, 0).values()
    assert any(labels[i] in s and labels[j] in s and "never appear together" in s for s in sentences)


def test_slides_are_upscaled_png_and_svg_per_method(lab_at):
    run = lab_run(lab_at)
    order, _ = lab.label_states(run, 0)
    factor = common_factor(run.results[0].clean[0], [r.adv[0, 0] for r in run.results])
    for k, r in enumerate(run.results):
        png = Image.open(io.BytesIO(lab.slide_bytes(run, k, 0, factor, order, "png")))
        assert png.width > 6 * 3 * r.clean.shape[-1]  # three tiles enlarged x6 and the bars
        svg = lab.slide_bytes(run, k, 0, factor, order, "svg").decode()
        assert svg.startswith("<svg") and "image-rendering:pixelated" in svg and r.name in svg
    keys = {b.proto.id for b in lab_at.get("download_button")}
    assert sum("lab.dl.slide" in k for k in keys) == 2 * len(run.results)
    json.loads(lab.json_bytes(run))


def test_heatmaps_name_every_label_with_axis_titles_and_log_axes_read_as_powers_of_ten():
    from mlvis.viz import histograms as vh
    from mlvis.viz.landscape import matrix_heatmap

    labels = list(mlvis.data.LABELS)
    fig = matrix_heatmap(np.eye(len(labels)), labels, "t", "k").to_plotly_json()
    for axis in ("xaxis", "yaxis"):
        assert fig["layout"][axis]["dtick"] == 1 and fig["layout"][axis]["title"]["text"]
    assert "row %{y}" in fig["data"][0]["hovertemplate"] and list(fig["data"][0]["x"]) == labels
    rng = np.random.default_rng(0)
    clean = rng.random((20, len(labels)))
    adv = rng.random((20, len(labels)))
    hist = vh.confidence_histograms(clean, {"BCE": adv}, clean >= 0.5, 0.5, log_y=True).to_plotly_json()
    assert hist["layout"]["yaxis"]["type"] == "log" and hist["layout"]["yaxis"]["dtick"] == 1
