"""Render helpers for the Evaluate page: each draws one section of a saved EvaluationResult, nothing more."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from core import figures
from core.analysis import evaluation
from core.analysis.evaluation import EvaluationResult
from core.data.images import upscale
from core.errors import UserError
from pages import _shared

MAX_SHOWN = 40  # images per gallery: the most confident ones lead, the count says how many there are
TILE_PX = 84  # tiny images (28×28) are upscaled nearest-neighbour to about this size so pixels stay crisp
MAX_TILE_PX = 160

Images = Callable[[Sequence[int]], list[np.ndarray]]


def _for_display(images: list[np.ndarray], tile: int) -> tuple[list[np.ndarray], int]:
    """Integer nearest-neighbour upscale of small images, box-filtered reduction of large ones (less to send);
    (H, W, 1) becomes (H, W) for st.image."""
    if not images:
        return [], tile
    out = [a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else np.asarray(a) for a in images]
    side = max(out[0].shape[:2])
    if side > MAX_TILE_PX:
        step = -(-side // MAX_TILE_PX)
        out = [np.asarray(Image.fromarray(a).reduce(step)) for a in out]
        return out, MAX_TILE_PX
    f = max(1, tile // side)
    return [upscale(a, f) for a in out], max(tile, side * f)


def gallery(indices: np.ndarray, images: Images, caption: Callable[[int], str], what: str,
            tile: int = TILE_PX) -> None:  # fmt: skip
    total = len(indices)
    if not total:
        st.caption(f"No {what}.")
        return
    shown = [int(i) for i in indices[:MAX_SHOWN]]
    more = f"; showing the {len(shown)} most confident" if total > len(shown) else ""
    st.caption(f"{total} {what}{more}.")
    try:
        pics, width = _for_display(images(shown), tile)
    except UserError as exc:  # e.g. a large array dataset whose images were not kept
        _shared.error(exc)
        return
    st.image(pics, caption=[caption(i) for i in shown], width=width)


def summary(result: EvaluationResult, src: dict) -> None:
    split = {"test": "test", "val": "validation"}.get(result.split, result.split)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Accuracy", f"{result.accuracy:.1%}")
    c2.metric("Loss", f"{result.loss:.4f}", help="Mean cross-entropy of the true class")
    c3.metric("Images", f"{result.num_samples:,}")
    c4.metric("Split", split)
    note = (
        "" if result.split == "test" else " (this dataset has no test split, so the validation split is used)"
    )
    limit = f" · limited to {src['limit']:,} images" if src.get("limit") else ""
    st.caption(f"Scored on the {split} split{note}{limit}.")


def per_class(result: EvaluationResult) -> None:
    st.subheader("Per class")
    cfg = {c: st.column_config.ProgressColumn(c, min_value=0.0, max_value=1.0, format="%.3f")
           for c in ("precision", "recall", "f1")}  # fmt: skip
    cfg["support"] = st.column_config.NumberColumn("support", format="%d")
    st.dataframe(result.per_class.reset_index(), hide_index=True, column_config=cfg, key="eval_table")


def default_cell(result: EvaluationResult) -> tuple[int, int]:
    """The most frequent confusion, else the first class's diagonal: the cell most worth a look."""
    off = np.array(result.confusion, dtype=np.int64)
    np.fill_diagonal(off, 0)
    if off.max() > 0:
        t, p = np.unravel_index(int(off.argmax()), off.shape)
        return int(t), int(p)
    return 0, 0


