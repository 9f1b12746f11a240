"""AppTest helpers: a fresh app per test with caches cleared, as design.md asks."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_page(page: str | None = None, timeout: float = 180, **state) -> AppTest:
    """Open the app (optionally on another page) with session state preset, e.g. active_dataset="tiny".

    AppTest drops the entry script's sidebar after switch_page, so tests preset the sidebar's state instead."""
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=timeout)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def texts(at: AppTest) -> str:
    """Everything written as markdown, captions, alerts and titles, for simple 'is it shown' assertions."""
    parts = []
    for kind in (
        "markdown",
        "caption",
        "title",
        "header",
        "subheader",
        "info",
        "success",
        "warning",
        "error",
    ):
        parts += [str(getattr(e, "value", "")) for e in getattr(at, kind)]
    return "\n".join(parts)


class PageSession:
    """One AppTest on the page under test; every run must end without an exception, on the trained run."""

    def __init__(self, at: AppTest, run_id: str) -> None:
        self.at, self.run_id = at, run_id

    def run(self) -> AppTest:
        self.at.run()
        assert not self.at.exception, self.at.exception
        assert self.at.session_state["active_run"] == self.run_id  # the sidebar picked the trained run
        return self.at


def open_trained_page(trained, monkeypatch, page: str) -> PageSession:
    """A page of the app pointed at a module's trained run (see tests.helpers.module_run)."""
    root, name, run = trained
    monkeypatch.setenv("CONVNET_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("CONVNET_RUNS_DIR", str(root / "runs"))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["active_dataset"] = name  # the Datasets page opens first; keep its quality check tiny
    at.run()
    at.switch_page(page)
    session = PageSession(at, run.run_id)
    session.run()
    return session
