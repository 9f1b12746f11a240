"""Inspect: what a filter looks for. Activation maximisation on demand, cached in the run (or the session)."""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from core.analysis import filter_viz
from core.errors import UserError
from core.models import loading
from core.training import runs
from pages import _shared

SHOW_WIDTH = 720
_MEMORY = "ins_filt_memory"  # pictures of uploaded models, which have no run folder to cache in


def _run_of(model_key: str) -> runs.Run | None:
    """The active run behind `model_key` ("<run id>:<mtime>"); None for an uploaded model ("upload:<sha>")."""
    if model_key.startswith("upload:"):
        return None
    try:
        return runs.get_run(model_key.rsplit(":", 1)[0])
    except UserError:
        return None


def _known(run: runs.Run | None, model_key: str, layer: str) -> tuple[np.ndarray, dict] | None:
    if run is not None:
        return filter_viz.cached_grid(run, layer)
    return st.session_state.get(_MEMORY, {}).get((model_key, layer))


def _compute(
    lm: loading.LoadedModel, run: runs.Run | None, model_key: str, layer: str
) -> tuple[np.ndarray, dict]:
    bar = st.progress(0.0, text="Climbing the gradient…")

    def progress(f: float) -> None:
        bar.progress(min(1.0, max(0.0, f)), text=f"Climbing the gradient… {f:.0%}")

    try:
        if run is not None:
            grid, meta, _ = filter_viz.run_filter_grid(run.run_id, layer, progress=progress, loaded=lm)
        else:
            grid, meta = filter_viz.compute_grid(lm.model, layer, progress=progress)
            st.session_state.setdefault(_MEMORY, {})[(model_key, layer)] = (grid, meta)
    finally:
        bar.empty()
    return grid, meta


@st.fragment
def show(lm: loading.LoadedModel, model_key: str) -> None:
    """A fragment: pressing the button reruns this section only, not the feature maps above it."""
    st.subheader("What a filter looks for")
    layers = filter_viz.filter_layers(lm.model)
    if not layers:
        st.caption("This model has no convolution layers.")
        return
    names = [layer.name for layer in layers]
    labels = {layer.name: layer.label for layer in layers}
    if st.session_state.get("ins_filt_layer") not in names:
        st.session_state.ins_filt_layer = names[0]
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    layer = c1.selectbox("Convolution layer", names, key="ins_filt_layer", format_func=lambda n: labels[n])
    go = c2.button("Visualise filters", key="ins_filt_go", icon=":material/auto_awesome:")
    run = _run_of(model_key)
    st.caption(
        f"For each filter, the input that excites it most: {filter_viz.DEFAULT_ITERATIONS} steps of gradient "
        f"ascent from gray noise, as in keras-io's *Visualizing what convnets learn*. At most the first "
        f"{filter_viz.MAX_FILTERS} filters of a layer, so a big layer cannot hang the page: under a second at "
        "28×28, up to about a minute for a deep layer at 200×200 on 2 CPU cores. "
        + ("Pictures are kept with the run." if run else "Pictures are kept for this session.")
    )
    try:
        known = None if go else _known(run, model_key, layer)
        if known is None and not go:
            st.info("Press **Visualise filters** to compute this layer's pictures.", icon=":material/info:")
            return
        t0 = time.perf_counter()
        grid, meta = known if known is not None else _compute(lm, run, model_key, layer)
        took = "" if known is not None else f" Computed in {time.perf_counter() - t0:.1f}s."
    except UserError as exc:
        _shared.error(exc)
        return
    st.image(grid, caption=filter_viz.describe(meta) + "." + took, width=min(grid.shape[1], SHOW_WIDTH))
