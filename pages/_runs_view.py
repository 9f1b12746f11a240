"""The runs list on the Train page: pick active, overlay curves, delete with confirmation, export."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import export, progress, runs
from core.errors import UserError
from pages import _shared


@st.cache_data(show_spinner="Exporting…", max_entries=4)
def _export_bytes(run_id: str, fmt: str, mtime: int) -> tuple[str, bytes]:
    import tempfile
    from pathlib import Path

    run = runs.get_run(run_id)
    with tempfile.TemporaryDirectory() as tmp:
        name = export.default_name(run_id, fmt)
        out = export.export(run.path, fmt, Path(tmp) / name)
        if out.is_dir():  # SavedModel: zip the folder for download
            import shutil

            out = Path(shutil.make_archive(str(out), "zip", out))
        return out.name, out.read_bytes()


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


def export_active() -> None:
    """Export follows the active run (sidebar), so it is one click away after training."""
    run = _shared.active_run()
    if run is None or not run.has_model:
        return
    st.subheader("Export")
    st.caption(f"Active run **{run.run_id}**")
    _export_box(run)


def render() -> None:
    st.subheader("Runs")
    all_runs = _shared.list_runs()
    if not all_runs:
        st.caption("No runs yet.")
        return
    table = pd.DataFrame(progress.runs_table(all_runs))
    picked = st.dataframe(
        table, hide_index=True, key="runs_table", on_select="rerun", selection_mode="multi-row"
    )
    rows = picked.selection.rows if picked else []
    chosen = [all_runs[i] for i in rows if i < len(all_runs)]
    if not chosen:
        st.caption("Select one run to make it active or delete it; two or more to compare their curves.")
        return
    if len(chosen) > 1:
        series = {r.run_id: runs.read_progress(r.path)[0] for r in chosen}
        st.plotly_chart(progress.curves_figure(series), key="compare_chart")
        return
    run = chosen[0]
    c1, c2 = st.columns(2)
    if run.has_model and c1.button("Use as active run", key="make_active"):
        st.session_state.active_run = run.run_id
        st.rerun()
    with c2.popover("Delete run", icon=":material/delete:"):
        st.write(f"Delete **{run.run_id}** and its model? This cannot be undone.")
        if st.button("Yes, delete", key="confirm_delete", type="primary"):
            try:
                runs.delete_run(run.run_id)
                st.rerun()
            except UserError as exc:
                _shared.error(exc)
