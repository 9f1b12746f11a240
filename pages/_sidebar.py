"""The sidebar every page shares: page links, the active dataset and the active run, and the buttons that pick
a run (their choice must survive a request the browser sent before it drew it)."""

from __future__ import annotations

import time

import streamlit as st

from core.errors import UserError
from core.paths import EMBEDDED_DATASET
from core.training import progress, runs, sweeps
from pages._shared import dataset_titles, list_runs

PAGES = [
    ("pages/datasets.py", "Datasets", ":material/photo_library:"),
    ("pages/train.py", "Train", ":material/model_training:"),
    ("pages/runs.py", "Runs", ":material/table_rows:"),
    ("pages/classify.py", "Classify", ":material/image_search:"),
    ("pages/inspect.py", "Inspect", ":material/layers:"),
    ("pages/evaluate.py", "Evaluate", ":material/analytics:"),
    ("pages/improve.py", "Improve", ":material/healing:"),
]


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
