"""Fix in place on the Improve page: the fix callbacks every section uses and the undo list (retrain: _improve_retrain)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import streamlit as st

from core.data import fixes
from core.errors import UserError
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
