"""Improve: find what is wrong with the data and the model (audit, hardest examples), fix it in place with undo,
retrain with the same settings and compare."""

from __future__ import annotations

import importlib

import streamlit as st

from core.data import datasets, renames
from core.errors import UserError
from pages import _improve_audit, _improve_fixes, _improve_hardest, _improve_retrain, _shared


def _calibration(run_id: str) -> None:
    """--- calibration hook: pages/_calibration.py (the calibration work) draws its section here when present ---"""
    try:
        module = importlib.import_module("pages._calibration")
    except ModuleNotFoundError as exc:
        if exc.name == "pages._calibration":
            return
        raise
    module.calibration_section(run_id)


def main() -> None:
    _shared.page_guard()
    st.title("Improve")
    dataset = st.session_state.get("active_dataset")
    run = _shared.active_run()
    try:
        info = datasets.get_dataset(dataset)
    except UserError as exc:
        _shared.error(exc)
        return
    root = info.path if info.kind == "folder" and dataset != datasets.EMBEDDED_DATASET else None
    audited = run.run_id if run is not None and renames.same_dataset(run.config.dataset, dataset) else None
    st.caption(f"Dataset **{_shared.md_text(info.title)}**" + (f" · run **{audited}**" if audited else " · no run of this dataset active")
               + (" · read-only: keep decisions only" if dataset == datasets.EMBEDDED_DATASET else ""))  # fmt: skip
    _improve_fixes.notices()
    _improve_audit.section(dataset, audited, root)
    _improve_hardest.section(dataset, run, root)
    _improve_fixes.undo_list(dataset)
    _improve_retrain.retrain_section(dataset, run)
    if run is not None and run.has_model:
        _calibration(run.run_id)


main()
