"""The Train page's training dynamics: per layer and epoch, weight norm, update/weight ratio and dead ReLU share.

Small multiples of the active run's runs/<id>/dynamics.jsonl, refreshed every few seconds while it trains.
"""

from __future__ import annotations

import streamlit as st

from core.errors import UserError
from core.training import recordings, runs
from pages import _shared, _sidebar

REFRESH_S = 2.0


def render() -> None:
    """Called by Train: the active run's dynamics, when it recorded them (runs trained before this did not)."""
    run = _shared.active_run()
    if run is None or not recordings.read_dynamics(run.path):
        return
    live = run.state in runs.ACTIVE_STATES
    with st.expander("Training dynamics of the active run", expanded=True, icon=":material/monitoring:"):
        st.fragment(_view, run_every=REFRESH_S if live else None)(run.run_id)


def _view(run_id: str) -> None:
    try:
        run = runs.get_run(run_id)
    except UserError:
        return
    rows = recordings.read_dynamics(run.path)
    if not rows:
        return
    st.caption(
        f"**{_sidebar.run_label(run)}**, one line per layer. Weight norm: how big each layer's weights are. "
        "Update / weight: how far one epoch moved them, relative to their size (around 1e-3 is the usual pace; "
        "far above, the learning rate may be too high; far below, the layer has stopped learning). "
        "Dead ReLU units: the share of a layer's units (a conv layer's channels) that output 0 for every image "
        "of a fixed batch of training images; a share near 1 passes no signal."
    )
    st.plotly_chart(recordings.dynamics_figure(rows), key=f"dynamics_{run_id}")
