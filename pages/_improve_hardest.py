"""Hardest examples and confusions on the Improve page: the run's worst mistakes, each with its Grad-CAM and its
nearest training images as evidence, and the same fix buttons as the audit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from core.analysis import evaluation, evaluation_runs, hardest
from core.data import fixes, renames
from core.data.images import upscale_to
from core.errors import UserError
from core.training import runs
from pages import _improve_fixes, _shared

EVIDENCE = 4  # mistakes explained at once (each costs a Grad-CAM pass the first time)
NEIGHBOURS = 3
SIDE = 96


@st.cache_resource(max_entries=4, show_spinner=False)
def _saved(run_id: str, stamp: tuple[int, ...]) -> evaluation.EvaluationResult | None:
    return evaluation_runs.cached_result(runs.get_run(run_id))


@st.cache_data(max_entries=32, show_spinner="Finding the nearest training images and Grad-CAMs…")
def _explain(
    run_id: str, stamp: tuple[int, ...], indices: tuple[int, ...], gen: int
) -> list[hardest.Evidence]:
    run = runs.get_run(run_id)
    result = _saved(run_id, stamp)
    if result is None:
        return []
    return hardest.explain(run, _shared.loaded_model(run), result, np.asarray(indices, np.int64), NEIGHBOURS)


def _show(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return upscale_to(a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a, SIDE)


def _evaluate_now(run: runs.Run) -> None:
    bar = st.progress(0.0, text="Evaluating…")
    try:
        evaluation_runs.evaluate_run(run.run_id, loaded=_shared.loaded_model(run),
                                     progress=lambda f: bar.progress(min(1.0, max(0.0, f)), text=f"Evaluating… {f:.0%}"))  # fmt: skip
    except UserError as exc:
        _shared.error(exc)
        return
    finally:
        bar.empty()
    st.rerun()


def _evidence_rows(dataset: str, run: runs.Run, result: evaluation.EvaluationResult, indices: np.ndarray,
                   root: Path | None, key: str) -> None:  # fmt: skip
    names = result.class_names
    fixable = root is not None and renames.same_dataset(run.config.dataset, dataset) and bool(result.paths)
    handled = fixes.handled(dataset)
    rels = {
        int(i): _improve_fixes.rel_path(root, result.paths[int(i)]) if result.paths else "" for i in indices
    }
    todo = tuple(int(i) for i in indices if rels[int(i)] not in handled)[:EVIDENCE]
    if not todo:
        st.caption("Nothing left to show here: these images were fixed or kept.")
        return
    try:
        evidence = _explain(run.run_id, evaluation_runs.stamp(run), todo, _improve_fixes.generation())
    except UserError as exc:
        _shared.error(exc)
        return
    for n, ev in enumerate(evidence):
        rel = rels[ev.index]
        with st.container(border=True):
            st.markdown(f"`{rel or ev.index}` · labelled **{names[ev.true]}**, predicted **{names[ev.predicted]}** · "
                        f"loss {ev.loss:.2f}")  # fmt: skip
            cols = st.columns([1, 1, 3, 2])
            cols[0].image(_show(ev.image), caption="image", width=SIDE)
            if ev.cam is not None:
                cols[1].image(
                    upscale_to(ev.cam, SIDE), caption=f"Grad-CAM: {names[ev.predicted]}", width=SIDE
                )
            else:
                cols[1].caption(ev.cam_note or "no Grad-CAM")
            if ev.neighbours:
                cols[2].image([_show(a) for a in ev.neighbour_images],
                              caption=[f"{names[nb.label]} · {nb.similarity:.2f}" for nb in ev.neighbours],
                              width=SIDE)  # fmt: skip
                agree = sum(nb.label == ev.predicted for nb in ev.neighbours)
                cols[2].caption(f"nearest training images (cosine similarity); {agree} of {len(ev.neighbours)} "
                                f"labelled {names[ev.predicted]}")  # fmt: skip
            if fixable and ev.true != ev.predicted:
                cols[3].button(f"Relabel as {names[ev.predicted]}", key=f"{key}_relabel_{n}",
                               on_click=_improve_fixes.fix, args=(dataset, "relabel", [rel], names[ev.predicted]))  # fmt: skip
            if fixable:
                cols[3].button("Set aside", key=f"{key}_aside_{n}", on_click=_improve_fixes.fix,
                               args=(dataset, "set_aside", [rel]))  # fmt: skip
                cols[3].button(
                    "Keep", key=f"{key}_keep_{n}", on_click=_improve_fixes.fix, args=(dataset, "keep", [rel])
                )


def section(dataset: str, run: runs.Run | None, root: Path | None) -> None:
    st.subheader("Hardest examples and confusions")
    if run is None or not run.has_model:
        st.caption("Needs a trained run: pick one in the sidebar.")
        return
    result = _saved(run.run_id, evaluation_runs.stamp(run))
    if result is None:
        st.caption(f"Run {run.run_id} has no current evaluation yet.")
        if st.button("Evaluate the run now", key="imp_evaluate"):
            _evaluate_now(run)
        return
    if not renames.same_dataset(run.config.dataset, dataset):
        st.caption(
            f"Run {run.run_id} was trained on {run.config.dataset}; fixes apply to the active dataset only."
        )
    names = result.class_names
    pairs = hardest.most_confused(result)
    st.markdown(f"**Most confused classes** on the {result.split} split ({result.num_samples} images)")
    if not pairs:
        st.caption("No mistakes on this split.")
    else:
        st.dataframe([{"true": p.true, "predicted as": p.predicted, "images": p.count} for p in pairs[:10]],
                     hide_index=True, key="imp_pairs")  # fmt: skip
        labels = {n: f"{p.true} → {p.predicted} ({p.count})" for n, p in enumerate(pairs[:10])}
        if st.session_state.get("imp_pair") not in labels:
            st.session_state.imp_pair = 0
        pick = st.selectbox("Explain the mistakes of", list(labels), format_func=labels.get, key="imp_pair")
        _evidence_rows(
            dataset, run, result, hardest.confused_indices(result, pairs[pick]), root, "imp_pair_ev"
        )
    st.markdown("**Highest loss per class** (confident mistakes and doubtful labels alike)")
    top = hardest.hardest(result, per_class=EVIDENCE * 2)
    if st.session_state.get("imp_hard_class") not in top:
        st.session_state.imp_hard_class = next(iter(top), None)
    if top:
        c = st.selectbox("Class", list(top), format_func=lambda i: names[i], key="imp_hard_class")
        _evidence_rows(dataset, run, result, top[c], root, "imp_hard_ev")
