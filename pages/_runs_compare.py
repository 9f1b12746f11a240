"""The Runs page's filters and its comparison of a selection: any logged metric, smoothed, and the HParams table."""

from __future__ import annotations

import streamlit as st

from core.training import run_compare, runs

FILTERS = (("datasets", "Dataset"), ("presets", "Preset"), ("tags", "Tag"), ("sweeps", "Sweep"))


def filtered(all_runs: list[runs.Run]) -> list[runs.Run]:
    """Four multiselects over the values the runs have; empty means any."""
    choices = run_compare.filter_choices(all_runs)
    picked = {}
    for col, (name, label) in zip(st.columns(len(FILTERS)), FILTERS, strict=True):
        options = choices[name]
        kept = [v for v in st.session_state.get(f"runs_filter_{name}", []) if v in options]
        st.session_state[f"runs_filter_{name}"] = kept  # a value that vanished (run deleted) is dropped
        picked[name] = col.multiselect(label, options, key=f"runs_filter_{name}", placeholder="any")
    shown = run_compare.filter_runs(all_runs, **picked)
    if len(shown) != len(all_runs):
        st.caption(f"{len(shown)} of {len(all_runs)} runs match.")
    return shown


def compare(selection: list[runs.Run]) -> None:
    """Curves of the selected runs for one metric, with TensorBoard's smoothing, then their hyperparameters."""
    st.markdown(f"**Compare {len(selection)} run{'s' if len(selection) > 1 else ''}**")
    series = {r.short_label(): runs.read_progress(r.path)[0] for r in selection}
    metrics = run_compare.metric_names(series.values())
    if metrics:
        c1, c2 = st.columns([2, 3])
        default = "val_accuracy" if "val_accuracy" in metrics else metrics[0]
        metric = c1.selectbox("Metric", metrics, index=metrics.index(default), key="compare_metric",
                              help="every number the runs logged per epoch (progress.jsonl)")  # fmt: skip
        weight = c2.slider("Smoothing", 0.0, 0.99, 0.0, 0.01, key="compare_smoothing",
                           help="an exponential moving average, debiased at the start, as TensorBoard's; "
                           "the raw values stay as a faint line")  # fmt: skip
        st.plotly_chart(run_compare.compare_figure(series, metric, weight), key="compare_metric_chart")
    else:
        st.caption("No epoch has finished in these runs yet.")
    differing = st.toggle("Only settings that differ", value=True, key="hparams_differing")
    st.dataframe(run_compare.hparams_rows(selection, only_differing=differing), hide_index=True,
                 key="hparams_table")  # fmt: skip
