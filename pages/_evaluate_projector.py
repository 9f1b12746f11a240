"""Evaluate: the embedding projector. PCA / t-SNE / UMAP of the penultimate layer over the evaluation split, dots
(WebGL) or thumbnails, coloured by label, prediction or correctness; a clicked point opens with Grad-CAM."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.analysis import evaluation, evaluation_runs, prediction, projector, projector_charts
from core.analysis.projector_charts import COLOUR_BY, figure, hover_chart, picked_sample
from core.data import images
from core.errors import UserError
from core.training import runs
from pages import _shared

THUMB_MAX = 300  # thumbnails are one <image> each; above this many points the plot draws dots
HOVER_MAX = 2000  # images on hover travel with the chart's data (a small PNG each); above this, labels only
OPEN_SIDE = 196


@st.cache_data(max_entries=16, show_spinner=False)
def _thumbnails(run_id: str, stamp: tuple[int, ...], indices: tuple[int, ...]) -> list[str]:
    """PNG data URIs of the evaluation images, for plotly layout images."""
    run = runs.get_run(run_id)
    result = evaluation_runs.cached_result(run)
    if result is None:
        return []
    return projector_charts.data_uris(
        evaluation_runs.sample_images(run, result, np.asarray(indices, dtype=np.int64))
    )


def _open(run: runs.Run, result: evaluation.EvaluationResult, sample: int) -> None:
    """The image as the model sees it, Grad-CAM for its prediction, and every class's probability."""
    from core.analysis import inspection  # TensorFlow only once a point opens: the page opens without it

    lm = _shared.loaded_model(run)
    seen = evaluation_runs.sample_images(run, result, np.array([sample]))[0]
    x = seen.astype(np.float32)
    probs = prediction.probabilities(lm, x[None])[0]
    names = result.class_names
    true, pred = names[result.labels[sample]], names[int(np.argmax(probs))]
    shown = images.upscale_to(seen[..., 0] if seen.shape[-1] == 1 else seen, OPEN_SIDE)
    c1, c2, c3 = st.columns([1, 1, 1.3])
    c1.image(shown, caption=f"#{sample} · true {true}", width=OPEN_SIDE)
    cam = inspection.grad_cam_result(lm.model, x, output_kind=lm.output_kind)
    if cam.evidence:
        c2.image(
            inspection.overlay(shown, cam.heatmap, alpha=0.45),
            caption=f"Grad-CAM for {pred}",
            width=OPEN_SIDE,
        )
    else:
        c2.info(f"{cam.note[0].upper()}{cam.note[1:]}.", icon=":material/visibility_off:")
    order = np.argsort(probs)[::-1][:10]
    fig = go.Figure(
        go.Bar(x=probs[order], y=[names[i] for i in order], orientation="h", marker_color="#5c6bc0")
    )
    fig.update_layout(height=40 + 24 * len(order), margin=dict(l=0, r=0, t=10, b=0),
                      xaxis=dict(range=[0, 1], tickformat=".0%"), yaxis=dict(autorange="reversed", type="category"))  # fmt: skip
    with c3:
        st.markdown(
            f"**{_shared.md_text(pred)}** · {probs[order[0]]:.1%}"
            + ("" if pred == true else f" (true: {_shared.md_text(true)})")
        )
        st.plotly_chart(fig, key="proj_probs", config={"displayModeBar": False})


def _controls(n: int) -> tuple[str, int, str, int, bool, bool]:
    """Method, view, colour, points (a choice only when the evaluation has more than the smallest sample)."""
    c1, c2, c3, c4, c5, c6 = st.columns([1.4, 0.8, 1.1, 1.0, 1.0, 1.0])
    method = c1.segmented_control("Method", list(projector.METHODS), format_func=projector.METHODS.get,
                                  required=True, key="proj_method", default="pca")  # fmt: skip
    dims = c2.segmented_control("View", [2, 3], format_func=lambda d: f"{d}-D", required=True, key="proj_dims",
                                default=2)  # fmt: skip
    by = c3.selectbox("Colour by", list(COLOUR_BY), format_func=COLOUR_BY.get, key="proj_colour")
    most = projector.points_for(n)
    choices = [c for c in projector.POINT_CHOICES if c < most] + [most]
    if st.session_state.get("proj_points") not in choices:
        st.session_state.proj_points = choices[0]
    points = c4.selectbox("Points", choices, key="proj_points", disabled=len(choices) == 1,
                          format_func=lambda c: f"all {c:,}" if c == n else f"{c:,} of {n:,}",
                          help="t-SNE and UMAP take much longer on more points; each size is kept once computed.")  # fmt: skip
    thumbs = c5.toggle("Thumbnails", key="proj_thumbs", disabled=int(points) > THUMB_MAX,
                       help=f"Draw each point as its image: 2-D views of at most {THUMB_MAX} images.")  # fmt: skip
    hover = c6.toggle("Image on hover", key="proj_hover", disabled=int(points) > HOVER_MAX,
                      help=f"Hovering a point shows its image: 2-D views of at most {HOVER_MAX:,} images.")  # fmt: skip
    return str(method or "pca"), int(dims or 2), str(by), int(points), bool(thumbs), bool(hover)


