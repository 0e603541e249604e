"""The shared budget control (mlvis/app/budget_input.py): one source of truth, bound to the URL, no warnings."""

from __future__ import annotations

import logging

import pytest
from streamlit.testing.v1 import AppTest

from mlvis.app.budget_input import EIGHT_BIT


def budget_app():
    import streamlit as st

    from mlvis.app.budget_input import budget_input

    budget = budget_input("t", default=0.01, norm=st.session_state.get("norm", "linf"), dims=3 * 8 * 8)
    st.session_state["shown"] = budget


def open_app(query: dict | None = None, norm: str = "linf") -> AppTest:
    at = AppTest.from_function(budget_app)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.session_state["norm"] = norm
    return at.run()


@pytest.fixture
def warnings(caplog, monkeypatch):
    """Streamlit's log records; its "default value and Session State" warning is re-armed (it shows once)."""
    from streamlit.elements.lib import policies

    monkeypatch.setattr(policies, "_shown_default_value_warning", False)
    caplog.set_level(logging.WARNING, logger="streamlit")
    return caplog


def test_the_default_the_slider_and_the_button_agree_and_nothing_warns(warnings):
    at = open_app()
    assert not at.exception
    assert at.session_state["shown"].eps == (0.01,) and at.slider(key="t.eps_slider").value == 0.01
    at.slider(key="t.eps_slider").set_value(0.02).run()
    assert at.number_input(key="t.eps").value == 0.02 and at.session_state["shown"].linf == (0.02,)
    at.button(key="t.eight_bit").click().run()
    assert at.number_input(key="t.eps").value == pytest.approx(EIGHT_BIT)
    assert at.slider(key="t.eps_slider").value == pytest.approx(EIGHT_BIT)
    assert float(at.query_params["t.eps"]) == pytest.approx(EIGHT_BIT)  # the link keeps the exact value
    at.number_input(key="t.eps").set_value(0.2).run()  # beyond the slider: the slider stops at its end
    assert at.session_state["shown"].eps == (0.2,) and at.slider(key="t.eps_slider").value == 0.05
    assert "0.003922" in at.caption[0].value
    assert not [r for r in warnings.records if "Session State" in r.getMessage()]


def test_a_link_sets_the_budget_and_l2_turns_it_into_the_equal_volume_radius():
    at = open_app({"t.eps": "0.004"}, norm="l2")
    assert not at.exception
    budget = at.session_state["shown"]
    assert budget.norm == "l2" and budget.linf == (0.004,)
    assert budget.eps[0] > 0.004  # the L2 ball with the cube's volume is wider than the cube's half-width
    assert at.slider(key="t.eps_slider").value == 0.004


def test_below_half_a_level_the_caption_says_the_8_bit_flips_are_zero():
    at = open_app({"t.eps": "0.001"})
    assert "the 8-bit flips are 0" in at.caption[0].value


def test_a_link_to_the_smallest_budget_is_kept():
    """Streamlit drops a URL value equal to a widget's own default (here the range's minimum); the entry writes the
    link's value itself on first use, so a link to the minimum still opens on it."""
    at = open_app({"t.eps": "0.0001"})
    assert not at.exception
    assert at.session_state["shown"].eps == (0.0001,) and at.number_input(key="t.eps").value == 0.0001
