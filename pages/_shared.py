"""UI pieces several pages share: cached catalog, runs and models, one-line errors (the sidebar: _sidebar.py)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from core.analysis import calibration, unfamiliar
from core.data import datasets
from core.errors import UserError, first_line
from core.models import loading
from core.training import jobs, runs

T = TypeVar("T")

_entry = threading.local()


def entered(flag: bool) -> None:
    """app.py marks the span in which it runs a page, so a page can tell it was started through st.navigation."""
    _entry.active = flag


def page_guard() -> None:
    """Streamlit runs pages/*.py directly (its old pages/ directory mode) until some session has executed
    st.navigation, e.g. when the first request after a start is a deep link like /train (and in every AppTest
    run). Switch the app to st.navigation mode, as st.navigation itself does, and draw the sidebar app.py would."""
    if getattr(_entry, "active", False):
        return
    PagesManager.uses_pages_directory = False
    from pages._sidebar import sidebar

    sidebar()


@st.cache_data(ttl=10, show_spinner=False)
def catalog() -> list[datasets.DatasetInfo]:
    return datasets.catalog()


def dataset_titles() -> dict[str, str]:
    return {d.name: d.title + ("" if d.available else " (not downloaded)") for d in catalog()}


def list_runs() -> list[runs.Run]:
    return jobs.list_runs()


@st.cache_resource(max_entries=4, show_spinner="Loading model…")
def _load_run_model(run_id: str, mtime: int, calibrated: tuple[int, ...] = ()) -> loading.LoadedModel:
    return loading.load_run_model(runs.get_run(run_id))


def loaded_model(run: runs.Run) -> loading.LoadedModel:
    """Cached per run and model file mtime, so a retrained or re-saved model is picked up."""
    try:
        mtime = run.model_path.stat().st_mtime_ns
    except OSError:
        raise UserError(f"run {run.run_id} has no saved model (was it deleted?)") from None
    return _load_run_model(run.run_id, mtime, calibration.stamp(run.path) + unfamiliar.stamp(run.path))


def start_here() -> None:
    """Until the first run exists, say where to begin instead of leaving a new person among charts."""
    if list_runs():
        return
    with st.container(border=True):
        st.markdown("**Start here** — three steps from pictures to predictions:")
        st.page_link(
            "pages/datasets.py",
            label="1. Pick or import a dataset on Datasets",
            icon=":material/photo_library:",
        )
        st.page_link("pages/train.py", label="2. Train a model on Train", icon=":material/model_training:")
        st.page_link(
            "pages/classify.py", label="3. Classify new pictures on Classify", icon=":material/image_search:"
        )


def active_run() -> runs.Run | None:
    run_id = st.session_state.get("active_run")
    if not run_id:
        return None
    try:
        return runs.get_run(run_id)
    except UserError:
        return None


def guarded(action: Callable[[str], T], arg: str, error_key: str) -> T | None:
    """Run a delete or restore from an on_click callback: a callback cannot draw, so a refusal is kept in
    `st.session_state[error_key]` for the page to show on its next run."""
    try:
        return action(arg)
    except UserError as exc:
        st.session_state[error_key] = str(exc)
        return None


def error(exc: Exception | str) -> None:
    """One line, never a traceback."""
    st.error(first_line(exc) or "error", icon=":material/error:")


def need_run(page: str) -> runs.Run | None:
    run = active_run()
    if run is None or not run.has_model:
        st.info(
            f"{page} needs a trained model: train one on the Train page, then pick it as the active run in the sidebar."
        )
        return None
    return run


MARKDOWN_PUNCTUATION = frozenset("\\`*_[]<$~:")  # emphasis, code, links, LaTeX, strike-through, colours
LINE_START = re.compile(r"[#\-+>!]|\d+[.)]")  # a heading, list or quote, only at the front of a line


def md_text(s: str) -> str:
    """A name (a class folder's, say) shown as itself inside st.markdown: `[`, `*`, `$` or `:` would otherwise
    start a link, emphasis, LaTeX or a colour directive, and `1.` or `-` in front a list. Hyphens and dots inside
    a name stay as they are, so the text of `T-shirt` still reads `T-shirt`. A line break becomes a space."""
    s = " ".join(s.splitlines())
    out = "".join("\\" + ch if ch in MARKDOWN_PUNCTUATION else ch for ch in s)
    front = LINE_START.match(out)
    return out if front is None else f"{out[: front.end() - 1]}\\{out[front.end() - 1 :]}"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return (
        f"{s // 3600}h {s % 3600 // 60}m" if s >= 3600 else (f"{s // 60}m {s % 60}s" if s >= 60 else f"{s}s")
    )


def now() -> float:
    return time.time()