COST = {  # measured on this project's 2-core machine (README): what to expect before pressing the button
    "pca": "a few seconds",
    "tsne": "about 25 s for 2,000 points, 70 s for 5,000, 3 minutes for 10,000; longer on a busy machine",
    "umap": "about 6 s for 2,000 points, 20 s for 10,000, plus 1–2 minutes the first time after a server start "
    "while numba compiles UMAP's code",
}


def show(run: runs.Run, result: evaluation.EvaluationResult) -> None:
    st.subheader("Embedding projector")
    n = result.num_samples
    method, dims, by, points, thumbs, hover = _controls(n)
    name = projector.METHODS[method]
    sampled = (
        f"a random {points:,} of the {n:,} evaluated images" if points < n else f"all {n:,} evaluated images"
    )
    st.caption(f"Outputs of layer **{result.embedding_layer}** for {sampled}, laid out by {name}. PCA keeps "
               "global distances; t-SNE and UMAP keep neighbourhoods (clusters), not distances between them. "
               "Hover a point for its labels (and its image, with Image on hover); click one (2-D) or pick it below "
               "to open it.")  # fmt: skip
    if method == "umap" and not projector.umap_available():
        st.info(projector.UMAP_MISSING + ".", icon=":material/info:")
        return
    try:
        proj = projector.cached_projection(run, method, dims, points)
    except UserError as exc:
        _shared.error(exc)
        return
    if proj is None:
        st.caption(f"Not computed yet for this model and evaluation ({name}: {COST[method]}); kept with the run "
                   "afterwards.")  # fmt: skip
        if not st.button(f"Compute {name} {dims}-D", key="proj_go", icon=":material/scatter_plot:"):
            return
        proj = _compute(run, result, method, dims, points)
        if proj is None:
            return
    _draw(run, result, proj, by, thumbs and dims == 2, hover and dims == 2)


def _compute(
    run: runs.Run, result: evaluation.EvaluationResult, method: str, dims: int, points: int
) -> projector.Projection | None:
    name = projector.METHODS[method]
    bar = st.progress(0.0, text="Computing the layer's outputs…")

    def progress(f: float) -> None:
        text = "Computing the layer's outputs…" if f < 0.6 else f"Running {name}…"
        bar.progress(min(1.0, max(0.0, f)), text=f"{text} {f:.0%}")

    t0 = time.perf_counter()
    try:
        proj = projector.project_run(run.run_id, method, dims, points=points, result=result,
                                     loaded=_shared.loaded_model(run), progress=progress)  # fmt: skip
    except UserError as exc:
        _shared.error(exc)
        return None
    finally:
        bar.empty()
    st.caption(
        f"Computed in {time.perf_counter() - t0:.1f}s ({name}: {proj.seconds:.1f}s); saved with the run."
    )
    return proj


def _draw(run: runs.Run, result: evaluation.EvaluationResult, proj: projector.Projection, by: str, thumbs: bool,
          hover: bool = False) -> None:  # fmt: skip
    stamp = evaluation_runs.stamp(run)
    pics = None
    wanted = (thumbs and len(proj.indices) <= THUMB_MAX) or (hover and len(proj.indices) <= HOVER_MAX)
    if wanted:
        try:
            pics = _thumbnails(run.run_id, stamp, tuple(int(i) for i in proj.indices)) or None
        except UserError as exc:
            _shared.error(exc)
    hover = hover and pics is not None
    clicked = picked_sample(st.session_state.get("proj_hover_chart" if hover else "proj_chart"))
    if clicked is not None and clicked != st.session_state.get("proj_clicked"):
        st.session_state.proj_clicked = clicked  # a new click opens its point; the number input follows it
        st.session_state.proj_open = clicked
    opened = st.session_state.get("proj_open")
    if opened is not None and not 0 <= opened < result.num_samples:  # another run's evaluation
        st.session_state.proj_open = opened = None
    if hover and pics is not None:
        rows, spec = hover_chart(result, proj, by, pics)
        st.vega_lite_chart(
            pd.DataFrame(rows), spec, key="proj_hover_chart", on_select="rerun", selection_mode="pick"
        )
    elif proj.dims == 2:
        fig = figure(result, proj, by, pics if thumbs else None, opened)
        st.plotly_chart(fig, key="proj_chart", on_select="rerun", selection_mode="points")
    else:
        st.plotly_chart(figure(result, proj, by, None, opened), key="proj_chart3")
    note = "; cached in the run" if proj.cached else ""
    st.caption(
        f"{len(proj.indices):,} points · {projector.METHODS[proj.method]} took {proj.seconds:.1f}s{note}."
    )
    c1, _ = st.columns([1, 3])
    sample = c1.number_input("Open image #", min_value=0, max_value=result.num_samples - 1, step=1, value=None,
                             key="proj_open", placeholder="click a point",
                             help="The evaluation image to open: click a point, or type its number.")  # fmt: skip
    if sample is None:
        return
    try:
        _open(run, result, int(sample))
    except UserError as exc:
        _shared.error(exc)
