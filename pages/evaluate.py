"""Evaluate: test metrics, per-class table, confusion matrix -> the images behind a cell, mistakes, PCA."""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from core.analysis import evaluation, evaluation_runs
from core.errors import UserError
from core.training import runs
from pages import _calibration, _evaluate_compare, _evaluate_projector, _evaluate_tta, _run_notices, _shared
from pages import _evaluate_views as views


@st.cache_resource(max_entries=4, show_spinner="Loading the saved evaluation…")
def _saved(run_id: str, stamp: tuple[int, ...]) -> evaluation.EvaluationResult | None:
    """Read once per saved evaluation (the stamp changes with it and with the model); shared, never mutated."""
    return evaluation_runs.cached_result(runs.get_run(run_id))


@st.cache_data(max_entries=64, show_spinner=False)
def _images(run_id: str, stamp: tuple[int, ...], indices: tuple[int, ...]) -> list[np.ndarray]:
    run = runs.get_run(run_id)
    result = _saved(run_id, stamp)
    if result is None:
        return []
    return evaluation_runs.sample_images(run, result, np.asarray(indices, dtype=np.int64))


def _model_key(run: runs.Run) -> tuple[str, int]:
    return run.run_id, run.model_path.stat().st_mtime_ns


def _evaluate(run: runs.Run, limit: int) -> evaluation.EvaluationResult | None:
    bar = st.progress(0.0, text="Loading the images to score…")

    def progress(f: float) -> None:
        bar.progress(min(1.0, max(0.0, f)), text=f"Evaluating… {f:.0%}")

    try:
        return evaluation_runs.evaluate_run(run.run_id, limit=limit or None, progress=progress,
                                            loaded=_shared.loaded_model(run))  # fmt: skip
    except UserError as exc:
        message = str(exc)
    except Exception as exc:  # last resort (e.g. out of memory): one line, never a traceback
        message = f"evaluation failed: {type(exc).__name__}: {exc}"
    finally:
        bar.empty()
    st.session_state.eval_failed = (_model_key(run), message)  # shown again, not retried, on each rerun
    _shared.error(message)
    return None


def _result(run: runs.Run) -> evaluation.EvaluationResult | None:
    """The saved evaluation when it is current; otherwise (or on Re-evaluate) evaluate now."""
    c1, c2, c3 = st.columns([1, 1, 3], vertical_alignment="bottom")
    limit = c1.number_input("Limit images (0 = all)", min_value=0, value=0, step=100, key="eval_limit",
                            help="Score a random sample of the split: quicker on large datasets.")  # fmt: skip
    again = c2.button("Re-evaluate", key="eval_again", icon=":material/refresh:")
    if not again:
        result = _saved(run.run_id, evaluation_runs.stamp(run))
        if result is not None:
            when = evaluation_runs.source(run).get("evaluated_at")
            ago = _shared.fmt_seconds(_shared.now() - when) if when else "?"
            c3.caption(f"Saved evaluation of the current model, made {ago} ago.")
            return result
        if run.state in runs.ACTIVE_STATES:
            st.caption("Press Re-evaluate to score the checkpoint named above.")
            return None
        failed = st.session_state.get("eval_failed")
        if failed and failed[0] == _model_key(run):
            _shared.error(failed[1])
            st.info("Fix the problem, then press Re-evaluate.", icon=":material/info:")
            return None
    t0 = time.perf_counter()
    result = _evaluate(run, int(limit))
    if result is not None:
        c3.caption(f"Evaluated just now in {time.perf_counter() - t0:.1f}s; saved with the run.")
    return result


def _drill_down(run: runs.Run, result: evaluation.EvaluationResult) -> None:
    st.subheader("Confusion matrix")
    names = result.class_names
    clicked = views.clicked_cell(st.session_state.get("eval_cm"), names)
    if clicked != st.session_state.get("eval_cm_applied"):
        st.session_state.eval_cm_applied = clicked  # a new click picks the cell; the selectboxes follow it
        if clicked is not None:
            st.session_state.eval_true, st.session_state.eval_pred = names[clicked[0]], names[clicked[1]]
    t0, p0 = views.default_cell(result)
    for key, default in (("eval_true", names[t0]), ("eval_pred", names[p0])):
        if st.session_state.get(key) not in names:
            st.session_state[key] = default
    cell = names.index(st.session_state.eval_true), names.index(st.session_state.eval_pred)
    mode = st.radio("Show", ["Counts", "Row-normalised"], horizontal=True, key="eval_cm_mode",
                    help="Row-normalised: each row sums to 1, so classes of different sizes compare.")  # fmt: skip
    fig = views.confusion_figure(result, mode == "Row-normalised", cell)
    st.plotly_chart(fig, key="eval_cm", on_select="rerun", selection_mode="points")
    st.caption("Click a cell, or pick one below, to see the images behind it.")
    c1, c2 = st.columns(2)
    c1.selectbox("True class", names, key="eval_true")
    c2.selectbox("Predicted class", names, key="eval_pred")
    stamp = evaluation_runs.stamp(run)
    indices = evaluation.cell_indices(result, *cell)
    what = f"images of {names[cell[0]]} predicted as {names[cell[1]]}"
    views.gallery(
        indices, lambda ids: _images(run.run_id, stamp, tuple(ids)), views.cell_caption(result), what
    )


def _mistakes(run: runs.Run, result: evaluation.EvaluationResult) -> None:
    st.subheader("Misclassified")
    names = result.class_names
    wrong = result.labels != result.predictions
    options = [-1, *range(len(names))]
    counts = {c: int((wrong & (result.labels == c)).sum()) for c in range(len(names))}
    label = {
        -1: f"All classes ({int(wrong.sum())} wrong)",
        **{c: f"{n} ({counts[c]} wrong)" for c, n in enumerate(names)},
    }
    if st.session_state.get("eval_mis_class") not in options:  # another run with fewer classes
        st.session_state.eval_mis_class = -1
    pick = st.selectbox("True class", options, format_func=label.get, key="eval_mis_class")
    indices = evaluation.misclassified(result, None if pick == -1 else pick)
    stamp = evaluation_runs.stamp(run)
    views.gallery(indices, lambda ids: _images(run.run_id, stamp, tuple(ids)), views.mistake_caption(result),
                  "misclassified images, most confidently wrong first", tile=112)  # fmt: skip


def main() -> None:
    _shared.page_guard()
    st.title("Evaluate")
    run = _shared.need_run("Evaluate")
    if run is None:
        return
    st.caption(f"Run **{run.run_id}** · {run.config.preset} on {_shared.md_text(run.config.dataset)}")
    _run_notices.show(run, "Evaluate")
    result = _result(run)
    if result is None:
        return
    try:
        views.summary(result, evaluation_runs.source(run))
        _evaluate_tta.show(run)
        views.per_class(result)
        _drill_down(run, result)
        _mistakes(run, result)
        views.embeddings(result)
        _evaluate_projector.show(run, result)
        _calibration.calibration_section(run.run_id)
        _evaluate_compare.show(run)
    except UserError as exc:
        _shared.error(exc)


main()
