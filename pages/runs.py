"""Runs: every run, filtered by dataset, preset, tag or sweep; rename, note and tag; compare a selection's metrics
and hyperparameters; and sweeps (queue a grid or random search, watch it, read its results)."""

from __future__ import annotations

import streamlit as st

from pages import _runs_compare, _runs_sweeps, _runs_view, _shared


def main() -> None:
    _shared.page_guard()
    st.title("Runs")
    runs_tab, sweeps_tab = st.tabs(["Runs", "Sweeps"])
    with runs_tab:
        shown = _runs_compare.filtered(_shared.list_runs())
        _runs_view.render(shown, compare=_runs_compare.compare)
    with sweeps_tab:
        _runs_sweeps.render(st.session_state.get("active_dataset"))


main()
