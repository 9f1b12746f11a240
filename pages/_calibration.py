"""Calibration and a threshold you can trust; the "unfamiliar image" warning Classify shows.

`calibration_section(run_id)` draws the reliability diagram before/after temperature scaling, the ECE, the
temperature, a Calibrate button, and the coverage-accuracy curve with an "accuracy >= X" slider that stores the
reject threshold. The rest are small helpers the Classify page calls.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
import streamlit as st

from core.analysis import calibration, prediction, unfamiliar
from core.errors import UserError
from core.models import loading
from core.training import runs
from pages import _shared

UNFAMILIAR_TEXT = "This looks unlike the training data"


def _reliability_figure(data: dict) -> go.Figure:
    fig = go.Figure()
    for key, name, colour in (
        ("bins_before", "before", "#ef9a9a"),
        ("bins_after", "after scaling", "#1e88e5"),
    ):
        bins = [b for b in data[key] if b["count"]]
        fig.add_trace(go.Bar(
            x=[(b["lo"] + b["hi"]) / 2 for b in bins], y=[b["accuracy"] for b in bins], name=f"accuracy, {name}",
            width=0.8 / len(data[key]) * (1 if key == "bins_before" else 0.5), marker_color=colour,
            customdata=[[b["count"], b["confidence"]] for b in bins],
            hovertemplate="confidence %{customdata[1]:.1%}: accuracy %{y:.1%} (%{customdata[0]} images)<extra></extra>",
        ))  # fmt: skip
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                             line=dict(dash="dash", color="#616161")))  # fmt: skip
    fig.update_layout(barmode="overlay", height=340, margin=dict(l=0, r=0, t=30, b=0),
                      title="Reliability diagram (validation split)", legend=dict(orientation="h", y=-0.25),
                      xaxis=dict(range=[0, 1], tickformat=".0%", title="confidence"),
                      yaxis=dict(range=[0, 1], tickformat=".0%", title="accuracy"))  # fmt: skip
    return fig


def _coverage_figure(data: dict) -> go.Figure:
    curve = data["curve"]
    fig = go.Figure(go.Scatter(x=curve["coverage"], y=curve["accuracy"], mode="lines", name="accepted",
                               customdata=curve["threshold"], line=dict(color="#1e88e5"),
                               hovertemplate="accept %{x:.1%}: accuracy %{y:.1%} (threshold %{customdata:.3f})"
                               "<extra></extra>"))  # fmt: skip
    fig.add_hline(y=data["target_accuracy"], line_dash="dash", line_color="#c62828")
    thr = data.get("threshold")
    if thr:
        fig.add_trace(go.Scatter(x=[thr["coverage"]], y=[thr["accuracy"]], mode="markers", name="chosen",
                                 marker=dict(size=12, color="#c62828")))  # fmt: skip
    fig.update_layout(height=300, margin=dict(l=0, r=0, t=30, b=0), showlegend=False,
                      title="Coverage vs accuracy: accept only the surest images",
                      xaxis=dict(range=[0, 1.01], tickformat=".0%", title="share of images accepted"),
                      yaxis=dict(tickformat=".0%", title="accuracy on what is accepted"))  # fmt: skip
    return fig


def _calibrate(run: runs.Run, target: float) -> None:
    bar = st.progress(0.0, text="Calibrating on the validation split…")
    try:
        calibration.calibrate_run(run.run_id, target, loaded=_shared.loaded_model(run),
                                  progress=lambda f: bar.progress(min(1.0, f), text=f"Calibrating… {f:.0%}"))  # fmt: skip
    except UserError as exc:
        _shared.error(exc)
    except Exception as exc:  # last resort (out of memory...): one line
        _shared.error(f"calibration failed: {type(exc).__name__}: {exc}")
    finally:
        bar.empty()


def _store_target(run_id: str) -> None:
    try:
        calibration.set_target(run_id, float(st.session_state["cal_target"]))
    except UserError as exc:
        st.session_state.cal_error = str(exc)


def calibration_section(run_id: str) -> None:
    """Reliability before/after, ECE, temperature, Calibrate, and the coverage-accuracy reject threshold."""
    st.subheader("Calibration and a threshold you can trust")
    try:
        run = runs.get_run(run_id)
    except UserError as exc:
        _shared.error(exc)
        return
    data = calibration.load(run.path)
    target = float(data["target_accuracy"]) if data else 0.95
    busy = run.state in runs.ACTIVE_STATES or not run.has_model
    label = "Calibrate again" if data else "Calibrate"
    if st.button(label, key="cal_run", icon=":material/tune:", disabled=busy,
                 help="Fit a temperature on this run's validation split and the unfamiliar-image score."):  # fmt: skip
        _calibrate(run, target)
        data = calibration.load(run.path)
    if st.session_state.get("cal_error"):
        _shared.error(st.session_state.pop("cal_error"))
    if data is None:
        stale = calibration.load(run.path, stale_ok=True) is not None
        st.info(("The model changed since it was calibrated; calibrate again. " if stale else "")
                + "Calibrating fits one temperature that makes the model's confidence match its accuracy on the "
                "validation split; Classify, Inspect, `predict` and exports then use it.",
                icon=":material/info:")  # fmt: skip
        return
    c = st.columns(4)
    c[0].metric("ECE before", f"{data['ece_before']:.4f}")
    c[1].metric("ECE after", f"{data['ece_after']:.4f}", delta=f"{data['ece_after'] - data['ece_before']:+.4f}",
                delta_color="inverse")  # fmt: skip
    c[2].metric("Temperature", f"{data['temperature']:.3f}",
                help="Logits are divided by this: above 1 the model was over-confident, below 1 under-confident.")  # fmt: skip
    c[3].metric("Validation images", f"{data['split']['images']:,}")
    st.plotly_chart(_reliability_figure(data), key="cal_reliability", config={"displayModeBar": False})
    if st.session_state.get("cal_target_run") != (
        run_id,
        data["target_accuracy"],
    ):  # another run or calibration
        st.session_state.cal_target = min(1.0, max(0.5, round(target, 3)))
        st.session_state.cal_target_run = (run_id, data["target_accuracy"])
    st.slider("Accuracy ≥ on what is accepted", 0.5, 1.0, step=0.005, format="%.3f",
              key="cal_target", on_change=_store_target, args=(run_id,),
              help="Sets the reject threshold: Classify answers “unknown” below it.")  # fmt: skip
    st.plotly_chart(_coverage_figure(data), key="cal_coverage", config={"displayModeBar": False})
    thr = data.get("threshold")
    if thr:
        st.caption(f"Reject threshold **{thr['threshold']:.3f}** (calibrated confidence): accepts "
                   f"{thr['coverage']:.1%} of validation images at {thr['accuracy']:.1%} accuracy. Stored with the run; "
                   "Classify starts from it.")  # fmt: skip
    else:
        st.caption(
            f"No share of the validation images reaches {data['target_accuracy']:.1%} accuracy; lower the target."
        )


# ------------------------------------------------------------------------------------------ Classify helpers


def _from_run(model_key: str) -> bool:
    return not model_key.startswith("upload:")


def default_threshold(lm: loading.LoadedModel, model_key: str, key: str) -> None:
    """Start Classify's reject-threshold slider at the run's stored threshold (once per run and calibration)."""
    if not _from_run(model_key):
        return
    try:
        run = runs.get_run(lm.source)
    except UserError:
        return
    thr = calibration.reject_threshold(run.path)
    mark = (run.run_id, calibration.stamp(run.path))
    if thr is not None and st.session_state.get(f"{key}_from") != mark:
        st.session_state[key] = min(1.0, max(0.0, math.ceil(thr * 100) / 100))  # up: never accept more
        st.session_state[f"{key}_from"] = mark
    if lm.temperature != 1.0:
        st.caption(f"Calibrated probabilities (temperature {lm.temperature:.3f})"
                   + (f"; reject threshold {thr:.3f} from the run's calibration." if thr is not None else "."))  # fmt: skip


def ensure_detector(lm: loading.LoadedModel, model_key: str) -> None:
    """Fit the run's unfamiliar-image score on first use (seconds), so Classify can warn; quietly skip if it can't."""
    if lm.detector is not None or not _from_run(model_key):
        return
    try:
        run = runs.get_run(lm.source)
        if run.state in runs.ACTIVE_STATES:
            return
        with st.spinner("Learning what the training images look like (once per model)…"):
            lm.detector = unfamiliar.ensure(run, lm)
    except UserError:
        return


def unfamiliar_warning(pred: prediction.Prediction) -> None:
    if pred.unfamiliar:
        st.warning(f"{UNFAMILIAR_TEXT} (score {pred.unfamiliar_score:.3g}): the answer below is a guess.",
                   icon=":material/warning:")  # fmt: skip
