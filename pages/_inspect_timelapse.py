"""Inspect's time-lapse: the active run's recorded epochs for one pinned image, with an epoch slider and Play.

A fragment, so moving the slider redraws only this view; Play gives the fragment a timer that advances the
slider one recorded epoch a tick and stops at the last.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.analysis import timelapse_frames
from core.errors import UserError
from core.training import recordings, runs
from pages import _model_input, _shared

FRAME_S = 0.8  # seconds per epoch while playing
PLAYING = "tl_playing"  # the run id being played, or None
SKIP_ADVANCE = "tl_skip"  # the run that starts playing shows its first epoch before the first tick
EPOCH_KEY = "tl_epoch"
TITLE = "Time-lapse: watch this run learn"


def _stamp(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


@st.cache_data(max_entries=64, show_spinner=False)
def _frame(run_dir: str, epoch: int, n_layers: int, stamp: int) -> recordings.Frame:
    return recordings.read_frame(Path(run_dir), epoch, n_layers)


@st.cache_data(max_entries=8, show_spinner=False)
def _pinned(run_dir: str, stamp: int) -> np.ndarray:
    return recordings.read_pinned(Path(run_dir))


def render() -> None:
    """Called by Inspect: the active run's time-lapse, when it recorded one (nothing for an uploaded model)."""
    if (
        st.session_state.get("ins_model_source", _model_input.MODEL_SOURCES[0])
        != _model_input.MODEL_SOURCES[0]
    ):
        return
    run = _shared.active_run()
    if run is None or recordings.read_index(run.path) is None:
        return
    playing = st.session_state.get(PLAYING) == run.run_id
    with st.container(border=True):
        # a toggle, not an expander: a closed expander's content is still computed and sent on every rerun
        if st.toggle(TITLE, key="tl_show"):
            st.fragment(_view, run_every=FRAME_S if playing else None)(run.run_id)


def _label(epoch: int) -> str:
    return "before training" if epoch == 0 else f"epoch {epoch}"


def _pause() -> None:
    st.session_state[PLAYING] = None


def _advance(run_id: str, epochs: list[int]) -> None:
    """One tick of Play: the next recorded epoch; after the last, stop (a full rerun drops the timer)."""
    if st.session_state.pop(SKIP_ADVANCE, None) == run_id:
        return
    current = st.session_state.get(EPOCH_KEY)
    if current in epochs and current != epochs[-1]:
        st.session_state[EPOCH_KEY] = epochs[epochs.index(current) + 1]
        return
    st.session_state[PLAYING] = None
    st.rerun()


def _view(run_id: str) -> None:
    try:
        run = runs.get_run(run_id)
    except UserError:
        return
    index = recordings.read_index(run.path)
    if index is None:
        return
    epochs = index.epochs
    playing = st.session_state.get(PLAYING) == run_id
    if playing:
        _advance(run_id, epochs)
    if st.session_state.get(EPOCH_KEY) not in epochs:
        st.session_state[EPOCH_KEY] = epochs[-1]
    cost = np.mean(index.seconds[1:]) if len(index.seconds) > 1 else None
    st.caption(
        f"Recorded during training for {len(index.images)} validation images the run never trained on: "
        f"{len(epochs)} snapshots (before training and after each epoch), the first maps of each conv layer, "
        "Grad-CAM of the predicted class and every class's probability"
        + (f" ({cost * 1000:.0f} ms an epoch to record)." if cost is not None else ".")
    )
    pick, slide, play = st.columns([2, 4, 1.3], vertical_alignment="bottom")
    if play.button("Pause" if playing else "Play", key="tl_play",
                   icon=":material/pause:" if playing else ":material/play_arrow:"):  # fmt: skip
        if playing:
            st.session_state[PLAYING] = None
        else:
            st.session_state[PLAYING] = st.session_state[SKIP_ADVANCE] = run_id
            if st.session_state.get(EPOCH_KEY) == epochs[-1]:
                st.session_state[EPOCH_KEY] = epochs[0]
        st.rerun()  # the whole app: the fragment's timer starts or stops there
    i = pick.selectbox("Pinned image", range(len(index.images)), format_func=index.label, key="tl_image")
    if len(epochs) > 1:
        epoch = slide.select_slider(
            "Epoch", options=epochs, key=EPOCH_KEY, format_func=_label, on_change=_pause
        )
    else:
        epoch = epochs[0]
        slide.caption(f"Only {_label(epoch)} is recorded so far.")
    try:
        _show(run.path, index, i, epoch)
    except UserError as exc:
        _shared.error(exc)


def _show(run_dir: Path, index: recordings.TimeLapseIndex, i: int, epoch: int) -> None:
    folder = recordings.timelapse_dir(run_dir)
    frame = _frame(str(run_dir), epoch, len(index.layers), _stamp(folder / recordings.frame_name(epoch)))
    pinned = _pinned(str(run_dir), _stamp(folder / recordings.PINNED_FILE))
    img = index.images[i]
    names = index.class_names
    probs = np.nan_to_num(frame.probs[i].astype(np.float64), nan=0.0)
    best = int(np.argmax(probs))
    st.markdown(f"**{_label(epoch).capitalize()}** · predicted **{_shared.md_text(names[best])}** {probs[best]:.1%} · "
                f"true class {_shared.md_text(str(img.get('class', '?')))}")  # fmt: skip
    left, right = st.columns([1, 1.6])
    explained = names[int(frame.cam_class[i])]
    left.image(
        timelapse_frames.cam_overlay(pinned[i], frame.cam[i], bool(frame.evidence[i])),
        caption=f"Grad-CAM for {explained}, {_label(epoch)}" if frame.evidence[i]
        else f"{_label(epoch)}: Grad-CAM found no region to credit",
    )  # fmt: skip
    true = int(img.get("label", -1))
    colours = ["#2e7d32" if k == true else "#5c6bc0" for k in range(len(names))]
    fig = go.Figure(go.Bar(x=probs, y=names, orientation="h", marker_color=colours))
    fig.update_layout(height=max(160, 26 * len(names)), margin=dict(l=0, r=0, t=10, b=0),
                      xaxis=dict(range=[0, 1.04], tickformat=".0%", title="probability (green: true class)"),
                      yaxis=dict(type="category", autorange="reversed"))  # fmt: skip
    right.plotly_chart(fig, key="tl_probs", config={"displayModeBar": False})
    for j, (layer, maps) in enumerate(zip(index.layers, frame.maps, strict=True)):
        if j % 2 == 0:
            cols = st.columns(2)
        h, w, c = layer.get("shape", ["?", "?", "?"])
        shown = maps.shape[-1]
        first = f"first {shown} of {c}" if shown != c else f"{c}"
        cols[j % 2].image(timelapse_frames.layer_grid(maps[i]),
                          caption=f"{layer.get('name')} · {_label(epoch)}: {first} maps of {h}×{w}")  # fmt: skip
