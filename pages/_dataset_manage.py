"""Datasets page: import (a zip or a folder), delete to the trash with a confirm, and undo for the session."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from core.data import datasets
from core.data.importer import import_dataset, import_uploaded_files
from core.errors import UserError
from core.paths import EMBEDDED_DATASET
from pages import _shared


def _import(zip_file, folder: list, name: str):
    if zip_file is not None and folder:
        raise UserError("pick either a zip or a folder, not both")
    if folder:
        return import_uploaded_files([(f.name, f.getvalue()) for f in folder], name)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "upload.zip"
        p.write_bytes(zip_file.getvalue())
        return import_dataset(p, name or Path(zip_file.name).stem)


def _import_form() -> None:
    st.caption("Classes as folders at the top (or inside one wrapping folder), optionally split into "
               "train/ validation/ test/. Only images are kept; each is checked and re-encoded.")  # fmt: skip
    c1, c2 = st.columns(2)
    up = c1.file_uploader("Dataset zip", type=["zip"], key="import_zip")
    folder = c2.file_uploader("…or a folder", accept_multiple_files="directory", key="import_folder")
    name = st.text_input(
        "Name", key="import_name", placeholder="e.g. jedi-sith (blank: the zip or folder name)"
    )
    if st.button("Import", key="import_button", disabled=up is None and not folder):
        try:
            rep = _import(up, folder or [], name.strip())
        except UserError as exc:
            _shared.error(exc)
            return
        _shared.catalog.clear()
        st.session_state.pending_dataset = rep.name
        st.session_state.import_report = (rep.name, rep.imported, rep.skipped)
        st.rerun()


def import_box() -> None:
    """Its body runs only while it is open (the expander reruns the page when toggled). A first visit then loads
    no uploader or text-field code: ~12 requests that queued ahead of the sample pictures (a browser opens 6
    connections per host), measured in bench/bench_page_paint.py."""
    box = st.expander("Import a dataset (a zip, or a folder of class folders)", icon=":material/upload:",
                      key="import_expander", on_change="rerun")  # fmt: skip
    if box.open:
        with box:
            _import_form()
    if "import_report" in st.session_state:
        name, imported, skipped = st.session_state.pop("import_report")
        st.success(f"Imported {imported} images into {_shared.md_text(name)}.")
        if skipped:
            st.dataframe(
                {"skipped": [f for f, _ in skipped], "why": [w for _, w in skipped]}, hide_index=True
            )


def _delete(name: str) -> None:
    """on_click of the confirm button, bound to the dataset it asked about."""
    entry = _shared.guarded(datasets.delete_dataset, name, "datasets_error")
    if entry is None:
        return
    st.session_state.setdefault("deleted_datasets", []).append((entry, name))
    _shared.catalog.clear()


def _undo(entry: str) -> None:
    name = _shared.guarded(datasets.restore_dataset, entry, "datasets_error")
    if name is None:
        return
    kept = st.session_state.get("deleted_datasets", [])
    st.session_state.deleted_datasets = [d for d in kept if d[0] != entry]
    _shared.catalog.clear()
    st.session_state.pending_dataset = name  # the sidebar picks it before its widget is drawn


def undo_box() -> None:
    if "datasets_error" in st.session_state:
        _shared.error(st.session_state.pop("datasets_error"))
    for entry, name in st.session_state.get("deleted_datasets", [])[-3:]:
        c1, c2 = st.columns([5, 1], vertical_alignment="center")
        c1.caption(f"Moved dataset **{_shared.md_text(name)}** to the trash.")
        c2.button("Undo", key=f"undo_dataset_{entry}", on_click=_undo, args=(entry,), icon=":material/undo:")


def delete_box(info: datasets.DatasetInfo) -> None:
    """Only imported folders can go; the embedded sample and the built-in sets are read-only."""
    if info.kind != "folder" or info.name == EMBEDDED_DATASET:
        return
    with st.popover("Delete dataset", icon=":material/delete:"):
        st.write(f"Move dataset **{_shared.md_text(info.name)}** ({info.total:,} images) to the trash? "
                 "You can undo it in this session.")  # fmt: skip
        st.button("Yes, delete", key=f"confirm_delete_dataset_{info.name}", type="primary", on_click=_delete,
                  args=(info.name,))  # fmt: skip
