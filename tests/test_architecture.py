"""docs/architecture.md's worked examples run: a loss, a method, a model and a page (issue 9, section 4).

Each ``python`` block of the page runs on its own (a fresh namespace); the page example runs in AppTest as a
page of its own, with the model the app's sidebar would have chosen.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mlvis.app import state

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def examples() -> dict[str, str]:
    """``{section title: code}`` for every ``python`` block, under the ``## How to ...`` it belongs to."""
    out, section = {}, ""
    for block in re.split(r"^## ", DOC.read_text(), flags=re.M):
        section = block.split("\n", 1)[0].strip()
        codes = re.findall(r"```python\n(.*?)```", block, flags=re.S)
        if codes:
            out[section] = "\n".join(codes)
    return out


def test_the_page_has_the_four_worked_examples():
    assert list(examples()) == ["How to add a loss", "How to add a method", "How to add a model", "How to add a page"]


@pytest.mark.parametrize("section", ["How to add a loss", "How to add a method", "How to add a model"])
def test_library_examples_run(section):
    exec(compile(examples()[section], f"docs/architecture.md: {section}", "exec"), {"__name__": "example"})


def test_page_example_runs_in_the_app():
    at = AppTest.from_string(examples()["How to add a page"], default_timeout=120)
    at.session_state[state.MODEL] = "demo-asl"  # what app.py's sidebar sets before a page runs
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Flips at one budget"
    assert at.metric[0].label == "Mean flips" and len(at.get("plotly_chart")) == 1
