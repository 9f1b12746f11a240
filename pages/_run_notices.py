"""Notices the model pages show about the run they use: another dataset than the sidebar's, or still training."""

from __future__ import annotations

import streamlit as st

from core.training import run_notices, runs

ICONS = {"warning": ":material/warning:", "info": ":material/hourglass_top:"}


def show(run: runs.Run | None, page: str) -> list[run_notices.Notice]:
    """One line each, above the page's results; returns what was shown (pages may skip their own duplicates)."""
    notices = run_notices.run_notices(run, st.session_state.get("active_dataset"), page)
    for notice in notices:
        render = st.warning if notice.level == "warning" else st.info
        render(notice.text, icon=ICONS[notice.level])
    return notices
