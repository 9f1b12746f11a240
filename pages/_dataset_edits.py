"""The Build section's edits, run from widget callbacks: each calls `core.data.editing`, keeps a refusal for the next
run to show in one line (a callback cannot draw), offers Undo for a removal, and refreshes the catalog's counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from core.data import browse, editing
from core.errors import UserError
from pages import _shared


def changed(dataset: str | None = None) -> None:
    """After any edit: fresh catalog counts, and a dataset with images becomes the active one."""
    _shared.catalog.clear()
    if dataset and any(info.name == dataset for info in _shared.catalog()):
        st.session_state.pending_dataset = dataset


def act(action: Callable[..., Any], *args: Any, removed: str | None = None) -> object:
    """Run an edit from a callback; a refusal is kept for the next run to show (a callback cannot draw)."""
    try:
        result = action(*args)
    except UserError as exc:
        st.session_state.build_error = str(exc)
        return None
    if removed is not None:  # a removal: offer Undo for it
        st.session_state.setdefault("build_removed", []).append((args[0], str(result), removed))
    changed(args[0])
    return True if result is None else result  # None means refused


def undo(dataset: str, entry: str) -> None:
    if act(editing.restore, dataset, entry) is not None:
        st.session_state.build_removed = browse.without_removal(
            st.session_state.get("build_removed", []), dataset, entry
        )
