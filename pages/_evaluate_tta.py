"""Evaluate page: the test-time augmentation toggle and its measured gain (core.analysis.tta)."""

from __future__ import annotations

import streamlit as st

from core.analysis import evaluation_runs, tta
from core.errors import UserError
from core.training import runs
from pages import _shared

RESULT = "tta_result"


def _measure(run: runs.Run, key: tuple) -> None:
    bar = st.progress(0.0, text="Test-time augmentation: scoring every view…")
    try:
        result = tta.evaluate_run(run.run_id, split=key[2], limit=key[3], loaded=_shared.loaded_model(run),
                                  progress=lambda f: bar.progress(min(1.0, f), text=f"Test-time augmentation… {f:.0%}"))  # fmt: skip
        st.session_state[RESULT] = (key, result)
    except UserError as exc:
        st.session_state[RESULT] = (key, str(exc))
    except Exception as exc:  # last resort: one line, never a traceback
        st.session_state[RESULT] = (key, f"test-time augmentation failed: {type(exc).__name__}: {exc}")
    finally:
        bar.empty()


def show(run: runs.Run) -> None:
    on = st.toggle("Test-time augmentation", key="eval_tta",
                   help="Average the class probabilities over the image, small shifts of it and, where the data "
                   "allows, its mirror image; shows the accuracy with and without on the same images.")  # fmt: skip
    if not on:
        return
    src = evaluation_runs.source(run)
    key = (run.run_id, run.model_path.stat().st_mtime_ns, src.get("split"), src.get("limit"))
    found = st.session_state.get(RESULT)
    if not found or found[0] != key:
        _measure(run, key)
        found = st.session_state.get(RESULT)
    if not found:
        return
    result = found[1]
    if isinstance(result, str):  # kept, so a failure is shown again rather than retried on every rerun
        _shared.error(result)
        return
    c1, c2, c3 = st.columns(3)
    c1.metric("Accuracy with TTA", f"{result.tta_accuracy:.1%}", delta=f"{result.gain * 100:+.2f} points")
    c2.metric("Without", f"{result.accuracy:.1%}")
    c3.metric("Fixed / broken", f"{result.fixed} / {result.broken}",
              help="images TTA gets right that the plain prediction got wrong / the other way round")  # fmt: skip
    st.caption(f"Measured on the same {result.num_samples:,} images: {result.plan.describe()}.")
