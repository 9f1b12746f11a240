"""The runs list (Train and Runs pages): pick active, overlay curves, rename, note, tag, delete to the trash with
undo, export.

Table rows are positions, and positions move when a run is deleted, restored or started; so every action is bound
to a run id when its button is drawn, and the table's selection is cleared whenever the rows change.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from core.analysis import export
from core.data import renames
from core.data.fingerprint import short
from core.errors import UserError
from core.training import progress, runs
from pages import _shared, _sidebar


@st.cache_data(show_spinner="Exporting…", max_entries=4)
def _export_bytes(run_id: str, fmt: str, mtime: int) -> tuple[str, bytes, str]:
    import tempfile
    from pathlib import Path

    run = runs.get_run(run_id)
    checks: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        name = export.default_name(run_id, fmt)
        out = export.export(
            run.path, fmt, Path(tmp) / name, on_check=lambda f, c: checks.append(export.check_line(f, c))
        )
        if out.is_dir():  # SavedModel: zip the folder for download
            import shutil

            out = Path(shutil.make_archive(str(out), "zip", out))
        return out.name, out.read_bytes(), "; ".join(checks)


def _export_box(run: runs.Run) -> None:
    c1, c2 = st.columns([2, 3])
    fmt = c1.selectbox(
        "Export format", list(export.FORMATS), key="export_fmt", format_func=export.FORMAT_LABELS.get
    )
    if c1.button("Prepare download", key="export_prepare"):
        try:
            st.session_state.export_ready = (
                run.run_id,
                fmt,
                *_export_bytes(run.run_id, fmt, run.model_path.stat().st_mtime_ns),
            )
        except UserError as exc:
            _shared.error(exc)
    ready = st.session_state.get("export_ready")
    if ready and ready[0] == run.run_id and ready[1] == fmt:
        c2.download_button(f"Download {ready[2]}", ready[3], file_name=ready[2], key="export_download",
                           icon=":material/download:")  # fmt: skip
        if ready[4]:
            c2.caption(f"Checked against Keras: {ready[4]}")


def export_active() -> None:
    """Export follows the active run (sidebar), so it is one click away after training."""
    run = _shared.active_run()
    if run is None or not run.has_model:
        return
    st.subheader("Export")
    st.caption(f"Active run **{run.run_id}**")
    _export_box(run)


def _table_key() -> str:
    return f"runs_table_{st.session_state.get('runs_table_gen', 0)}"


def _clear_selection() -> None:
    """A new key gives a fresh table with nothing selected (and so no confirm left open for another run)."""
    st.session_state.runs_table_gen = st.session_state.get("runs_table_gen", 0) + 1


def _delete(run_id: str, label: str) -> None:
    """on_click of the confirm button, bound to the id it asked about, never to a row index."""
    entry = _shared.guarded(runs.delete_run, run_id, "runs_error")
    if entry is None:
        return
    st.session_state.setdefault("deleted_runs", []).append((entry, label))
    _clear_selection()


def _undo(entry: str) -> None:
    if _shared.guarded(runs.restore_run, entry, "runs_error") is None:
        return
    st.session_state.deleted_runs = [d for d in st.session_state.get("deleted_runs", []) if d[0] != entry]
    _clear_selection()


def _save_label(run_id: str) -> None:
    try:
        runs.set_label(run_id, name=st.session_state[f"name_{run_id}"], note=st.session_state[f"note_{run_id}"],
                       tags=st.session_state.get(f"tags_{run_id}"))  # fmt: skip
    except UserError as exc:
        st.session_state.runs_error = str(exc)


def _undo_box() -> None:
    for entry, label in st.session_state.get("deleted_runs", [])[-3:]:
        c1, c2 = st.columns([5, 1], vertical_alignment="center")
        c1.caption(f"Moved **{_shared.md_text(label)}** to the trash.")
        c2.button("Undo", key=f"undo_run_{entry}", on_click=_undo, args=(entry,), icon=":material/undo:")


def _one_run(run: runs.Run) -> None:
    label = _sidebar.run_label(run)
    c1, c2 = st.columns(2)
    if run.has_model:
        c1.button(
            "Use as active run",
            key=f"make_active_{run.run_id}",
            on_click=_sidebar.use_run,
            args=(run.run_id,),
        )
    with c2.popover("Delete run", icon=":material/delete:"):
        st.write(
            f"Move **{label}** (`{run.run_id}`) and its model to the trash? You can undo it in this session."
        )
        st.button("Yes, delete", key=f"confirm_delete_{run.run_id}", type="primary", on_click=_delete,
                  args=(run.run_id, label))  # fmt: skip
    for w in run.warnings:
        st.warning(w, icon=":material/warning:")
    if run.config.dataset_fingerprint:
        st.caption(
            f"Trained on **{run.config.dataset}**, fingerprint `{short(run.config.dataset_fingerprint)}`"
            + (
                f" · dataset renamed to **{moved}**"
                if (moved := renames.renamed_to(run.config.dataset))
                else ""
            )
        )
    c1, c2, c3, c4 = st.columns([2, 3, 2, 1], vertical_alignment="bottom")
    c1.text_input("Name", run.name, key=f"name_{run.run_id}", max_chars=80)
    c2.text_input("Note", run.note, key=f"note_{run.run_id}", max_chars=500)
    c3.text_input("Tags", ", ".join(run.tags), key=f"tags_{run.run_id}", help="comma-separated")
    c4.button("Save", key=f"save_label_{run.run_id}", on_click=_save_label, args=(run.run_id,))


def render(all_runs: list[runs.Run] | None = None,
           compare: Callable[[list[runs.Run]], None] | None = None) -> None:  # fmt: skip
    """The table of `all_runs` (default: every run); `compare` replaces the curves overlay and is shown for any
    selection (the Runs page's metric picker and hyperparameter table; that page has its own title)."""
    if compare is None:
        st.subheader("Runs")
        st.page_link("pages/runs.py", label="Filter, tag and compare runs, or queue a sweep, on the Runs page",
                     icon=":material/table_rows:")  # fmt: skip
    if "runs_error" in st.session_state:
        _shared.error(st.session_state.pop("runs_error"))
    _undo_box()
    all_runs = _shared.list_runs() if all_runs is None else all_runs
    if not all_runs:
        st.caption("No runs yet." if compare is None else "No run matches these filters.")
        return
    ids = [r.run_id for r in all_runs]
    if st.session_state.get("runs_table_ids", ids) != ids:
        _clear_selection()  # rows moved (a run started, deleted or restored elsewhere): a selection would shift
    st.session_state.runs_table_ids = ids
    table = pd.DataFrame(progress.runs_table(all_runs))
    picked = st.dataframe(
        table, hide_index=True, key=_table_key(), on_select="rerun", selection_mode="multi-row"
    )
    rows = picked.selection.rows if picked else []
    chosen = [all_runs[i] for i in rows if i < len(all_runs)]
    if not chosen:
        st.caption(
            "Select one run to make it active, rename or delete it; two or more to compare their curves."
        )
        return
    if len(chosen) == 1:
        _one_run(chosen[0])
    if compare is not None:
        compare(chosen)
    elif len(chosen) > 1:
        series = {r.run_id: runs.read_progress(r.path)[0] for r in chosen}
        st.plotly_chart(progress.curves_figure(series), key="compare_chart")
