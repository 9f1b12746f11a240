"""The Build section's images: add them to a class from files, a folder or the webcam, and browse a class in a paged,
searchable grid whose images move to another class or go to the trash, with undo. Which images a page shows, their
captions and the session's counts are `core.data.browse`; every edit is `pages._dataset_edits.act`."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.data import browse, editing
from core.data.images import ALLOWED_EXTENSIONS
from core.errors import UserError
from pages import _shared
from pages._dataset_edits import act, undo

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


# ---------------------------------------------------------------- adding images


def _add(dataset: str, cls: str, files: list[tuple[str, bytes]], split: str | None) -> None:
    rep = act(editing.add_images, dataset, cls, files, split)
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
        rep = act(editing.add_images, dataset, cls, [("webcam.jpg", shot.getvalue())], split)
        if isinstance(rep, editing.AddReport) and rep.added:
            st.session_state.build_shots = browse.with_shot(
                st.session_state.get("build_shots", {}), dataset, cls
            )
        elif isinstance(rep, editing.AddReport):
            st.session_state.build_report = rep  # why the shot was not kept
        st.rerun()  # counts, grid and the sidebar's dataset follow; a refusal shows at the top
    shots = browse.shots_in(st.session_state.get("build_shots", {}), dataset)
    if shots:
        st.caption("Webcam shots this session: " + ", ".join(f"**{c}** {n}" for c, n in shots.items())
                   + " · take another with *Clear photo*, then the shutter.")  # fmt: skip


def add_box(t: editing.DatasetTree, cls: str) -> None:
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


def report() -> None:
    rep = st.session_state.pop("build_report", None)
    if rep is None:
        return
    if rep.added:
        st.success(
            f"Added {len(rep.added)} image(s) to {_shared.md_text(rep.cls)}.", icon=":material/check_circle:"
        )
    if rep.skipped:
        st.warning(f"Skipped {len(rep.skipped)} file(s).")
        st.dataframe({"skipped": [f for f, _ in rep.skipped], "why": [w for _, w in rep.skipped]},
                     hide_index=True)  # fmt: skip


# ---------------------------------------------------------------- the grid


def _move(dataset: str, rel: str, key: str) -> None:
    to = st.session_state.get(key)
    if to:
        act(editing.move_image, dataset, rel, to)


def grid(t: editing.DatasetTree, cls: str) -> None:
    query = st.text_input("Search file names", key="build_search", placeholder="part of a file name")
    found = editing.images(t.name, cls, query)
    pages = browse.page_count(len(found), PAGE_SIZE)
    if st.session_state.get("build_page", 1) > pages:
        st.session_state.build_page = pages
    view = browse.grid_page(found, st.pagination(pages, key="build_page") if pages > 1 else 1, PAGE_SIZE)
    st.caption(f"{view.found:,} image(s) in **{_shared.md_text(cls)}**" + (f" matching “{_shared.md_text(query)}”" if query else "")
               + (f" · showing {view.first}–{view.last}" if view.shown else ""))  # fmt: skip
    others = browse.move_targets(t.classes, cls)
    mtime = t.path.stat().st_mtime
    cols = st.columns(COLUMNS)
    for i, tile in enumerate(browse.tiles(view.shown, t.layout)):
        rel, name = tile.rel, tile.name
        with cols[i % COLUMNS]:
            thumb = _thumb(t.name, rel, mtime)
            if thumb is None:
                st.caption(f"{_shared.md_text(name)} (unreadable)")
            else:
                st.image(thumb, caption=tile.caption)
            with st.popover("Edit", key=f"build_edit_{rel}"):
                if others:
                    key = f"build_to_{rel}"
                    st.selectbox("Move to class", others, key=key)
                    st.button("Move", key=f"build_mv_{rel}", on_click=_move, args=(t.name, rel, key))
                st.button("Remove (to the trash)", key=f"build_rm_{rel}", on_click=act,
                          args=(editing.remove_image, t.name, rel), kwargs={"removed": name})  # fmt: skip


def undo_list(dataset: str) -> None:
    for d, entry, label in browse.recent_removals(st.session_state.get("build_removed", []), dataset):
        c1, c2 = st.columns([5, 1], vertical_alignment="center")
        c1.caption(f"Moved {_shared.md_text(label)} to the trash.")
        c2.button(
            "Undo", key=f"build_undo_{d}_{entry}", on_click=undo, args=(d, entry), icon=":material/undo:"
        )
