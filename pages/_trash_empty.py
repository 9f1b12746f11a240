"""Datasets page: "Empty trash" — remove deleted runs, datasets and images for good, after a confirmation."""

from __future__ import annotations

import streamlit as st

from core.data import trash, trash_empty
from core.errors import UserError
from core.validation import human_bytes
from pages import _shared


@st.cache_data(max_entries=4, show_spinner=False)
def _plan(stamp: tuple) -> list[trash_empty.PurgeItem]:
    """Sizes are walked again only when a trash folder changed (its mtime moves when an entry comes or goes)."""
    return trash_empty.plan()


def _stamp() -> tuple:
    out = []
    for _where, root in trash_empty.trash_roots():
        try:
            out.append((str(root), trash.trash_dir(root).stat().st_mtime_ns))
        except OSError:
            continue
    return tuple(out)


def _empty() -> None:
    """Removes what the confirmation showed, not what may have arrived since."""
    try:
        done, freed = trash_empty.empty(st.session_state.get("trash_plan") or [])
    except UserError as exc:
        st.session_state.trash_empty_error = str(exc)
        return
    for key in ("deleted_datasets", "deleted_runs"):  # their undo buttons would point at nothing now
        st.session_state.pop(key, None)
    st.session_state.trash_emptied = f"Emptied the trash: {done} entries, {human_bytes(freed)} freed."
    _shared.catalog.clear()


def empty_box() -> None:
    """Shown only while the trash holds something the app put there."""
    if "trash_empty_error" in st.session_state:
        _shared.error(st.session_state.pop("trash_empty_error"))
    if done := st.session_state.pop("trash_emptied", None):
        st.caption(done)
    items = st.session_state.trash_plan = _plan(_stamp())
    if not items:
        return
    with st.popover(f"Empty trash ({trash_empty.describe(items)})", icon=":material/delete_forever:"):
        st.write(f"Remove **{_shared.md_text(trash_empty.describe(items))}** (deleted runs, datasets and images) for good? "
                 "This cannot be undone.")  # fmt: skip
        st.button("Yes, empty the trash", key="confirm_empty_trash", type="primary", on_click=_empty)
