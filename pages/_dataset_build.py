"""Datasets page: build a dataset here (Teachable Machine's flow) and tend it: classes, images from files, a folder or
the webcam, a paged and searchable grid whose images move or go to the trash, with undo. All work is
`core.data.editing`; this module reads widgets, calls it, and clears the catalog cache so counts follow."""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from core import options
from core.data import editing
from core.data.images import ALLOWED_EXTENSIONS
from core.errors import UserError
from core.paths import EMBEDDED_DATASET
from pages import _dataset_manage, _shared

PAGE_SIZE = 24  # thumbnails per page of a class
COLUMNS = 6
THUMB = 96  # px


@st.cache_data(show_spinner=False, max_entries=2048)
def _thumb(dataset: str, rel: str, mtime: float) -> np.ndarray | None:
    """Keyed by the dataset folder's time too, which every edit bumps (a moved name may hold another picture)."""
    try:
        return editing.thumbnail(dataset, rel, THUMB)
    except UserError:
        return None


def _changed(dataset: str | None = None) -> None:
    """After any edit: fresh catalog counts, and a dataset with images becomes the active one."""
    _shared.catalog.clear()
    if dataset and any(info.name == dataset for info in _shared.catalog()):
        st.session_state.pending_dataset = dataset


def _act(action, *args, removed: str | None = None) -> object:
    """Run an edit from a callback; a refusal is kept for the next run to show (a callback cannot draw)."""
    try:
        result = action(*args)
    except UserError as exc:
        st.session_state.build_error = str(exc)
        return None
    if removed is not None:  # a removal: offer Undo for it
        st.session_state.setdefault("build_removed", []).append((args[0], str(result), removed))
    _changed(args[0])
    return True if result is None else result  # None means refused


def _undo(dataset: str, entry: str) -> None:
    if _act(editing.restore, dataset, entry) is not None:
        kept = st.session_state.get("build_removed", [])
        st.session_state.build_removed = [r for r in kept if r[:2] != (dataset, entry)]


# ---------------------------------------------------------------- new dataset


def _create() -> None:
    name = st.session_state.get("build_new_name", "").strip()
    classes = [c.strip() for c in st.session_state.get("build_new_classes", "").split(",") if c.strip()]
    layout = st.session_state.get("build_new_layout", options.DATASET_LAYOUTS[0])
    if _act(editing.new_dataset, name, classes, layout) is not None:
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
    if _act(editing.rename_class, dataset, cls, new) is not None:
        st.session_state.build_class_want = new


def _add_class(dataset: str) -> None:
    cls = st.session_state.get("build_add_class", "").strip()
    if _act(editing.add_class, dataset, cls) is not None:
        st.session_state.build_class_want = cls
        st.session_state.build_add_class = ""


def _rename_dataset(dataset: str) -> None:
    new = st.session_state.get("build_rename_dataset", "").strip()
    if _act(editing.rename_dataset, dataset, new) is not None:
        st.session_state.build_dataset = new
        _changed(new)


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
            st.write(f"Move class **{cls}** ({t.total(cls)} images) to the trash? You can undo it.")
            st.button("Yes, delete class", key="build_delete_class", type="primary", on_click=_act,
                      args=(editing.delete_class, t.name, cls), kwargs={"removed": f"class {cls}"})  # fmt: skip
    with c4.popover("Dataset", icon=":material/settings:"):
        st.text_input(f"New name for {t.name}", key="build_rename_dataset")
        st.button(
            "Rename dataset", key="build_rename_dataset_button", on_click=_rename_dataset, args=(t.name,)
        )
        st.divider()
        st.button("Delete dataset (to the trash)", key="build_delete_dataset", on_click=_dataset_manage._delete,
                  args=(t.name,))  # fmt: skip


# ---------------------------------------------------------------- adding images


def _add(dataset: str, cls: str, files: list[tuple[str, bytes]], split: str | None) -> None:
    rep = _act(editing.add_images, dataset, cls, files, split)
    if isinstance(rep, editing.AddReport):
        st.session_state.build_report = rep


def _add_uploads(dataset: str, cls: str, key: str, split: str | None) -> None:
    """on_click of an Add button: the uploader's files go in, then the uploader is emptied (a fresh key)."""
    files = st.session_state.get(f"{key}_{st.session_state.get(key + '_n', 0)}") or []
    _add(dataset, cls, [(f.name, f.getvalue()) for f in files], split)
    st.session_state[key + "_n"] = st.session_state.get(key + "_n", 0) + 1


def _uploader(dataset: str, cls: str, split: str | None, key: str, label: str, directory: bool) -> None:
    wkey = f"{key}_{st.session_state.get(key + '_n', 0)}"
    files = st.file_uploader(label, accept_multiple_files="directory" if directory else True, key=wkey,
                             type=sorted(e.lstrip(".") for e in ALLOWED_EXTENSIONS),
                             max_upload_size=editing.MAX_FILE_BYTES >> 20)  # fmt: skip
    st.button(f"Add {len(files or [])} image(s) to {cls}", key=f"{key}_button", disabled=not files,
              on_click=_add_uploads, args=(dataset, cls, key, split), type="primary")  # fmt: skip


