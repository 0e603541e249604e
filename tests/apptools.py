"""Readers for what an AppTest run drew: plotly figures (their JSON, typed arrays) and metrics."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest


def plotly_array(value) -> np.ndarray:
    """A plotly JSON array: a plain list, plotly's typed-array form ``{"dtype", "bdata", "shape"}``, or a
    list of typed arrays (rows of a heatmap)."""
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if isinstance(shape, str):
            shape = tuple(int(v) for v in shape.split(","))
        return arr.reshape(shape) if shape else arr
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return np.stack([plotly_array(v) for v in value])
    return np.asarray(value, dtype=float) if isinstance(value, list) else np.asarray(value)


def chart_specs(at: AppTest) -> list[dict]:
    """Every plotly figure of the run, in page order, as its JSON spec."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def metrics(at: AppTest) -> dict[str, str]:
    """Every ``st.metric``: label -> shown value."""
    return {m.label: m.value for m in at.metric}


APP = Path(__file__).resolve().parents[1] / "app.py"
LAB = "pages/attack_lab.py"


def open_lab(query: dict | None = None, timeout: float = 300) -> AppTest:
    """The app with ``query`` in its URL, switched to the Attack Lab and run once."""
    at = AppTest.from_file(str(APP), default_timeout=timeout)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    at.switch_page(LAB)
    return at.run()


def lab_run(at: AppTest):
    """The Lab's newest kept run (a ``mlvis.app.lab.LabRun``)."""
    from mlvis.app import lab

    results = at.session_state[f"{lab.SECTION}._results"]
    return results[next(reversed(results))]["result"]
