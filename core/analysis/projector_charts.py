"""The embedding projector's charts, built from a projection and an evaluation (no Streamlit): WebGL dots or
thumbnails with plotly, or a Vega-Lite chart whose tooltip shows each point's image."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import plotly.graph_objects as go

from core import figures
from core.analysis import evaluation, projector
from core.data import images

COLOUR_BY = {"label": "true label", "prediction": "prediction", "correct": "correctness"}
HOVER_SIDE = 84  # small images are enlarged (nearest neighbour) to about this many pixels for the tooltip


def data_uris(arrays: Iterable[np.ndarray], side: int = HOVER_SIDE) -> list[str]:
    """PNG data URIs of uint8 images (H, W, 1|3), small ones enlarged to about `side` pixels."""
    # a 28×28 image is readable in a tooltip at 3×
    return [images.png_data_uri(images.upscale_to(a, side)) for a in arrays]


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