def _camera(dataset: str, cls: str, split: str | None) -> None:
    """Every new shot goes straight into the class; the count per class says how many this session took."""
    shot = st.camera_input(f"Take photos for {cls}", key="build_camera", width=480)
    if shot is not None and st.session_state.get("build_last_shot") != shot.file_id:
        st.session_state.build_last_shot = shot.file_id
        rep = _act(editing.add_images, dataset, cls, [("webcam.jpg", shot.getvalue())], split)
        if isinstance(rep, editing.AddReport) and rep.added:
            shots = st.session_state.setdefault("build_shots", {})
            shots[(dataset, cls)] = shots.get((dataset, cls), 0) + 1
        elif isinstance(rep, editing.AddReport):
            st.session_state.build_report = rep  # why the shot was not kept
        st.rerun()  # counts, grid and the sidebar's dataset follow; a refusal shows at the top
    shots = {c: n for (d, c), n in st.session_state.get("build_shots", {}).items() if d == dataset}
    if shots:
        st.caption("Webcam shots this session: " + ", ".join(f"**{c}** {n}" for c, n in shots.items())
                   + " · take another with *Clear photo*, then the shutter.")  # fmt: skip


def _add_box(t: editing.DatasetTree, cls: str) -> None:
    split = None
    if t.layout == "splits":
        split = st.radio("Into split", ["train", "validation", "test"], key="build_split", horizontal=True)
    files, folder, camera = st.tabs(["Files", "Folder", "Webcam"])
    with files:
        _uploader(t.name, cls, split, "build_files", f"Image files for {cls}", directory=False)
    with folder:
        _uploader(t.name, cls, split, "build_folder", f"A folder of images for {cls}", directory=True)
    with camera:
        _camera(t.name, cls, split)


def _report() -> None:
    rep = st.session_state.pop("build_report", None)
    if rep is None:
        return
    if rep.added:
        st.success(f"Added {len(rep.added)} image(s) to {rep.cls}.", icon=":material/check_circle:")
    if rep.skipped:
        st.warning(f"Skipped {len(rep.skipped)} file(s).")
        st.dataframe({"skipped": [f for f, _ in rep.skipped], "why": [w for _, w in rep.skipped]},
                     hide_index=True)  # fmt: skip


# ---------------------------------------------------------------- the grid


def _move(dataset: str, rel: str, key: str) -> None:
    to = st.session_state.get(key)
    if to:
        _act(editing.move_image, dataset, rel, to)


def _grid(t: editing.DatasetTree, cls: str) -> None:
    query = st.text_input("Search file names", key="build_search", placeholder="part of a file name")
    found = editing.images(t.name, cls, query)
    pages = max(1, math.ceil(len(found) / PAGE_SIZE))
    if st.session_state.get("build_page", 1) > pages:
        st.session_state.build_page = pages
    page = st.pagination(pages, key="build_page") if pages > 1 else 1
    shown = found[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    first = (page - 1) * PAGE_SIZE
    st.caption(f"{len(found):,} image(s) in **{cls}**" + (f" matching “{query}”" if query else "")
               + (f" · showing {first + 1}–{first + len(shown)}" if shown else ""))  # fmt: skip
    others = [c for c in t.classes if c != cls]
    mtime = t.path.stat().st_mtime
    cols = st.columns(COLUMNS)
    for i, rel in enumerate(shown):
        with cols[i % COLUMNS]:
            thumb = _thumb(t.name, rel, mtime)
            name = rel.rsplit("/", 1)[-1]
            if thumb is None:
                st.caption(f"{name} (unreadable)")
            else:
                st.image(thumb, caption=name if t.layout == "flat" else rel.split("/", 1)[0] + "/" + name)
            with st.popover("Edit", key=f"build_edit_{rel}"):
                if others:
                    key = f"build_to_{rel}"
                    st.selectbox("Move to class", others, key=key)
                    st.button("Move", key=f"build_mv_{rel}", on_click=_move, args=(t.name, rel, key))
                st.button("Remove (to the trash)", key=f"build_rm_{rel}", on_click=_act,
                          args=(editing.remove_image, t.name, rel), kwargs={"removed": name})  # fmt: skip


def _undo_list(dataset: str) -> None:
    for d, entry, label in st.session_state.get("build_removed", [])[-3:]:
        if d != dataset:
            continue
        c1, c2 = st.columns([5, 1], vertical_alignment="center")
        c1.caption(f"Moved {label} to the trash.")
        c2.button(
            "Undo", key=f"build_undo_{d}_{entry}", on_click=_undo, args=(d, entry), icon=":material/undo:"
        )


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
        _undo_list(dataset)
        cls = _class_bar(t)
        _manage_row(t, cls)
        if cls is None:
            return
        _add_box(t, cls)
        _report()
        _grid(t, cls)
