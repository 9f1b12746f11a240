"""The Runs page's Sweeps tab: a form that queues a grid or random search, and each sweep's progress and results.

The trials train in a background runner process (core.training.sweeps), one at a time, so this page only reads
the queue and the runs' folders; leaving the page, a refresh or a Streamlit restart never disturbs a sweep.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import streamlit as st

from core import options
from core.errors import UserError
from core.models import architectures
from core.training import sweep_results, sweeps
from core.training.trainer import TrainRequest
from pages import _shared

TEXT_PARAMS = (("learning_rate", "Learning rates", "1e-3,3e-3", "a list, or low:high for random search"),
               ("batch_size", "Batch sizes", "64,128", "a list, or low:high for random search"),
               ("epochs", "Epochs", "", "a list, or low:high for random search"),
               ("dropout", "Dropout (custom preset)", "", "the builder's dropout; a list or low:high"),
               ("filters", "Filters (custom preset)", "", "the builder's first-block filters; a list or low:high"))  # fmt: skip


def _space() -> dict[str, Any]:
    """The form's fields as a sweep space; empty fields are not swept. UserError on a bad field."""
    space: dict[str, Any] = {}
    cols = st.columns(3)
    for i, (name, label, default, help_) in enumerate(TEXT_PARAMS):
        raw = cols[i % 3].text_input(label, default, key=f"sw_p_{name}", help=help_)
        if raw.strip():
            space[name] = sweeps.parse_values(name, raw)
    opts = cols[2].multiselect(
        "Optimizers", list(options.OPTIMIZERS), key="sw_optimizer", placeholder="the preset's"
    )
    if opts:
        space["optimizer"] = opts
    presets = st.multiselect("Presets", list(architectures.PRESETS), key="sw_presets",
                             placeholder="only the preset above")  # fmt: skip
    if presets:
        space["preset"] = presets
    return space


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def _planned(
    base_json: str, space_json: str, mode: str, count: int | None, seed: int
) -> list[dict[str, Any]]:
    """Every trial's settings, each checked as Train would check it, so a refusal shows before Queue is pressed."""
    base = TrainRequest(**json.loads(base_json))
    sweep = sweeps.plan(base, json.loads(space_json), mode, count, seed)
    return [sweep.settings(t) for t in sweep.trials]


def form(dataset: str | None) -> None:
    if not dataset:
        st.info("Pick a dataset in the sidebar first.")
        return
    st.caption(f"Dataset: **{_shared.md_text(_shared.dataset_titles().get(dataset, dataset))}** (change it in the sidebar). "
               "Each trial is an ordinary run, trained one at a time in the background.")  # fmt: skip
    c1, c2, c3, c4 = st.columns(4)
    names = list(architectures.PRESETS)
    preset = c1.selectbox("Preset", names, index=names.index(options.DEFAULT_PRESET), key="sw_preset")
    epochs = c2.number_input("Epochs per trial", 1, 1000, 3, key="sw_epochs")
    mode = c3.radio("Search", options.SWEEP_MODES, horizontal=True, key="sw_mode")
    count = c4.number_input("Random trials", 1, options.MAX_SWEEP_TRIALS, 6, key="sw_count",
                            disabled=mode != "random")  # fmt: skip
    c1, c2 = st.columns(2)
    seed = c1.number_input("Seed", 0, 2**31 - 1, options.DEFAULT_SEED, key="sw_seed",
                           help="every trial's training seed (and the random search's draws)")  # fmt: skip
    limit = c2.number_input("Images per split (0 = all)", 0, 10_000_000, 0, step=500, key="sw_limit",
                            help="a quick sweep on part of the data")  # fmt: skip
    base = TrainRequest(
        dataset=dataset, preset=preset, epochs=int(epochs), seed=int(seed), limit=int(limit) or None
    )
    try:
        space = _space()
        trials = _planned(json.dumps(asdict(base)), json.dumps(space), mode,
                          int(count) if mode == "random" else None, int(seed))  # fmt: skip
    except UserError as exc:
        _shared.error(exc)
        return
    st.caption(f"{len(trials)} trial{'s' if len(trials) != 1 else ''}: "
               + "; ".join(sweeps.describe(t) for t in trials[:6]) + (" …" if len(trials) > 6 else ""))  # fmt: skip
    if st.button("Queue sweep", type="primary", key="sw_start", icon=":material/playlist_add:"):
        try:
            sweep = sweeps.create_sweep(
                base, space, mode, int(count) if mode == "random" else None, int(seed)
            )
            sweeps.ensure_runner()
        except UserError as exc:
            _shared.error(exc)
            return
        st.session_state.sw_pick = sweep.sweep_id
        st.toast(f"Queued {sweep.sweep_id}: {len(sweep.trials)} trials")


