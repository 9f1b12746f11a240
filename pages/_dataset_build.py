"""Datasets page: build a dataset here (Teachable Machine's flow) and tend it: classes, images from files, a folder or
the webcam, a paged and searchable grid whose images move or go to the trash, with undo. All work is
`core.data.editing` (the grid's pages `core.data.browse`); this module draws the dataset and its classes, the images
are `pages/_dataset_images.py`, and every edit goes through `pages/_dataset_edits.py`."""

from __future__ import annotations

import streamlit as st

from core import options
from core.data import editing
from core.errors import UserError
from core.paths import EMBEDDED_DATASET
from pages import _dataset_edits, _dataset_images, _dataset_manage, _shared

# ---------------------------------------------------------------- new dataset


def _create() -> None:
    name = st.session_state.get("build_new_name", "").strip()
    classes = [c.strip() for c in st.session_state.get("build_new_classes", "").split(",") if c.strip()]
    layout = st.session_state.get("build_new_layout", options.DATASET_LAYOUTS[0])
    if _dataset_edits.act(editing.new_dataset, name, classes, layout) is not None:
        st.session_state.build_dataset = name
        st.session_state.build_new_name = ""


def _new_dataset_form() -> None:
    with st.popover("New dataset", icon=":material/add_photo_alternate:"):
        st.text_input("Name", key="build_new_name", placeholder="e.g. thumbs")
        st.text_input("Classes (comma-separated)", key="build_new_classes", value="up, down")
        st.radio("Layout", options.DATASET_LAYOUTS, key="build_new_layout", horizontal=True,
                 format_func=lambda o: {"flat": "one folder per class (80/20 split when training)",
                                        "splits": "train / validation / test"}.get(o, o))  # fmt: skip
        st.button("Create", key="build_create", type="primary", on_click=_create)


# ---------------------------------------------------------------- classes and the dataset itself


def _class_bar(t: editing.DatasetTree) -> str | None:
    """Pick the class images go to; counts per class are the running count of what was added."""
    if not t.classes:
        st.info("No classes yet: add one below.")
        return None
    want = st.session_state.pop(
        "build_class_want", None
    )  # set by an edit: the widget's options change with it
    if want in t.classes:
        st.session_state.build_class = want
    elif st.session_state.get("build_class") not in t.classes:
        st.session_state.build_class = t.classes[0]
    st.segmented_control("Class", t.classes, key="build_class", required=True,
                         format_func=lambda c: f"{c} · {t.total(c)}")  # fmt: skip
    return st.session_state.build_class


def _rename_class(dataset: str, cls: str) -> None:
    new = st.session_state.get("build_rename_class", "").strip()
    if _dataset_edits.act(editing.rename_class, dataset, cls, new) is not None:
        st.session_state.build_class_want = new


def _add_class(dataset: str) -> None:
    cls = st.session_state.get("build_add_class", "").strip()
    if _dataset_edits.act(editing.add_class, dataset, cls) is not None:
        st.session_state.build_class_want = cls
        st.session_state.build_add_class = ""


def _rename_dataset(dataset: str) -> None:
    new = st.session_state.get("build_rename_dataset", "").strip()
    if _dataset_edits.act(editing.rename_dataset, dataset, new) is not None:
        st.session_state.build_dataset = new
        _dataset_edits.changed(new)


def _manage_row(t: editing.DatasetTree, cls: str | None) -> None:
    c1, c2, c3, c4 = st.columns(4)
    with c1.popover("Add class", icon=":material/add:"):
        st.text_input("New class", key="build_add_class")
        st.button("Add", key="build_add_class_button", on_click=_add_class, args=(t.name,))
    if cls is not None:
        with c2.popover("Rename class", icon=":material/edit:"):
            st.text_input(f"New name for {cls}", key="build_rename_class")
            st.button("Rename", key="build_rename_class_button", on_click=_rename_class, args=(t.name, cls))
        with c3.popover("Delete class", icon=":material/delete:"):
            st.write(
                f"Move class **{_shared.md_text(cls)}** ({t.total(cls)} images) to the trash? You can undo it."
            )
            st.button("Yes, delete class", key="build_delete_class", type="primary", on_click=_dataset_edits.act,
                      args=(editing.delete_class, t.name, cls), kwargs={"removed": f"class {cls}"})  # fmt: skip
    with c4.popover("Dataset", icon=":material/settings:"):
        st.text_input(f"New name for {t.name}", key="build_rename_dataset")
        st.button(
            "Rename dataset", key="build_rename_dataset_button", on_click=_rename_dataset, args=(t.name,)
        )
        st.divider()
        st.button("Delete dataset (to the trash)", key="build_delete_dataset", on_click=_dataset_manage._delete,
                  args=(t.name,))  # fmt: skip


# ---------------------------------------------------------------- the section


def _pick_dataset(names: list[str]) -> str | None:
    """The dataset to edit follows the sidebar's when that one is editable; another can be picked here."""
    active = st.session_state.get("active_dataset")
    if st.session_state.get("build_follow") != active:
        st.session_state.build_follow = active
        if active in names:
            st.session_state.build_dataset = active
    if st.session_state.get("build_dataset") not in names:
        st.session_state.build_dataset = names[0] if names else None
    if not names:
        st.caption(f"Nothing to edit yet: {EMBEDDED_DATASET} is read-only. Create a dataset, or import one.")
        return None
    return st.selectbox("Dataset to edit", names, key="build_dataset")


def build_box() -> None:
    """The Build section of the Datasets page. Its body runs only while it is open (the expander reruns the page
    when toggled), so browsing a large dataset never pays for listing its classes and thumbnails."""
    box = st.expander("Build or edit a dataset (classes, uploads, webcam)", icon=":material/construction:",
                      key="build_expander", on_change="rerun")  # fmt: skip
    if not box.open:
        return
    with box:
        if "build_error" in st.session_state:
            _shared.error(st.session_state.pop("build_error"))
        _new_dataset_form()
        dataset = _pick_dataset(editing.editable_datasets())
        if dataset is None:
            return
        try:
            t = editing.tree(dataset)
        except UserError as exc:
            _shared.error(exc)
            return
        _dataset_images.undo_list(dataset)
        cls = _class_bar(t)
        _manage_row(t, cls)
        if cls is None:
            return
        _dataset_images.add_box(t, cls)
        _dataset_images.report()
        _dataset_images.grid(t, cls)
