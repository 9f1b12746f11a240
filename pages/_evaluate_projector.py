"""Evaluate: the embedding projector. PCA / t-SNE / UMAP of the penultimate layer over the evaluation split, dots
(WebGL) or thumbnails, coloured by label, prediction or correctness; a clicked point opens with Grad-CAM."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from core import figures
from core.analysis import evaluation, evaluation_runs, prediction, projector
from core.data import images
from core.errors import UserError
from core.training import runs
from pages import _shared

COLOUR_BY = {"label": "true label", "prediction": "prediction", "correct": "correctness"}
THUMB_MAX = 300  # thumbnails are one <image> each; above this many points the plot draws dots
HOVER_SIDE = 84  # small images are enlarged (nearest neighbour) to about this many pixels for the tooltip
HOVER_MAX = 2000  # images on hover travel with the chart's data (a small PNG each); above this, labels only
OPEN_SIDE = 196


@st.cache_data(max_entries=16, show_spinner=False)
def _thumbnails(run_id: str, stamp: tuple[int, ...], indices: tuple[int, ...]) -> list[str]:
    """PNG data URIs of the evaluation images, for plotly layout images."""
    run = runs.get_run(run_id)
    result = evaluation_runs.cached_result(run)
    if result is None:
        return []
    out = []
    for a in evaluation_runs.sample_images(run, result, np.asarray(indices, dtype=np.int64)):
        buf = io.BytesIO()
        a = images.upscale_to(a, HOVER_SIDE)  # a 28×28 image is readable in a tooltip at 3×
        Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(buf, format="PNG")
        out.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
    return out


def _groups(result: evaluation.EvaluationResult, idx: np.ndarray, by: str) -> tuple[list[str], np.ndarray]:
    """(group names in legend order, group of each point)."""
    if by == "correct":
        wrong = (result.labels[idx] != result.predictions[idx]).astype(np.int64)
        return ["correct", "wrong"], wrong
    return list(result.class_names), (result.labels if by == "label" else result.predictions)[idx]


def figure(result: evaluation.EvaluationResult, proj: projector.Projection, by: str,
           thumbs: Sequence[str] | None = None, opened: int | None = None) -> go.Figure:  # fmt: skip
    """One WebGL trace per group (legend toggles a class); customdata is the evaluation sample of each point."""
    idx, xyz = proj.indices, proj.coords
    names, group = _groups(result, idx, by)
    cls = np.asarray(result.class_names, dtype=object)
    hover = [f"#{i} · true {cls[result.labels[i]]} · predicted {cls[result.predictions[i]]} "
             f"({result.confidence[i]:.0%})" for i in idx]  # fmt: skip
    palette = {"correct": "#2e7d32", "wrong": "#d32f2f"}
    fig = go.Figure()
    three = proj.dims == 3
    for g, name in enumerate(names):
        mask = group == g
        if not mask.any():
            continue
        common = dict(name=name, customdata=idx[mask], hovertext=[hover[k] for k in np.flatnonzero(mask)],
                      hovertemplate="%{hovertext}<extra></extra>")  # fmt: skip
        colour = palette.get(name)
        if three:
            fig.add_trace(go.Scatter3d(x=xyz[mask, 0], y=xyz[mask, 1], z=xyz[mask, 2], mode="markers",
                                       marker=dict(size=3, opacity=0.8, color=colour), **common))  # fmt: skip
        else:
            fig.add_trace(go.Scattergl(x=xyz[mask, 0], y=xyz[mask, 1], mode="markers",
                                       marker=dict(size=9 if thumbs else 6, opacity=0.85, color=colour), **common))  # fmt: skip
    if thumbs and not three:
        span = float(max(np.ptp(xyz[:, 0]), np.ptp(xyz[:, 1]), 1e-9))
        size = span / 18
        for (x, y), src in zip(xyz[:, :2], thumbs, strict=True):  # top-left at the point; the dot marks it
            fig.add_layout_image(source=src, x=float(x), y=float(y), xref="x", yref="y", sizex=size, sizey=size,
                                 xanchor="left", yanchor="top", layer="below", sizing="contain")  # fmt: skip
    if opened is not None and not three and opened in set(idx.tolist()):
        k = int(np.flatnonzero(idx == opened)[0])
        fig.add_trace(go.Scattergl(x=[xyz[k, 0]], y=[xyz[k, 1]], mode="markers", name="opened", hoverinfo="skip", showlegend=False,
                                   marker=dict(size=16, color="rgba(0,0,0,0)", line=dict(color="#e4572e", width=3))))  # fmt: skip
    method = projector.METHODS[proj.method]
    if three:
        fig.update_layout(height=560, scene=dict(xaxis_title=f"{method} 1", yaxis_title=f"{method} 2",
                                                 zaxis_title=f"{method} 3"))  # fmt: skip
    else:
        fig.update_layout(
            height=520, xaxis_title=f"{method} 1", yaxis_title=f"{method} 2", clickmode="event+select"
        )
    fig.update_layout(
        legend=dict(itemsizing="constant", title=COLOUR_BY[by]), margin=dict(l=0, r=0, t=10, b=0)
    )
    return figures.clear_toolbar(fig, legend="right")


def hover_chart(result: evaluation.EvaluationResult, proj: projector.Projection, by: str,
                pics: Sequence[str]) -> tuple[list[dict], dict]:  # fmt: skip
    """(rows, Vega-Lite spec) of a 2-D projection whose tooltip shows each point's image: plotly's hover labels
    cannot hold an image, Vega's tooltip draws a field named `image` as one. A click selects the point."""
    idx, xy = proj.indices, proj.coords
    names, group = _groups(result, idx, by)
    cls = result.class_names
    rows = [{"x": float(xy[k, 0]), "y": float(xy[k, 1]), "group": names[int(group[k])], "sample": int(i),
             "image": pics[k], "point": f"#{i} · true {cls[result.labels[i]]} · predicted "
             f"{cls[result.predictions[i]]} ({result.confidence[i]:.0%})"} for k, i in enumerate(idx)]  # fmt: skip
    method = projector.METHODS[proj.method]
    colour: dict = {"field": "group", "type": "nominal", "title": COLOUR_BY[by], "sort": names}
    if by == "correct":
        colour["scale"] = {"domain": ["correct", "wrong"], "range": ["#2e7d32", "#d32f2f"]}
    spec = {
        "height": 520,
        "mark": {"type": "circle", "size": 50, "opacity": 0.85},
        "params": [{"name": "pick", "select": {"type": "point", "fields": ["sample"], "on": "click"}}],
        "encoding": {
            "x": {"field": "x", "type": "quantitative", "title": f"{method} 1", "scale": {"zero": False}},
            "y": {"field": "y", "type": "quantitative", "title": f"{method} 2", "scale": {"zero": False}},
            "color": colour,
            "tooltip": [{"field": "image", "type": "nominal"}, {"field": "point", "type": "nominal"}],
        },
    }
    return rows, spec


def picked_sample(state: object) -> int | None:
    """The evaluation sample of the point a person clicked (customdata), from the chart's selection state."""
    try:
        selection = state["selection"]  # type: ignore[index]
        point = (selection.get("points") or selection.get("pick") or [])[0]
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    if isinstance(point, dict) and "sample" in point:
        point = {"customdata": point["sample"]}
    data = point.get("customdata")
    if isinstance(data, dict):
        data = data.get("0")
    if isinstance(data, list | tuple):
        data = data[0] if data else None
    try:
        return int(data)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


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
        st.markdown(f"**{pred}** · {probs[order[0]]:.1%}" + ("" if pred == true else f" (true: {true})"))
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