def _cancel(sweep_id: str) -> None:
    try:
        dropped, stopping = sweeps.cancel(sweep_id)
    except UserError as exc:
        st.session_state.sweeps_error = str(exc)
        return
    st.session_state.sweeps_note = (f"Cancelled {sweep_id}: {dropped} pending trial(s) dropped"
                                    + (", the running one asked to stop" if stopping else "") + ".")  # fmt: skip


def results(sweep_id: str, was_active: bool = False) -> None:
    """Progress, Cancel, the table (best first), parallel coordinates and parameter importance of one sweep."""
    try:
        sweep = sweeps.get_sweep(sweep_id)
    except UserError as exc:
        _shared.error(exc)
        return
    if was_active and sweep.done():
        st.rerun()  # once: the page stops polling, and the runs list and sidebar pick up the last trial
    rows = sweeps.trial_rows(sweep)
    counts = sweep.counts()
    finished = counts["finished"] + counts["cancelled"] + counts["refused"]
    st.progress(finished / max(len(sweep.trials), 1),
                text=f"{counts['finished']} of {len(sweep.trials)} trials finished · {counts['running']} running · "
                     f"{counts['pending']} pending" + (" · cancelled" if sweep.cancelled else ""))  # fmt: skip
    if not sweep.done():
        st.button("Cancel sweep", key=f"sw_cancel_{sweep_id}", on_click=_cancel, args=(sweep_id,),
                  icon=":material/cancel:", help="drop the pending trials and stop the running one (it keeps its model)")  # fmt: skip
        if counts["pending"] and not sweeps.runner_alive():
            st.caption("Waiting for the background runner to start…")
    st.dataframe(sweep_results.table(sweep, rows), hide_index=True, key=f"sw_table_{sweep_id}")
    fig = sweep_results.parallel_figure(sweep, rows)
    if fig is not None:
        st.plotly_chart(fig, key=f"sw_parcoords_{sweep_id}")
    imp = sweep_results.importance(sweep, rows)
    st.markdown("**Parameter importance**")
    if imp.rows:
        st.dataframe(imp.rows, hide_index=True, key=f"sw_importance_{sweep_id}")
    else:
        st.caption(imp.message)
    st.caption(f"A random forest (200 trees) predicts a trial's validation accuracy from its settings over the "
               f"{imp.trials} completed trials (learning rate, batch size and filters on a log scale, a choice by "
               "its position); importance is its mean decrease in impurity per setting, summing to 1. Correlation "
               "(numbers only) says which way a setting pushed. With few trials, read it as a hint.")  # fmt: skip


def render(dataset: str | None) -> None:
    for key, show in (("sweeps_error", _shared.error), ("sweeps_note", st.success)):
        if key in st.session_state:
            show(st.session_state.pop(key))
    with st.expander("New sweep", expanded=not sweeps.list_sweeps()):
        form(dataset)
    all_sweeps = sweeps.list_sweeps()
    if not all_sweeps:
        st.caption("No sweeps yet.")
        return
    labels = {s.sweep_id: s.label() for s in all_sweeps}
    if st.session_state.get("sw_pick") not in labels:
        st.session_state.sw_pick = all_sweeps[0].sweep_id
    picked = st.selectbox("Sweep", list(labels), key="sw_pick", format_func=lambda i: labels.get(i, i))
    active = not next(s for s in all_sweeps if s.sweep_id == picked).done()
    st.fragment(run_every=2.0 if active else None)(results)(picked, active)
