"""Classify: images from uploads, the camera, a dataset sample or a drawing -> class probabilities."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.analysis import prediction
from core.data import images
from core.errors import UserError
from pages import _calibration, _image_input, _model_input, _shared

MAX_CARDS = 12  # detailed cards; the table holds every image
SHOW_SIDE = 196  # small inputs are shown upscaled to about this many pixels
FIXED_COLUMNS = ("file", "top class", "confidence", "error")


def _chart(pred: prediction.Prediction, threshold: float, key: str) -> None:
    items = sorted(pred.probabilities.items(), key=lambda kv: kv[1])
    names, probs = [c for c, _ in items], [p for _, p in items]
    colours = [
        "#2e7d32" if p >= threshold and i == len(probs) - 1 else "#90a4ae" for i, p in enumerate(probs)
    ]
    fig = go.Figure(go.Bar(x=probs, y=names, orientation="h", marker_color=colours, text=[f"{p:.1%}" for p in probs],
                           textposition="outside", cliponaxis=False, hovertemplate="%{y}: %{x:.2%}<extra></extra>"))  # fmt: skip
    fig.add_vline(x=threshold, line_dash="dash", line_color="#c62828")
    fig.update_layout(height=50 + 26 * len(names), margin=dict(l=0, r=40, t=8, b=0), showlegend=False,
                      xaxis=dict(range=[0, 1], tickformat=".0%"), yaxis=dict(type="category"))  # fmt: skip
    st.plotly_chart(fig, key=key, config={"displayModeBar": False})


def _card(i: int, pred: prediction.Prediction, threshold: float) -> None:
    with st.container(border=True):
        left, right = st.columns([1, 2], vertical_alignment="center")
        h, w = pred.seen.shape[:2]
        left.image(
            images.upscale_to(pred.seen, SHOW_SIDE), caption=f"{pred.name} · as the model sees it ({w}×{h})"
        )
        label, p = pred.top(threshold)
        with right:
            _calibration.unfamiliar_warning(pred)
            if label == "unknown":
                best, pb = pred.top()
                st.markdown(
                    f"#### unknown\nBest guess **{_shared.md_text(best)}** at {pb:.1%}, below the {threshold:.0%} threshold."
                )
            else:
                st.markdown(f"#### {_shared.md_text(label)} · {p:.1%}")
            _chart(pred, threshold, key=f"clf_chart_{i}")


def _table(preds: list[prediction.Prediction], threshold: float, class_names: list[str]) -> pd.DataFrame:
    cols = {c: (f"p({c})" if c in FIXED_COLUMNS else c) for c in class_names}
    rows = []
    for p in preds:
        if p.error:
            rows.append({"file": p.name, "top class": None, "confidence": None, "error": p.error})
            continue
        label, conf = p.top(threshold)
        rows.append({"file": p.name, "top class": label, "confidence": conf}
                    | {cols[c]: v for c, v in p.probabilities.items()})  # fmt: skip
        rows[-1]["unfamiliar"] = p.unfamiliar
    df = pd.DataFrame(
        rows, columns=["file", "top class", "confidence", *cols.values(), "error", "unfamiliar"]
    )
    df = df if df["unfamiliar"].notna().any() else df.drop(columns="unfamiliar")
    return df if df["error"].notna().any() else df.drop(columns="error")


def _results(preds: list[prediction.Prediction], threshold: float, class_names: list[str]) -> None:
    good = [p for p in preds if not p.error]
    for p in preds:
        if p.error:
            _shared.error(p.error)
    cols = st.columns(2 if len(good) > 1 else 1)
    for i, p in enumerate(good[:MAX_CARDS]):
        with cols[i % len(cols)]:
            _card(i, p, threshold)
    if len(good) > MAX_CARDS:
        st.caption(f"Showing the first {MAX_CARDS} of {len(good)} images; the table below has them all.")
    if len(preds) > 1:
        st.subheader("All images")
        df = _table(preds, threshold, class_names)
        config = {
            c: st.column_config.NumberColumn(c, format="%.4f")
            for c in df.columns[3:]
            if c not in ("error", "unfamiliar")
        }
        config["confidence"] = st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0,
                                                               format="percent")  # fmt: skip
        st.dataframe(df, hide_index=True, column_config=config, key="clf_table")
        st.download_button("Download CSV", df.to_csv(index=False).encode(), "predictions.csv", "text/csv",
                           key="clf_csv", icon=":material/download:")  # fmt: skip


def main() -> None:
    _shared.page_guard()
    st.title("Classify")
    picked = _model_input.model_header("clf", "Classify")
    if picked is None:
        return
    lm, dataset, key = picked
    c = lm.input_shape[2]
    items = _image_input.pick_images("clf", c, dataset)
    _calibration.default_threshold(lm, key, "clf_threshold")
    st.session_state.setdefault(
        "clf_threshold", 0.5
    )  # the value lives in session state (a run may have set it)
    threshold = st.slider("Reject threshold", 0.0, 1.0, step=0.05, key="clf_threshold",
                          help="Below this confidence the answer is “unknown”.")  # fmt: skip
    if not items:
        st.info(
            "Pick one or more images above to see what the model thinks they are.", icon=":material/image:"
        )
        return
    _calibration.ensure_detector(lm, key)
    try:
        preds = prediction.predict_sources(lm, _image_input.as_sources(items))
    except UserError as exc:
        _shared.error(exc)
        return
    _results(preds, threshold, lm.class_names)


main()
