"""The dataset audit on the Improve page: start it as a background job, follow its progress, review what it found
(`pages/_improve_review.py`) and fix it in place.

The audit itself is `core.analysis.audit` (run_audit / start_audit_job / audit_status / cached_audit); it is
imported lazily, so the page still works, saying so, in a build without it. Paths in a report are relative to the
dataset folder, exactly as the fixes journal names them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import streamlit as st

from core.errors import UserError, first_line
from pages import _improve_review, _shared


def audit_module() -> ModuleType | str:
    """core.analysis.audit, or one line saying why it cannot be used."""
    try:
        return importlib.import_module("core.analysis.audit")
    except ImportError as exc:
        return f"audit not available in this build ({first_line(exc)})"


def _start(audit: ModuleType, dataset: str, run_id: str | None) -> None:
    try:
        audit.start_audit_job(dataset, run_id)
    except UserError as exc:
        st.session_state.imp_error = str(exc)


@st.fragment(run_every=1.0)
def _progress(audit: ModuleType, dataset: str, run_id: str | None) -> None:
    """Polls the audit job (another process) until it ends, then redraws the whole page with its results."""
    status = audit.audit_status(dataset, run_id)
    if status.get("state") == "running":
        frac = float(status.get("fraction") or 0.0)
        st.progress(min(1.0, max(0.0, frac)), text=f"Auditing… {status.get('stage') or ''} {frac:.0%}")
    else:
        st.rerun()


def _report(audit: ModuleType, dataset: str, run_id: str | None) -> Any:
    """The audit of the dataset as it is now; after a fix, the last one this session saw (fixed rows hidden)."""
    report = audit.cached_audit(dataset, run_id)
    key = (dataset, run_id)
    if report is not None:
        st.session_state.imp_report = (key, report)
        return report
    kept = st.session_state.get("imp_report")
    if kept and kept[0] == key:
        st.caption(
            "Showing the audit from before your latest fixes; run it again to look at the dataset afresh."
        )
        return kept[1]
    return None


def section(dataset: str, run_id: str | None, root: Path | None) -> None:
    st.subheader("Dataset audit")
    audit = audit_module()
    if isinstance(audit, str):
        st.info(audit, icon=":material/info:")
        return
    try:
        status = audit.audit_status(dataset, run_id)
    except UserError as exc:
        _shared.error(exc)
        return
    state = status.get("state")
    c1, c2 = st.columns([1, 3], vertical_alignment="center")
    c1.button("Run audit", key="imp_audit", icon=":material/troubleshoot:", disabled=state == "running",
              on_click=_start, args=(audit, dataset, run_id))  # fmt: skip
    c2.caption(
        "Looks for likely mislabelled images (out-of-fold predictions ranked by cleanlab), exact and near duplicates, "
        "test images with a twin in train, and outliers" + (f"; uses run {run_id}" if run_id else "") + "."
    )
    if state == "running":
        _progress(audit, dataset, run_id)
    elif state == "failed":
        _shared.error(status.get("error") or "the audit failed")
    report = _report(audit, dataset, run_id)
    if report is None:
        if state != "running":
            st.caption("No audit of this dataset as it is now: press Run audit.")
        return
    if root is None:
        st.caption("This dataset has no image files to fix in place.")
    _improve_review.results(dataset, report, root)
