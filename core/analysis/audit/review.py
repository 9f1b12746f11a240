"""What the Improve page's audit review shows, as plain data: which findings are still open once some images were
fixed, and the rows, columns and per-row targets of each findings table. Pure functions over an `AuditReport`
(the page draws; this decides), so the rules are tested without Streamlit.

A finding is open while the fixes journal has not handled its image (`core.data.fixes.handled`); a duplicate
group stays open while two or more of its images are. Rows keep the report's order (most likely problem first).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.analysis.audit.report import AuditReport, DuplicateGroup, LabelIssue, Leak, Outlier

TABLE_ROWS = 200  # rows per table: enough to review, small enough to draw thumbnails for


@dataclass(frozen=True)
class OpenFindings:
    """The report's findings minus those already fixed, kept, or set aside."""

    label_issues: list[LabelIssue]
    duplicates: list[DuplicateGroup]
    leaks: list[Leak]
    outliers: list[Outlier]
    unreadable: list[tuple[str, str]]  # (path, reason)

    @property
    def conflicts(self) -> int:
        """Open duplicate groups whose images carry different labels."""
        return sum(bool(g.conflict) for g in self.duplicates)


def open_findings(report: AuditReport, hidden: Collection[str]) -> OpenFindings:
    """Findings left to review: `hidden` are paths the fixes journal handled (they no longer need a decision)."""
    return OpenFindings(
        label_issues=[i for i in report.label_issues if i.path not in hidden],
        duplicates=[g for g in report.duplicates if sum(p not in hidden for p in g.paths) > 1],
        leaks=[lk for lk in report.leaks if lk.test_path not in hidden],
        outliers=[o for o in report.outliers if o.path not in hidden],
        unreadable=[(p, why) for p, why in report.unreadable if p not in hidden],
    )


@dataclass(frozen=True)
class ReviewTable:
    """One table of findings, ready to draw. `columns` are in display order; the columns named in `images` hold
    paths relative to the dataset folder (None for no image) that the page shows as thumbnails. Row i's fixes act
    on `targets[i]` (the duplicates' "all but the first" on `copies[i]`); `relabel` maps a path to the class a
    relabel moves it to. `total` counts the open findings, `rows` only those shown (at most the table's cap)."""

    columns: dict[str, list[Any]]
    targets: list[tuple[str, ...]]
    total: int
    images: tuple[str, ...] = ()
    copies: list[tuple[str, ...]] = field(default_factory=list)
    relabel: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.targets)

    def chosen(self, rows: Iterable[int]) -> list[int]:
        """The selected rows that exist: a selection kept from a longer table may name rows no longer drawn."""
        return [i for i in rows if 0 <= i < self.rows]

    def picked(self, rows: Iterable[int], copies: bool = False) -> list[str]:
        """The paths the selected rows' fix acts on, in the order the rows were selected."""
        per_row = self.copies if copies else self.targets
        return [p for i in self.chosen(rows) for p in per_row[i]]


def _labels(values: Sequence[str]) -> str:
    """Distinct values in first-seen order, comma-separated."""
    return ", ".join(dict.fromkeys(values))


def label_issue_table(issues: Sequence[LabelIssue], limit: int = TABLE_ROWS) -> ReviewTable:
    """Likely mislabelled images: a fix acts on the image, a relabel moves it to the suggested class."""
    shown = list(issues[:limit])
    return ReviewTable(
        columns={
            "image": [i.path for i in shown],
            "path": [i.path for i in shown],
            "given": [i.given for i in shown],
            "suggested": [i.suggested for i in shown],
            "score": [float(i.score) for i in shown],
            "split": [i.split for i in shown],
        },  # fmt: skip
        images=("image",),
        targets=[(i.path,) for i in shown],
        relabel={i.path: i.suggested for i in shown},
        total=len(issues),
    )


def duplicate_table(
    groups: Sequence[DuplicateGroup], hidden: Collection[str], limit: int = TABLE_ROWS
) -> ReviewTable:
    """Duplicate groups, one row each with its first two images; "keep" acts on every open image of a group,
    "set aside" on the open ones after the first (the first is the copy that stays)."""
    shown = list(groups[:limit])
    return ReviewTable(
        columns={
            "first": [g.paths[0] for g in shown],
            "second": [g.paths[1] if len(g.paths) > 1 else None for g in shown],
            "kind": [g.kind for g in shown],
            "images": [len(g.paths) for g in shown],
            "labels": [_labels(g.labels) for g in shown],
            "splits": [_labels(g.splits) for g in shown],
            "conflict": [bool(g.conflict) for g in shown],
            "distance": [float(g.distance) for g in shown],
            "paths": [" | ".join(g.paths) for g in shown],
        },  # fmt: skip
        images=("first", "second"),
        targets=[tuple(p for p in g.paths if p not in hidden) for g in shown],
        copies=[tuple(p for p in g.paths[1:] if p not in hidden) for g in shown],
        total=len(groups),
    )


def leak_table(leaks: Sequence[Leak], limit: int = TABLE_ROWS) -> ReviewTable:
    """Held-out images with a twin in training: a fix acts on the held-out copy, never on the training image."""
    shown = list(leaks[:limit])
    return ReviewTable(
        columns={
            "test image": [lk.test_path for lk in shown],
            "train image": [lk.train_path for lk in shown],
            "test path": [lk.test_path for lk in shown],
            "train path": [lk.train_path for lk in shown],
            "kind": [lk.kind for lk in shown],
            "distance": [float(lk.distance) for lk in shown],
        },  # fmt: skip
        images=("test image", "train image"),
        targets=[(lk.test_path,) for lk in shown],
        total=len(leaks),
    )


def outlier_table(outliers: Sequence[Outlier], limit: int = TABLE_ROWS) -> ReviewTable:
    """Images far from every class, farthest first."""
    shown = list(outliers[:limit])
    return ReviewTable(
        columns={
            "image": [o.path for o in shown],
            "path": [o.path for o in shown],
            "label": [o.label for o in shown],
            "score": [float(o.score) for o in shown],
        },  # fmt: skip
        images=("image",),
        targets=[(o.path,) for o in shown],
        total=len(outliers),
    )


def unreadable_table(unreadable: Sequence[tuple[str, str]]) -> ReviewTable:
    """Files that do not decode, every one of them (no cap: they are few, and no thumbnail is drawn)."""
    return ReviewTable(
        columns={"path": [p for p, _ in unreadable], "reason": [w for _, w in unreadable]},
        targets=[(p,) for p, _ in unreadable],
        total=len(unreadable),
    )
