"""Inspect: what a CNN (active run or uploaded .keras) computes for one image: maps, kernels, Grad-CAM."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.analysis import inspection, prediction
from core.data import images
from core.errors import UserError
from core.models import loading
from pages import _image_input, _inspect_filters, _inspect_overview, _inspect_timelapse, _model_input, _shared

MAX_MAPS = 64  # wider layers get unreadable; the caption says how many are left out
CELL = 56  # feature maps are upscaled (nearest-neighbour) to about this many pixels a side
SHOW_SIDE = 224
COLORMAPS = ["viridis", "magma", "gray", "cividis", "coolwarm"]
CAM_HELP = ("Grad-CAM weighs the last convolution layer's maps by the gradient of the class score *before* the "
            "softmax/sigmoid, so a very confident prediction still gets a heatmap.")  # fmt: skip


@st.cache_resource(max_entries=4, show_spinner="Building the feature-map model…")
def _extractor(model_key: str, pooling: bool, _model) -> inspection.FeatureMapExtractor:
    """Built once per loaded model (and pooling choice): rebuilding the sub-model costs more than running it."""
    return inspection.FeatureMapExtractor(_model, include_pooling=pooling)


def _prediction_and_cam(lm: loading.LoadedModel, x: np.ndarray, seen: np.ndarray, name: str) -> None:
    probs = prediction.probabilities(lm, x[None])[0]
    order = np.argsort(probs)[::-1]
    shown = images.upscale_to(seen, SHOW_SIDE)
    c1, c2, c3 = st.columns([1, 1, 1.3])
    c1.image(shown, caption=f"{name} · as the model sees it", width=SHOW_SIDE)
    with c3:
        st.markdown(f"#### {_shared.md_text(lm.class_names[order[0]])} · {probs[order[0]]:.1%}")
        st.caption(" · ".join(f"{_shared.md_text(lm.class_names[i])} {probs[i]:.1%}" for i in order[1:4]))
        k = len(lm.class_names)
        choice = st.selectbox("Grad-CAM explains", [-1, *range(k)], key="ins_cam_class", help=CAM_HELP,
                              format_func=lambda i: f"the predicted class ({lm.class_names[order[0]]})"
                              if i < 0 else lm.class_names[i])  # fmt: skip
        alpha = st.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05, key="ins_cam_alpha")
    try:
        cam = inspection.grad_cam_result(
            lm.model, x, class_index=None if choice < 0 else choice, output_kind=lm.output_kind
        )
    except UserError as exc:
        c2.error(str(exc).splitlines()[0])
        return
    explained = lm.class_names[cam.class_index]
    if not cam.evidence:  # a flat overlay would read as "looks everywhere"; say what Grad-CAM found instead
        c2.info(
            f"{cam.note[0].upper()}{cam.note[1:]} (Grad-CAM for {explained}).",
            icon=":material/visibility_off:",
        )
        return
    blended = inspection.overlay(shown, cam.heatmap, alpha=alpha)
    c2.image(blended, caption=f"Grad-CAM for {explained}: where the evidence is", width=SHOW_SIDE)


def _feature_maps(model_key: str, lm: loading.LoadedModel, x: np.ndarray) -> None:
    st.subheader("Feature maps")
    a, b, _ = st.columns([1, 1, 1], vertical_alignment="bottom")
    pooling = a.checkbox("Include pooling layers", key="ins_pooling")
    cmap = b.selectbox("Colormap", COLORMAPS, key="ins_cmap")
    st.caption(
        f"One tile per channel, 8 to a row, each scaled to its own min–max; at most {MAX_MAPS} a layer."
    )
    ext = _extractor(model_key, pooling, lm.model)
    for i, (name, maps) in enumerate(ext(x)):
        if i % 2 == 0:
            cols = st.columns(2)
        h, w, c = maps.shape
        f = max(1, round(CELL / max(h, w)))
        grid = inspection.tile_maps_rgb(images.upscale(maps, f), cmap, cols=8, max_maps=MAX_MAPS)
        more = f" (showing the first {MAX_MAPS})" if c > MAX_MAPS else ""
        with cols[i % 2]:
            st.markdown(f"**{name}** · {h}×{w}×{c}")
            st.image(grid, caption=f"{name}: {c} maps of {h}×{w}{more}")


def _kernels(lm: loading.LoadedModel) -> None:
    st.subheader("Learned kernels of the first convolution layer")
    grid = inspection.kernel_grid(lm.model, cols=8, upscale=12)
    colour = inspection.kernels_in_colour(lm.model)
    how = "in colour (RGB input)" if colour else "averaged over input channels"
    st.image(grid, caption=f"each kernel scaled to its own min–max, {how}", width=min(grid.shape[1], 520))


def _dense(lm: loading.LoadedModel, x: np.ndarray) -> None:
    names = inspection.dense_layers(lm.model)
    if not names or not st.toggle("Show dense layer activations", key="ins_dense"):
        return
    layer = st.columns([1, 2])[0].selectbox("Dense layer", names, key="ins_dense_layer")
    acts = np.ravel(inspection.layer_activations(lm.model, x, [layer])[layer])
    is_head = layer == names[-1] and len(acts) == len(lm.class_names)
    labels = lm.class_names if is_head else [str(i) for i in range(len(acts))]
    fig = go.Figure(go.Bar(x=labels, y=acts, marker_color="#5c6bc0"))
    fig.update_layout(height=280, margin=dict(l=0, r=0, t=10, b=0), xaxis=dict(type="category", title="unit"),
                      yaxis=dict(title="activation"))  # fmt: skip
    st.plotly_chart(fig, key="ins_dense_chart", config={"displayModeBar": False})


def main() -> None:
    _shared.page_guard()
    st.title("Inspect")
    picked = _model_input.model_header("ins", "Inspect")
    if picked is None:
        return
    lm, dataset, model_key = picked
    _inspect_timelapse.render()
    c = lm.input_shape[2]
    items = _image_input.pick_images("ins", c, dataset, multiple=False)
    if not items:
        st.info("Pick an image above to look inside the model.", icon=":material/image:")
        return _inspect_filters.show(lm, model_key)  # needs no image
    name, src = _image_input.as_sources(items)[0]
    try:
        x, seen = prediction.prepare_for(lm, src, name)
        _prediction_and_cam(lm, x, seen, name)
        _inspect_overview.render(model_key, lm, x)
        _feature_maps(model_key, lm, x)
        _kernels(lm)
        _dense(lm, x)
    except UserError as exc:
        _shared.error(exc)
    _inspect_filters.show(lm, model_key)


main()
