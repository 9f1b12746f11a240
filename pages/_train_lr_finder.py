"""Train page: "Find a learning rate" (the range test of core.training.lr_finder), its plot, and "Use it"."""

from __future__ import annotations

import streamlit as st

from core.errors import UserError
from core.training import lr_finder
from core.training.trainer import TrainRequest
from pages import _shared
from pages._train_form import KEEP_PREFIX

FOUND = "lr_found"
LR_WIDGET_MIN, LR_WIDGET_MAX = 1e-6, 1.0  # the form's learning-rate field


def _signature(req: TrainRequest) -> tuple:
    """What the curve depends on: a result found for other settings is not offered for these."""
    return (req.dataset, req.preset, req.batch_size, req.optimizer, req.seed, req.val_split,
            req.image_size, repr(req.builder), req.class_weights, req.weights)  # fmt: skip


def _use(preset: str, value: float) -> None:
    """on_click, so it runs before the form draws the learning-rate widget: its kept value becomes the
    suggestion, and the widget's own state is dropped so it starts from that value."""
    key = f"lr_{preset}"
    st.session_state[KEEP_PREFIX + key] = value
    st.session_state.pop(key, None)


def _run(req: TrainRequest, steps: int) -> None:
    bar = st.progress(0.0, text="Learning-rate range test: loading the images and building a fresh model…")

    def progress(f: float) -> None:
        bar.progress(min(1.0, f), text=f"Learning-rate range test… {f:.0%} of {steps} batches")

    try:
        st.session_state[FOUND] = (_signature(req), lr_finder.find_lr(req, steps=steps, progress=progress))
    except UserError as exc:
        _shared.error(exc)
    except Exception as exc:  # last resort (e.g. out of memory): one line, never a traceback
        _shared.error(f"learning-rate finder failed: {type(exc).__name__}: {exc}")
    finally:
        bar.empty()


def render(req: TrainRequest) -> None:
    c1, c2 = st.columns([1, 3], vertical_alignment="bottom")
    steps = c2.number_input("Batches for the range test", min_value=lr_finder.MIN_STEPS, max_value=lr_finder.MAX_STEPS,
                            value=lr_finder.DEFAULT_STEPS, step=50, key="lrf_steps",
                            help="One batch per learning rate, from 1e-7 upward, on a fresh copy of the model; "
                            "it stops once the loss diverges.")  # fmt: skip
    if c1.button("Find a learning rate", key="lr_find", icon=":material/search:"):
        _run(req, int(steps))
    found = st.session_state.get(FOUND)
    if not found or found[0] != _signature(req):
        return
    result: lr_finder.LRFinderResult = found[1]
    st.plotly_chart(lr_finder.figure(result), key="lr_find_chart")
    st.caption(lr_finder.describe(result) + ". Rule: the rate where the smoothed loss falls fastest.")
    if result.suggestion is not None:
        value = min(LR_WIDGET_MAX, max(LR_WIDGET_MIN, float(f"{result.suggestion:.2g}")))
        st.button(f"Use it: learning rate {value:g}", key="lr_use", icon=":material/check:", on_click=_use,
                  args=(req.preset, value))  # fmt: skip
