"""The review of an audit's findings on the Improve page: one tab per kind of finding, each a table whose selected
rows go to fix buttons (label issues also as cards with their own buttons). What is open, which rows, which columns
and what each fix acts on is `core.analysis.audit.review`; this module draws it. Paths are relative to the dataset
folder, exactly as the fixes journal names them.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import streamlit as st

from core.analysis.projector_charts import data_uris
from core.data import fixes, thumbnails
from pages import _improve_fixes, _shared

# label issues shown as cards with their own buttons; the table below them takes a selection for bulk fixes
CARDS = 8
THUMB = 72


@st.cache_data(max_entries=2048, show_spinner=False)
def _thumb_uri(path: str, gen: int) -> str | None:
    arr = thumbnails.thumbnail(Path(path), THUMB)
    if arr is None:
        return None
    return data_uris([arr if arr.ndim == 3 else arr[..., None]], THUMB)[0]


def _uri(root: Path, rel: str) -> str | None:
    return _thumb_uri(str(root / rel), _improve_fixes.generation())


def _selected(key: str) -> list[int]:
    sel = st.session_state.get(key)
    try:
        return list(sel["selection"]["rows"]) if sel else []
    except (KeyError, TypeError):
        return []


def _table(df: pd.DataFrame, key: str, images: tuple[str, ...] = ("image",)) -> list[int]:
    """A table whose rows can be selected; returns the selected row positions."""
    config = {c: st.column_config.ImageColumn(c, width="small") for c in images if c in df.columns}
    config["score"] = st.column_config.NumberColumn("score", format="%.3f")
    key = f"{key}_{_improve_fixes.generation()}"  # a fix redraws the table with nothing selected
    st.dataframe(df, key=key, on_select="rerun", selection_mode="multi-row", hide_index=True,
                 column_config=config, row_height=THUMB + 8)  # fmt: skip
    return _selected(key)


def _frame(table: Any, root: Path | None) -> pd.DataFrame:
    """The table's columns, its image columns' paths drawn as thumbnails (none without image files)."""
    return pd.DataFrame({
        name: [_uri(root, p) if root is not None and p else None for p in col] if name in table.images else col
        for name, col in table.columns.items()
    })  # fmt: skip


def _bulk(dataset: str, key: str, picked: list[str], kinds: tuple[str, ...], to_class: Any = None,
          labels: dict[str, str] | None = None) -> None:  # fmt: skip
    names = {
        "relabel": "Relabel selected as suggested",
        "set_aside": "Set aside selected",
        "keep": "Keep selected",
    }
    names.update(labels or {})
    cols = st.columns(len(kinds) + 1)
    cols[0].caption(f"{len(picked)} selected")
    for col, kind in zip(cols[1:], kinds, strict=True):
        col.button(names[kind], key=f"{key}_{kind}", disabled=not picked, on_click=_improve_fixes.fix,
                   args=(dataset, kind, picked, to_class if kind == "relabel" else None))  # fmt: skip


def _review_table(dataset: str, table: Any, root: Path | None, key: str, kinds: tuple[str, ...], empty: str,
                  caption: str = "", labels: dict[str, str] | None = None) -> None:  # fmt: skip
    """A findings table (`core.analysis.audit.review.ReviewTable`) whose selected rows go to the fix buttons
    under it (`{key}_table`, `{key}_bulk_<kind>`); `empty` says so when nothing is left to review."""
    if not table.total:
        st.caption(empty)
        return
    if caption:
        st.caption(caption)
    picked = table.picked(_table(_frame(table, root), f"{key}_table", table.images))
    _bulk(dataset, f"{key}_bulk", picked, kinds, table.relabel or None, labels)


def _label_issues(dataset: str, review: ModuleType, issues: list, root: Path | None) -> None:
    if not issues:
        st.caption("No likely mislabelled images left to review.")
        return
    st.caption(f"{len(issues)} likely mislabelled image(s), most likely first. Score: cleanlab's label quality "
               "(low = the given label is doubtful).")  # fmt: skip
    for n, issue in enumerate(issues[:CARDS]):
        with st.container(border=True):
            c1, c2, c3 = st.columns([1, 3, 3], vertical_alignment="center")
            uri = _uri(root, issue.path) if root is not None else None
            if uri:
                c1.image(uri, width=THUMB)
            c2.markdown(f"`{issue.path}`  \ngiven **{_shared.md_text(issue.given)}** → suggested **{_shared.md_text(issue.suggested)}** · "
                        f"score {issue.score:.3f}")  # fmt: skip
            b1, b2, b3 = c3.columns(3)
            b1.button(f"Relabel as {issue.suggested}", key=f"imp_li_relabel_{n}", on_click=_improve_fixes.fix,
                      args=(dataset, "relabel", [issue.path], issue.suggested), disabled=root is None)  # fmt: skip
            b2.button("Set aside", key=f"imp_li_aside_{n}", on_click=_improve_fixes.fix,
                      args=(dataset, "set_aside", [issue.path]), disabled=root is None)  # fmt: skip
            b3.button("Keep", key=f"imp_li_keep_{n}", on_click=_improve_fixes.fix,
                      args=(dataset, "keep", [issue.path]))  # fmt: skip
    st.markdown("**Select several to fix at once**")
    _review_table(
        dataset, review.label_issue_table(issues), root, "imp_li", ("relabel", "set_aside", "keep"), ""
    )


def _duplicates(dataset: str, review: ModuleType, found: Any, root: Path | None, hidden: set[str]) -> None:
    if not found.duplicates:
        st.caption("No duplicates left to review.")
        return
    st.caption(f"{len(found.duplicates)} group(s) of identical or near-identical images; {found.conflicts} with "
               "conflicting labels.")  # fmt: skip
    table = review.duplicate_table(found.duplicates, hidden)
    rows = _table(_frame(table, root), "imp_dup_table", table.images)
    copies, everything = table.picked(rows, copies=True), table.picked(rows)
    cols = st.columns(3)
    cols[0].caption(f"{len(table.chosen(rows))} group(s) selected")
    cols[1].button("Set aside all but the first of each", key="imp_dup_aside", disabled=not copies,
                   on_click=_improve_fixes.fix, args=(dataset, "set_aside", copies))  # fmt: skip
    cols[2].button("Keep them all", key="imp_dup_keep", disabled=not everything, on_click=_improve_fixes.fix,
                   args=(dataset, "keep", everything))  # fmt: skip


def _leak_metrics(report: Any) -> None:
    acc, adjusted = report.test_accuracy, report.leak_adjusted_accuracy
    c1, c2 = st.columns(2)
    c1.metric("Test accuracy", "-" if acc is None else f"{acc:.1%}")
    c2.metric("Leak-adjusted test accuracy", "-" if adjusted is None else f"{adjusted:.1%}",
              delta=None if acc is None or adjusted is None else f"{adjusted - acc:+.1%}",
              help="Accuracy on the test images that have no near twin in the training split.")  # fmt: skip


def results(dataset: str, report: Any, root: Path | None) -> None:
    # imported here, like the audit itself: a build without core.analysis.audit still draws the rest of the page
    from core.analysis.audit import review

    hidden = fixes.handled(dataset)
    found = review.open_findings(report, hidden)
    tabs = st.tabs([
        f"Label issues ({len(found.label_issues)})", f"Duplicates ({len(found.duplicates)})",
        f"Leaks ({len(found.leaks)})", f"Outliers ({len(found.outliers)})", f"Unreadable ({len(found.unreadable)})",
    ])  # fmt: skip
    with tabs[0]:
        _label_issues(dataset, review, found.label_issues, root)
    with tabs[1]:
        _duplicates(dataset, review, found, root, hidden)
    with tabs[2]:
        _leak_metrics(report)
        _review_table(dataset, review.leak_table(found.leaks), root, "imp_leak", ("set_aside", "keep"),
                      "No test image has a twin in the training split.",
                      f"{len(found.leaks)} test image(s) with an identical or near-identical image in training.",
                      {"set_aside": "Set aside the test copies", "keep": "Keep them"})  # fmt: skip
    with tabs[3]:
        _review_table(dataset, review.outlier_table(found.outliers), root, "imp_out", ("set_aside", "keep"),
                      "No outliers left to review.", f"{len(found.outliers)} image(s) far from every class in the "
                      "model's embedding space, farthest first.")  # fmt: skip
    with tabs[4]:
        _review_table(dataset, review.unreadable_table(found.unreadable), root, "imp_bad", ("set_aside",),
                      "Every image decodes.")  # fmt: skip
