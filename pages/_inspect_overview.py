"""Inspect · the network at a glance: every layer's output for one image as a card, then the probabilities.

CNN Explainer's overview for any model the app loads: cards flow left to right (wrapping), each with the layer's
name, kind, output shape and its most active channels; "Open" shows that layer's full grid below.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.analysis import calibration, overview
from core.models import loading

TOP = 4  # channels per card
CARD_WIDTH = 200  # pixels; four thumbnails of about 40 px fit side by side
TOP_CLASSES = 10
PICK_KEY = "ins_ov_layer"


@st.cache_resource(max_entries=4, show_spinner="Building the overview model…")
def _overview(model_key: str, _model) -> overview.NetworkOverview:
    """Built once per loaded model: one sub-model over every layer, run once per image."""
    return overview.NetworkOverview(_model)


def _open(name: str) -> None:
    st.session_state[PICK_KEY] = name


def _card(g: overview.LayerGlance) -> None:
    with st.container(border=True, width=CARD_WIDTH):
        st.markdown(f"**{g.index + 1}. {g.name}**")
        st.caption(f"{g.kind} · {g.shape_text()}" + (f"  \n{g.note}" if g.note else ""))
        if g.thumbnail is not None:
            what = f"top {len(g.top_channels)} channels" if g.spatial else f"{overview.shown_units(g)} units"
            st.image(g.thumbnail, width="stretch", caption=what if g.spatial else None)
        if g.thumbnail is not None:
            st.button("Open", key=f"ins_ov_open_{g.index}", on_click=_open, args=(g.name,), type="tertiary",
                      icon=":material/open_in_full:")  # fmt: skip


def _probabilities(names: list[str], probs: np.ndarray) -> None:
    with st.container(border=True, width=CARD_WIDTH + 40):
        st.markdown("**Class probabilities**")
        order = np.argsort(probs)[::-1][:TOP_CLASSES]
        for i in order:
            st.progress(float(np.clip(probs[i], 0.0, 1.0)), text=f"{names[i]} · {probs[i]:.1%}")
        if len(probs) > TOP_CLASSES:
            st.caption(f"the top {TOP_CLASSES} of {len(probs)} classes")


def _opened(glance: overview.Glance, cmap: str) -> None:
    names = [g.name for g in glance.layers if g.thumbnail is not None]
    if st.session_state.get(PICK_KEY) not in names:
        st.session_state.pop(PICK_KEY, None)
    name = st.selectbox("Open a layer", names, index=None, key=PICK_KEY,
                        placeholder="press Open on a card, or pick a layer here")  # fmt: skip
    if name is None:
        return
    g = glance.layer(name)
    grid = overview.full_grid(g, cmap)
    if g.spatial:
        h, w, c = g.output_shape
        more = f" (the first {min(c, 64)} shown)" if c > 64 else ""
        what = f"{name}: all {c} channels at {h}×{w}{more}, 8 to a row, each scaled to its own min–max"
    else:
        n = overview.shown_units(g)
        more = f" (the first {n} shown)" if n < g.activations.size else ""
        what = (
            f"{name}: {g.activations.size} units{more}, 32 to a row, scaled together (brighter = more active)"
        )
    st.image(grid, caption=what, width=min(grid.shape[1], 900))


def render(model_key: str, lm: loading.LoadedModel, x: np.ndarray) -> None:
    """The overview section of Inspect, behind a toggle (it adds a card per layer to a long page)."""
    if not st.toggle("Show the network at a glance", key="ins_overview",
                     help="Every layer's output for this image, like CNN Explainer's overview"):  # fmt: skip
        return
    st.subheader("The network at a glance")
    hide = st.checkbox("Hide layers that are off at inference (augmentation, dropout)", key="ins_ov_hide")
    cmap = str(st.session_state.get("ins_cmap") or "viridis")  # the feature-map colormap chosen further down
    glance = _overview(model_key, lm.model)(x, lm.output_kind, top=TOP, colormap=cmap)
    st.caption(
        f"Every layer in order, left to right: its output shape and the {TOP} channels with the highest mean "
        "activation for this image, each scaled to its own min–max; a vector shows one cell per unit. "
        "A nested model (a pretrained base) is one block."
    )
    with st.container(horizontal=True, wrap=True, gap="small"):
        for g in glance.layers:
            if not (hide and g.off_at_inference):
                _card(g)
        _probabilities(lm.class_names, calibration.rescale(glance.probabilities, lm.temperature))
    _opened(glance, cmap)
