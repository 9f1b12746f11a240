"""Retrain after fixing, on the Improve page: a new run with the audited run's settings, and before/after."""

from __future__ import annotations

import streamlit as st

from core.analysis import evaluation_runs
from core.data import fixes, renames
from core.errors import UserError
from core.training import progress, retrain, runs
from pages import _shared, _sidebar


def _retrain(run_id: str) -> None:
    try:
        new = retrain.retrain(run_id)
    except UserError as exc:
        st.session_state.imp_error = str(exc)
        return
    st.session_state.imp_retrained = (run_id, new.run_id)
    st.session_state.imp_notice = f"Started run {new.run_id} with the same settings as {run_id}"


def _open_on_evaluate(run_id: str) -> None:
    """Make the run active and hold it there (follow_run) until the person picks another in the sidebar: a rerun
    carrying the sidebar's previous value (a poll that was in flight) must not switch it back."""
    _sidebar.use_run(run_id)
    _sidebar.follow_run(run_id)
    st.session_state.imp_goto_evaluate = True


def _test_accuracy(run: runs.Run) -> float | None:
    result = evaluation_runs.cached_result(run) if run.has_model else None
    return None if result is None else float(result.accuracy)


def _compare(old_id: str, new_id: str) -> None:
    if st.session_state.pop("imp_goto_evaluate", False):  # here, since a button in a fragment reruns only it
        st.switch_page("pages/evaluate.py")
    try:
        old, new = runs.get_run(old_id), runs.get_run(new_id)
    except UserError as exc:
        _shared.error(exc)
        return
    rows = []
    for what, r in (("audited run", old), ("retrained run", new)):
        acc = r.status.get("best_val_accuracy")
        rows.append({
            "": what, "run": r.short_label(), "state": r.state,
            "best val acc": round(acc, 4) if isinstance(acc, int | float) else None,
            "saved evaluation acc": _test_accuracy(r), "id": r.run_id,
        })  # fmt: skip
    st.dataframe(rows, hide_index=True, key="imp_compare_table")
    series = {f"before ({old.run_id[-4:]})": runs.read_progress(old.path)[0],
              f"after ({new.run_id[-4:]})": runs.read_progress(new.path)[0]}  # fmt: skip
    if any(series.values()):
        st.plotly_chart(progress.curves_figure(series), key="imp_compare_chart")
    c1, c2 = st.columns(2)
    c1.button("Open the retrained run on Evaluate", key="imp_eval_new", icon=":material/analytics:",
              disabled=not new.has_model, on_click=_open_on_evaluate, args=(new.run_id,))  # fmt: skip
    c2.button("Open the audited run on Evaluate", key="imp_eval_old", on_click=_open_on_evaluate,
              args=(old.run_id,))  # fmt: skip


@st.fragment(run_every=2.0)
def _live_compare(old_id: str, new_id: str) -> None:
    """Polls the new run's folder while it trains (a job is another process); stops polling when it ends."""
    _compare(old_id, new_id)
    try:
        if runs.get_run(new_id).state not in runs.ACTIVE_STATES:
            st.rerun()
    except UserError:
        pass


def retrain_section(dataset: str, run: runs.Run | None) -> None:
    st.subheader("Retrain with these fixes")
    if run is None or not renames.same_dataset(run.config.dataset, dataset):
        st.caption(
            "Pick a run trained on this dataset as the active run (sidebar) to retrain it after fixing."
        )
        return
    created = run.status.get("created")
    created = float(created) if isinstance(created, int | float) else 0.0
    since = [a for a in fixes.journal(dataset) if not a.undone and a.kind != "keep" and a.at >= created]
    st.caption(
        f"Starts a new run with the settings of **{run.run_id}** ({run.config.preset}, {run.config.epochs} epochs) "
        f"on the dataset as it is now; {len(since)} file fix(es) made since that run was created."
    )
    st.button("Retrain with these fixes", key="imp_retrain", type="primary", icon=":material/replay:",
              on_click=_retrain, args=(run.run_id,))  # fmt: skip
    pair = st.session_state.get("imp_retrained")
    if not pair:
        return
    old_id, new_id = pair
    try:
        active = runs.get_run(new_id).state in runs.ACTIVE_STATES
    except UserError:
        return
    st.markdown(f"**Before and after** — {old_id} → {new_id}")
    if active:
        _live_compare(old_id, new_id)
    else:
        _compare(old_id, new_id)
