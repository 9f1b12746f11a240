"""Evaluate page: "Compare with another run" — both models on the same images (core.analysis.comparison)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.analysis import comparison
from core.data import renames
from core.errors import UserError
from core.training import runs
from core.validation import human_bytes
from pages import _evaluate_views as views
from pages import _shared, _sidebar

RESULT = "cmp_result"


def _stamp(run_id: str) -> int:
    try:
        return runs.get_run(run_id).model_path.stat().st_mtime_ns
    except (OSError, UserError):
        return 0


def _key(a: str, b: str) -> tuple:
    """A comparison belongs to these two models as saved now; a retrained one is compared again."""
    return a, b, _stamp(a), _stamp(b)


def _candidates(run: runs.Run) -> list[runs.Run]:
    """Other runs with a model on the same dataset and classes (anything else would be refused)."""
    return [r for r in _shared.list_runs() if r.run_id != run.run_id and r.has_model
            and renames.same_now(r.config.dataset, run.config.dataset) and r.class_names == run.class_names]  # fmt: skip


def _compare(a: str, b: str) -> None:
    bar = st.progress(0.0, text="Comparing: loading both models and the images…")
    try:
        result = comparison.compare_runs(
            a, b, progress=lambda f: bar.progress(min(1.0, f), text=f"Comparing… {f:.0%}")
        )
        st.session_state[RESULT] = (_key(a, b), result)
    except UserError as exc:
        _shared.error(exc)
    except Exception as exc:  # last resort: one line, never a traceback
        _shared.error(f"comparison failed: {type(exc).__name__}: {exc}")
    finally:
        bar.empty()


def _sides(c: comparison.Comparison) -> None:
    cols = st.columns(2)
    for col, tag, s, other in ((cols[0], "A (this run)", c.a, None), (cols[1], "B", c.b, c.a)):
        with col.container(border=True):
            st.markdown(f"**{tag}** · {_shared.md_text(s.label)}")
            m = st.columns(3)
            delta = None if other is None else f"{(s.accuracy - other.accuracy) * 100:+.1f} points"
            m[0].metric("Accuracy", f"{s.accuracy:.1%}", delta=delta)
            m[1].metric("Parameters", f"{s.params:,}", help=f"model file {human_bytes(s.file_bytes)}")
            m[2].metric("Latency", f"{s.latency_ms:.1f} ms", help="median time for one image, measured here")


def _table(c: comparison.Comparison) -> None:
    table = pd.DataFrame(c.per_class).rename(
        columns={"accuracy_a": "A", "accuracy_b": "B", "difference": "B − A"}
    )
    cfg = {k: st.column_config.NumberColumn(k, format="%.3f") for k in ("A", "B")}
    cfg["B − A"] = st.column_config.NumberColumn("B − A", format="%+.3f")
    st.dataframe(table, hide_index=True, column_config=cfg, key="cmp_table")


def _gallery(c: comparison.Comparison) -> None:
    names = c.class_names
    shown = {int(i): k for k, i in enumerate(c.disagree[: comparison.MAX_GALLERY])}

    def caption(i: int) -> str:
        return f"true {names[c.labels[i]]} · A {names[c.a.predictions[i]]} · B {names[c.b.predictions[i]]}"

    views.gallery(np.asarray(c.disagree), lambda ids: [c.gallery[shown[int(i)]] for i in ids], caption,
                  "images where the two models disagree (only B right first, then only A, then neither)")  # fmt: skip


def show(run: runs.Run) -> None:
    st.subheader("Compare with another run")
    others = _candidates(run)
    if not others:
        st.caption("No other run with a model on this dataset and classes: train another one to compare.")
        return
    ids = [r.run_id for r in others]
    labels = {r.run_id: _sidebar.run_label(r) for r in others}
    if st.session_state.get("cmp_other") not in ids:
        st.session_state.cmp_other = ids[0]
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    other = c1.selectbox("Other run (B)", ids, format_func=lambda i: labels.get(i, i), key="cmp_other")
    if c2.button("Compare", key="cmp_go", icon=":material/compare_arrows:"):
        _compare(run.run_id, other)
    found = st.session_state.get(RESULT)
    if not found or found[0] != _key(run.run_id, other):
        st.caption("Scores both models on the same test images: accuracy, per class, McNemar's test, "
                   "the images where they disagree, size and latency.")  # fmt: skip
        return
    c: comparison.Comparison = found[1]
    split = {"test": "test", "val": "validation"}.get(c.split, c.split)
    st.caption(f"Both scored on the same {c.num_samples:,} images of the {split} split.")
    _sides(c)
    t = c.test
    st.markdown(f"**{_shared.md_text(c.verdict())}**")
    stat = f", χ² = {t.statistic:.2f}" if t.statistic is not None else ""
    st.caption(f"McNemar's test: only A right on {t.only_a} images, only B right on {t.only_b}; "
               f"p = {t.p_value:.4g} ({t.method}{stat}; {comparison.MCNEMAR_RULE}).")  # fmt: skip
    _table(c)
    _gallery(c)
