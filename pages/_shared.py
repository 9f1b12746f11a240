"""UI pieces several pages share: the sidebar pickers, cached catalog and models, one-line errors."""

from __future__ import annotations

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
from core.paths import EMBEDDED_DATASET
from core.training import jobs, progress, runs, sweeps

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
    sidebar()


PAGES = [
    ("pages/datasets.py", "Datasets", ":material/photo_library:"),
    ("pages/train.py", "Train", ":material/model_training:"),
    ("pages/runs.py", "Runs", ":material/table_rows:"),
    ("pages/classify.py", "Classify", ":material/image_search:"),
    ("pages/inspect.py", "Inspect", ":material/layers:"),
    ("pages/evaluate.py", "Evaluate", ":material/analytics:"),
    ("pages/improve.py", "Improve", ":material/healing:"),
]


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


def follow_run(run_id: str) -> None:
    """The Train page calls this after starting a run: the active run moves to it once it has saved a model."""
    st.session_state.follow_run = run_id


ECHO_GRACE_S = 5.0


def _picked_run() -> None:
    """A person picked a run in the sidebar: that choice wins over following the run they started."""
    st.session_state.follow_run = None


def use_run(run_id: str) -> None:
    """Make a run active from a button (a callback, so it runs before the sidebar widget is drawn). Also kept as
    pending: a button inside a fragment reruns only the fragment, so the browser still holds the sidebar's old
    value and sends it back with the next full rerun; the pending choice wins over that stale value."""
    st.session_state.active_run = run_id
    st.session_state.pending_run = run_id
    st.session_state.chosen_run = (run_id, time.time())
    _picked_run()


def run_label(run: runs.Run) -> str:
    return progress.warning_marker(run) + run.short_label()


def _active_run_picker() -> None:
    with_model = [r for r in list_runs() if r.has_model]
    ids = [r.run_id for r in with_model]
    labels = {r.run_id: run_label(r) for r in with_model}
    if not ids:
        st.session_state.active_run = None
        st.caption("No trained model yet: train one on the Train page.")
        return
    following = st.session_state.get("follow_run")
    pending = st.session_state.pop("pending_run", None)
    chosen = st.session_state.get("chosen_run")
    if pending is None and chosen and time.time() - chosen[1] < ECHO_GRACE_S:
        # a request the browser sent before it drew the button's choice carries the old sidebar value (and fires
        # _picked_run); for a few seconds after a button picked a run, that echo cannot undo it
        pending = chosen[0]
    if pending in ids:
        st.session_state.active_run = pending
    elif following in ids:  # the run just started has saved a model (after its first epoch) or has finished
        st.session_state.active_run = following
    elif st.session_state.get("active_run") not in ids:
        st.session_state.active_run = ids[0]
    st.selectbox(
        "Active run", ids, key="active_run", format_func=lambda i: labels.get(i, i), on_change=_picked_run
    )


def sidebar() -> None:
    """Active dataset and active run, shared by every page through session state."""
    titles = dataset_titles()
    names = list(titles)
    if "pending_dataset" in st.session_state:  # set by a page (e.g. after an import) before the widget exists
        st.session_state.active_dataset = st.session_state.pop("pending_dataset")
    st.session_state.setdefault("active_dataset", EMBEDDED_DATASET if EMBEDDED_DATASET in names else names[0])
    if st.session_state.active_dataset not in names:
        st.session_state.active_dataset = names[0]
    with st.sidebar:
        st.markdown("### ConvNet Studio")
        for path, title, icon in PAGES:
            st.page_link(path, label=title, icon=icon)
        st.divider()
        st.selectbox("Dataset", names, key="active_dataset", format_func=lambda n: titles.get(n, n))
        _active_run_picker()
    resume_sweeps()


def resume_sweeps(every_s: float = 10.0) -> None:
    """A sweep queue left by a Streamlit restart or a killed runner resumes as soon as any page loads."""
    if time.time() - st.session_state.get("sweeps_checked", 0.0) < every_s:
        return
    st.session_state.sweeps_checked = time.time()
    try:
        sweeps.ensure_runner()
    except (UserError, OSError):
        pass  # the queue is busy (another session is starting the runner): the next page load checks again


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


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return (
        f"{s // 3600}h {s % 3600 // 60}m" if s >= 3600 else (f"{s // 60}m {s % 60}s" if s >= 60 else f"{s}s")
    )


def now() -> float:
    return time.time()
