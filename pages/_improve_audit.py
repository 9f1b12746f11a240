"""The dataset audit on the Improve page: start it as a background job, follow its progress, review what it found
and fix it in place (one image at a time or a selection at once).

The audit itself is `core.analysis.audit` (run_audit / start_audit_job / audit_status / cached_audit); it is
imported lazily, so the page still works, saying so, in a build without it. Paths in a report are relative to the
dataset folder, exactly as the fixes journal names them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import streamlit as st

from core.analysis.projector_charts import data_uris
from core.data import fixes, thumbnails
from core.errors import UserError, first_line
from pages import _improve_fixes, _shared

CARDS = (
    8  # label issues shown as cards with their own buttons; the table below takes a selection for bulk fixes
)
TABLE_ROWS = 200  # rows per table (the most likely problems come first)
THUMB = 72


def audit_module() -> ModuleType | str:
    """core.analysis.audit, or one line saying why it cannot be used."""
    try:
        return importlib.import_module("core.analysis.audit")
    except ImportError as exc:
        return f"audit not available in this build ({first_line(exc)})"


@st.cache_data(max_entries=2048, show_spinner=False)
def _thumb_uri(path: str, gen: int) -> str | None:
    arr = thumbnails.thumbnail(Path(path), THUMB)
    if arr is None:
        return None
    return data_uris([arr if arr.ndim == 3 else arr[..., None]], THUMB)[0]


def _uri(root: Path, rel: str) -> str | None:
    return _thumb_uri(str(root / rel), _improve_fixes.generation())


def _start(audit: ModuleType, dataset: str, run_id: str | None) -> None:
    try:
        audit.start_audit_job(dataset, run_id)
    except UserError as exc:
        st.session_state.imp_error = str(exc)


@st.fragment(run_every=1.0)
def _progress(audit: ModuleType, dataset: str, run_id: str | None) -> None:
    """Polls the audit job (another process) until it ends, then redraws the whole page with its results."""
    status = audit.audit_status(dataset, run_id)
    if status.get("state") == "running":
        frac = float(status.get("fraction") or 0.0)
        st.progress(min(1.0, max(0.0, frac)), text=f"Auditing… {status.get('stage') or ''} {frac:.0%}")
    else:
        st.rerun()


def _report(audit: ModuleType, dataset: str, run_id: str | None) -> Any:
    """The audit of the dataset as it is now; after a fix, the last one this session saw (fixed rows hidden)."""
    report = audit.cached_audit(dataset, run_id)
    key = (dataset, run_id)
    if report is not None:
        st.session_state.imp_report = (key, report)
        return report
    kept = st.session_state.get("imp_report")
    if kept and kept[0] == key:
        st.caption(
            "Showing the audit from before your latest fixes; run it again to look at the dataset afresh."
        )
        return kept[1]
    return None


def section(dataset: str, run_id: str | None, root: Path | None) -> None:
    st.subheader("Dataset audit")
    audit = audit_module()
    if isinstance(audit, str):
        st.info(audit, icon=":material/info:")
        return
    try:
        status = audit.audit_status(dataset, run_id)
    except UserError as exc:
        _shared.error(exc)
        return
    state = status.get("state")
    c1, c2 = st.columns([1, 3], vertical_alignment="center")
    c1.button("Run audit", key="imp_audit", icon=":material/troubleshoot:", disabled=state == "running",
              on_click=_start, args=(audit, dataset, run_id))  # fmt: skip
    c2.caption(
        "Looks for likely mislabelled images (out-of-fold predictions ranked by cleanlab), exact and near duplicates, "
        "test images with a twin in train, and outliers" + (f"; uses run {run_id}" if run_id else "") + "."
    )
    if state == "running":
        _progress(audit, dataset, run_id)
    elif state == "failed":
        _shared.error(status.get("error") or "the audit failed")
    report = _report(audit, dataset, run_id)
    if report is None:
        if state != "running":
            st.caption("No audit of this dataset as it is now: press Run audit.")
        return
    if root is None:
        st.caption("This dataset has no image files to fix in place.")
    results(dataset, report, root)


# --------------------------------------------------------------------------------------------- results


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


def _label_issues(dataset: str, report: Any, root: Path | None, hidden: set[str]) -> None:
    rows = [i for i in report.label_issues if i.path not in hidden]
    if not rows:
        st.caption("No likely mislabelled images left to review.")
        return
    st.caption(f"{len(rows)} likely mislabelled image(s), most likely first. Score: cleanlab's label quality "
               "(low = the given label is doubtful).")  # fmt: skip
    for n, issue in enumerate(rows[:CARDS]):
        with st.container(border=True):
            c1, c2, c3 = st.columns([1, 3, 3], vertical_alignment="center")
            uri = _uri(root, issue.path) if root is not None else None
            if uri:
                c1.image(uri, width=THUMB)
            c2.markdown(f"`{issue.path}`  \ngiven **{issue.given}** → suggested **{issue.suggested}** · "
                        f"score {issue.score:.3f}")  # fmt: skip
            b1, b2, b3 = c3.columns(3)
            b1.button(f"Relabel as {issue.suggested}", key=f"imp_li_relabel_{n}", on_click=_improve_fixes.fix,
                      args=(dataset, "relabel", [issue.path], issue.suggested), disabled=root is None)  # fmt: skip
            b2.button("Set aside", key=f"imp_li_aside_{n}", on_click=_improve_fixes.fix,
                      args=(dataset, "set_aside", [issue.path]), disabled=root is None)  # fmt: skip
            b3.button(
                "Keep",
                key=f"imp_li_keep_{n}",
                on_click=_improve_fixes.fix,
                args=(dataset, "keep", [issue.path]),
            )
    shown = rows[:TABLE_ROWS]
    df = pd.DataFrame({
        "image": [_uri(root, i.path) if root is not None else None for i in shown],
        "path": [i.path for i in shown], "given": [i.given for i in shown],
        "suggested": [i.suggested for i in shown], "score": [float(i.score) for i in shown],
        "split": [i.split for i in shown],
    })  # fmt: skip
    st.markdown("**Select several to fix at once**")
    picked_rows = _table(df, "imp_li_table")
    picked = [shown[i].path for i in picked_rows if i < len(shown)]
    targets = {i.path: i.suggested for i in shown}
    _bulk(dataset, "imp_li_bulk", picked, ("relabel", "set_aside", "keep"), targets)


def _duplicates(dataset: str, report: Any, root: Path | None, hidden: set[str]) -> None:
    groups = [g for g in report.duplicates if sum(p not in hidden for p in g.paths) > 1]
    if not groups:
        st.caption("No duplicates left to review.")
        return
    conflicts = sum(bool(g.conflict) for g in groups)
    st.caption(
        f"{len(groups)} group(s) of identical or near-identical images; {conflicts} with conflicting labels."
    )
    shown = groups[:TABLE_ROWS]
    df = pd.DataFrame({
        "first": [_uri(root, g.paths[0]) if root is not None else None for g in shown],
        "second": [_uri(root, g.paths[1]) if root is not None and len(g.paths) > 1 else None for g in shown],
        "kind": [g.kind for g in shown], "images": [len(g.paths) for g in shown],
        "labels": [", ".join(dict.fromkeys(g.labels)) for g in shown],
        "splits": [", ".join(dict.fromkeys(g.splits)) for g in shown],
        "conflict": [bool(g.conflict) for g in shown], "score": [float(g.distance) for g in shown],
        "paths": [" | ".join(g.paths) for g in shown],
    })  # fmt: skip
    picked_rows = _table(df.rename(columns={"score": "distance"}), "imp_dup_table", ("first", "second"))
    chosen = [shown[i] for i in picked_rows if i < len(shown)]
    copies = [p for g in chosen for p in g.paths[1:] if p not in hidden]
    everything = [p for g in chosen for p in g.paths if p not in hidden]
    cols = st.columns(3)
    cols[0].caption(f"{len(chosen)} group(s) selected")
    cols[1].button("Set aside all but the first of each", key="imp_dup_aside", disabled=not copies,
                   on_click=_improve_fixes.fix, args=(dataset, "set_aside", copies))  # fmt: skip
    cols[2].button("Keep them all", key="imp_dup_keep", disabled=not everything, on_click=_improve_fixes.fix,
                   args=(dataset, "keep", everything))  # fmt: skip


def _leaks(dataset: str, report: Any, root: Path | None, hidden: set[str]) -> None:
    acc, adjusted = report.test_accuracy, report.leak_adjusted_accuracy
    c1, c2 = st.columns(2)
    c1.metric("Test accuracy", "-" if acc is None else f"{acc:.1%}")
    c2.metric("Leak-adjusted test accuracy", "-" if adjusted is None else f"{adjusted:.1%}",
              delta=None if acc is None or adjusted is None else f"{adjusted - acc:+.1%}",
              help="Accuracy on the test images that have no near twin in the training split.")  # fmt: skip
    leaks = [lk for lk in report.leaks if lk.test_path not in hidden]
    if not leaks:
        st.caption("No test image has a twin in the training split.")
        return
    st.caption(f"{len(leaks)} test image(s) with an identical or near-identical image in training.")
    shown = leaks[:TABLE_ROWS]
    df = pd.DataFrame({
        "test image": [_uri(root, lk.test_path) if root is not None else None for lk in shown],
        "train image": [_uri(root, lk.train_path) if root is not None else None for lk in shown],
        "test path": [lk.test_path for lk in shown], "train path": [lk.train_path for lk in shown],
        "kind": [lk.kind for lk in shown], "distance": [float(lk.distance) for lk in shown],
    })  # fmt: skip
    picked_rows = _table(df, "imp_leak_table", ("test image", "train image"))
    picked = [shown[i].test_path for i in picked_rows if i < len(shown)]
    _bulk(dataset, "imp_leak_bulk", picked, ("set_aside", "keep"),
          labels={"set_aside": "Set aside the test copies", "keep": "Keep them"})  # fmt: skip


def _outliers(dataset: str, report: Any, root: Path | None, hidden: set[str]) -> None:
    rows = [o for o in report.outliers if o.path not in hidden]
    if not rows:
        st.caption("No outliers left to review.")
        return
    st.caption(f"{len(rows)} image(s) far from every class in the model's embedding space, farthest first.")
    shown = rows[:TABLE_ROWS]
    df = pd.DataFrame({
        "image": [_uri(root, o.path) if root is not None else None for o in shown],
        "path": [o.path for o in shown], "label": [o.label for o in shown], "score": [float(o.score) for o in shown],
    })  # fmt: skip
    picked_rows = _table(df, "imp_out_table")
    _bulk(
        dataset, "imp_out_bulk", [shown[i].path for i in picked_rows if i < len(shown)], ("set_aside", "keep")
    )


def results(dataset: str, report: Any, root: Path | None) -> None:
    hidden = fixes.handled(dataset)
    unreadable = [(p, why) for p, why in report.unreadable if p not in hidden]
    open_dups = sum(sum(p not in hidden for p in g.paths) > 1 for g in report.duplicates)
    tabs = st.tabs([
        f"Label issues ({sum(i.path not in hidden for i in report.label_issues)})",
        f"Duplicates ({open_dups})", f"Leaks ({sum(lk.test_path not in hidden for lk in report.leaks)})",
        f"Outliers ({sum(o.path not in hidden for o in report.outliers)})", f"Unreadable ({len(unreadable)})",
    ])  # fmt: skip
    with tabs[0]:
        _label_issues(dataset, report, root, hidden)
    with tabs[1]:
        _duplicates(dataset, report, root, hidden)
    with tabs[2]:
        _leaks(dataset, report, root, hidden)
    with tabs[3]:
        _outliers(dataset, report, root, hidden)
    with tabs[4]:
        if not unreadable:
            st.caption("Every image decodes.")
        else:
            df = pd.DataFrame({"path": [p for p, _ in unreadable], "reason": [w for _, w in unreadable]})
            picked_rows = _table(df, "imp_bad_table")
            _bulk(dataset, "imp_bad_bulk", [unreadable[i][0] for i in picked_rows if i < len(unreadable)],
                  ("set_aside",))  # fmt: skip
