"""Fix in place on the Improve page: the fix callbacks every section uses, the undo list, retrain and compare."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import streamlit as st

from core.analysis import evaluation_runs
from core.data import fixes, renames
from core.errors import UserError
from core.training import progress, retrain, runs
from pages import _shared

SHOWN_ACTIONS = 50  # rows of the journal listed; older ones stay undoable by id from the CLI-free list below


def rel_path(dataset_root: Path | None, path: str) -> str:
    """A dataset file as the fixes journal names it: relative to the dataset folder, with forward slashes."""
    p = Path(path)
    if dataset_root is not None and p.is_absolute():
        try:
            return p.relative_to(dataset_root).as_posix()
        except ValueError:
            return path
    return path.replace("\\", "/")


def _changed() -> None:
    """Counts, splits and pictures depend on the files: drop what the page cached about them."""
    _shared.catalog.clear()
    st.session_state.imp_fix_gen = st.session_state.get("imp_fix_gen", 0) + 1


def generation() -> int:
    """Bumped by every fix and undo in this session: a cache key for views of the dataset's files."""
    return int(st.session_state.get("imp_fix_gen", 0))


def fix(
    dataset: str, kind: str, paths: Sequence[str], to_class: str | Mapping[str, str] | None = None
) -> None:
    """on_click of every fix button (a callback runs before the page is drawn, so the page shows the new state)."""
    try:
        done, failed = fixes.apply(dataset, kind, list(paths), to_class)
    except UserError as exc:
        st.session_state.imp_error = str(exc)
        return
    _changed()
    what = {"relabel": "relabelled", "set_aside": "set aside", "keep": "kept"}[kind]
    note = f"{len(done)} image{'s' if len(done) != 1 else ''} {what}"
    if len(done) == 1 and kind == "relabel":
        note = f"Relabelled {done[0].path} as {done[0].to_class}"
    if failed:
        note += f"; {len(failed)} could not be: {failed[0]}"
    st.session_state.imp_notice = note


def _undo(dataset: str, action_id: int | None) -> None:
    try:
        undone = fixes.undo(dataset, action_id)
    except UserError as exc:
        st.session_state.imp_error = str(exc)
        return
    _changed()
    st.session_state.imp_notice = (
        "Undone: "
        + "; ".join(a.describe() for a in undone[:3])
        + (f" (and {len(undone) - 3} more)" if len(undone) > 3 else "")
    )


def notices() -> None:
    """The outcome of the last fix or undo (kept by the callback for this run of the page)."""
    if msg := st.session_state.pop("imp_error", None):
        _shared.error(msg)
    if msg := st.session_state.pop("imp_notice", None):
        st.success(msg, icon=":material/check:")


def _when(t: float) -> str:
    return _shared.fmt_seconds(time.time() - t) + " ago"


def undo_list(dataset: str) -> None:
    st.subheader("Fixes made")
    actions = fixes.journal(dataset)
    live = [a for a in actions if not a.undone]
    if not actions:
        st.caption(
            "No fixes on this dataset yet. Relabel, set aside or keep images below; every fix can be undone."
        )
        return
    c1, c2 = st.columns([1, 3], vertical_alignment="bottom")
    c1.button("Undo last", key="imp_undo_last", icon=":material/undo:", disabled=not live,
              on_click=_undo, args=(dataset, None))  # fmt: skip
    aside = fixes.set_aside_paths(dataset)
    c2.caption(
        f"{len(live)} fix{'es' if len(live) != 1 else ''} in force"
        + (
            f"; {len(aside)} image(s) set aside in `{fixes.QUARANTINE_DIR}/` inside the dataset folder"
            if aside
            else ""
        )
    )
    rows = [
        {"#": a.id, "fix": a.describe(), "when": _when(a.at), "state": "undone" if a.undone else "in force"}
        for a in actions[:SHOWN_ACTIONS]
    ]
    st.dataframe(rows, hide_index=True, key="imp_journal")
    if live:
        labels = {a.id: f"#{a.id} {a.describe()}" for a in live}
        c3, c4 = st.columns([3, 1], vertical_alignment="bottom")
        chosen = c3.selectbox("Undo a chosen fix (with the rest of its bulk action)", list(labels),
                              format_func=labels.get, key="imp_undo_pick")  # fmt: skip
        c4.button("Undo", key="imp_undo_chosen", on_click=_undo, args=(dataset, chosen))


# --------------------------------------------------------------------------------------------- retrain + compare


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
    _shared.use_run(run_id)
    _shared.follow_run(run_id)
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