def confusion_figure(result: EvaluationResult, normalised: bool, cell: tuple[int, int]) -> go.Figure:
    """A heatmap plus one invisible marker per cell: heatmaps cannot be selected in plotly, markers can."""
    names = result.class_names
    k = len(names)
    counts = np.asarray(result.confusion)
    share = evaluation.normalized_confusion(result)
    z = share if normalised else counts
    text = np.vectorize(lambda v: f"{v:.2f}")(share) if normalised else counts.astype(str)
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, text=text, texttemplate="%{text}" if k <= 20 else "", colorscale="Blues",
                               zmin=0, zmax=1 if normalised else max(1, int(counts.max())), hoverinfo="skip",
                               colorbar=dict(title="share" if normalised else "images")))  # fmt: skip
    tt, pp = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    custom = np.stack([tt.ravel(), pp.ravel(), counts.ravel(), share.ravel()], axis=1)
    fig.add_trace(go.Scatter(
        x=[names[p] for p in pp.ravel()], y=[names[t] for t in tt.ravel()], mode="markers", customdata=custom,
        marker=dict(size=max(8, 360 // k), symbol="square", opacity=0), showlegend=False, name="cells",
        hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata[2]} images (%{customdata[3]:.1%} of row)"
                      "<extra></extra>",
    ))  # fmt: skip
    t, p = cell
    fig.add_shape(
        type="rect", x0=p - 0.5, x1=p + 0.5, y0=t - 0.5, y1=t + 0.5, line=dict(color="#e4572e", width=3)
    )
    size = max(360, min(640, 60 * k + 140))
    fig.update_layout(height=size, margin=dict(l=0, r=0, t=36, b=0), hoverdistance=-1, clickmode="event+select",
                      xaxis=dict(side="bottom", tickangle=-45 if k > 6 else 0))  # fmt: skip
    # Category axes (class names like "0".."9" must not turn numeric), fixed to the cells so the invisible
    # markers do not pad the ranges.
    fig.update_xaxes(type="category", range=[-0.5, k - 0.5], title="predicted", showgrid=False)
    fig.update_yaxes(type="category", range=[k - 0.5, -0.5], title="true", showgrid=False)
    return figures.clear_toolbar(fig, legend="keep")  # the toolbar sat on the colour bar's title


def clicked_cell(state: object, names: list[str]) -> tuple[int, int] | None:
    """(true, predicted) of the marker a person clicked, from the chart's selection state.

    The frontend sends customdata as a list or, from a typed array, as {"0": t, "1": p}; the axis labels are
    the fallback.
    """
    try:
        point = state["selection"]["points"][0]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return None
    data = point.get("customdata")
    if isinstance(data, dict):
        data = [data.get(str(i)) for i in range(2)]
    try:
        t, p = int(data[0]), int(data[1])  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        try:
            t, p = names.index(str(point.get("y"))), names.index(str(point.get("x")))
        except ValueError:
            return None
    return (t, p) if 0 <= t < len(names) and 0 <= p < len(names) else None


def cell_caption(result: EvaluationResult) -> Callable[[int], str]:
    return lambda i: f"{result.confidence[i]:.0%}"


def mistake_caption(result: EvaluationResult) -> Callable[[int], str]:
    names = result.class_names
    return lambda i: (
        f"{names[result.labels[i]]} → {names[result.predictions[i]]} ({result.confidence[i]:.2f})"
    )


def _pca_frame(result: EvaluationResult) -> pd.DataFrame:
    names = np.asarray(result.class_names, dtype=object)
    idx = result.pca_indices
    c = result.pca_coords
    return pd.DataFrame({"PC1": c[:, 0], "PC2": c[:, 1], "PC3": c[:, 2], "class": names[result.pca_labels],
                         "predicted": names[result.predictions[idx]], "sample": idx})  # fmt: skip


def embeddings(result: EvaluationResult) -> None:
    st.subheader("Embeddings (PCA)")
    n = len(result.pca_indices)
    st.caption(f"Activations of layer **{result.embedding_layer}** (the representation the classifier head "
               f"reads) for {n:,} of {result.num_samples:,} images, projected on their principal components.")  # fmt: skip
    ratios = result.explained_variance
    if n < 2 or not ratios:
        st.info("Too few images for a PCA; evaluate more images.", icon=":material/info:")
        return
    df = _pca_frame(result)
    order = {"class": list(result.class_names)}
    axis = {f"PC{i + 1}": f"PC{i + 1} ({r:.0%})" for i, r in enumerate(ratios[:3])}
    hover = ["predicted", "sample"]
    tab2, tab3, scree = st.tabs(["2-D", "3-D", "Explained variance"])
    with tab2:
        fig = px.scatter(df, x="PC1", y="PC2", color="class", category_orders=order, labels=axis,
                         hover_data=hover, height=480)  # fmt: skip
        fig.update_traces(marker=dict(size=6, opacity=0.8))
        fig.update_layout(legend=dict(itemsizing="constant"), margin=dict(l=0, r=0, t=10, b=0))
        st.plotly_chart(figures.clear_toolbar(fig, legend="right"), key="eval_pca2")
    with tab3:
        fig = px.scatter_3d(df, x="PC1", y="PC2", z="PC3", color="class", category_orders=order, labels=axis,
                            hover_data=hover, height=560)  # fmt: skip
        fig.update_traces(marker=dict(size=3, opacity=0.8))
        fig.update_layout(legend=dict(itemsizing="constant"), margin=dict(l=0, r=0, t=10, b=0))
        st.plotly_chart(figures.clear_toolbar(fig, legend="right"), key="eval_pca3")
    with scree:
        comp = [f"PC{i + 1}" for i in range(len(ratios))]
        fig = go.Figure(go.Bar(x=comp, y=ratios, name="explained variance"))
        fig.add_trace(go.Scatter(x=comp, y=np.cumsum(ratios), mode="lines+markers", name="cumulative"))
        fig.update_layout(
            height=360, yaxis=dict(tickformat=".0%", range=[0, 1.05]), margin=dict(l=0, r=0, t=10, b=0)
        )
        st.plotly_chart(figures.clear_toolbar(fig, legend="below"), key="eval_scree")
