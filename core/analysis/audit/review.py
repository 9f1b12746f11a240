"""What the Improve page's audit review shows, as plain data: which findings are still open once some images were
fixed, and the rows, columns and per-row targets of each findings table. Pure functions over an `AuditReport`
(the page draws; this decides), so the rules are tested without Streamlit.

A finding is open while the fixes journal has not handled its image (`core.data.fixes.handled`); a duplicate
group stays open while two or more of its images are. Rows keep the report's order (most likely problem first).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter, itemgetter
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


def _build(found: Sequence[Any], limit: int | None, columns: dict[str, Callable[[Any], Any]],
           target: Callable[[Any], tuple[str, ...]], images: tuple[str, ...] = ()) -> ReviewTable:  # fmt: skip
    """The first `limit` findings (all for None) as a table: one column per getter, one target per row."""
    shown = list(found[:limit])
    return ReviewTable(
        columns={name: [get(f) for f in shown] for name, get in columns.items()},
        targets=[target(f) for f in shown],
        total=len(found),
        images=images,
    )


def label_issue_table(issues: Sequence[LabelIssue], limit: int = TABLE_ROWS) -> ReviewTable:
    """Likely mislabelled images: a fix acts on the image, a relabel moves it to the suggested class."""
    table = _build(issues, limit, {
        "image": attrgetter("path"), "path": attrgetter("path"), "given": attrgetter("given"),
        "suggested": attrgetter("suggested"), "score": lambda i: float(i.score), "split": attrgetter("split"),
    }, lambda i: (i.path,), ("image",))  # fmt: skip
    return replace(table, relabel={i.path: i.suggested for i in issues[:limit]})


def duplicate_table(
    groups: Sequence[DuplicateGroup], hidden: Collection[str], limit: int = TABLE_ROWS
) -> ReviewTable:
    """Duplicate groups, one row each with its first two images; "keep" acts on every open image of a group,
    "set aside" on the open ones after the first (the first is the copy that stays)."""
    table = _build(groups, limit, {
        "first": lambda g: g.paths[0], "second": lambda g: g.paths[1] if len(g.paths) > 1 else None,
        "kind": attrgetter("kind"), "images": lambda g: len(g.paths), "labels": lambda g: _labels(g.labels),
        "splits": lambda g: _labels(g.splits), "conflict": lambda g: bool(g.conflict),
        "distance": lambda g: float(g.distance), "paths": lambda g: " | ".join(g.paths),
    }, lambda g: tuple(p for p in g.paths if p not in hidden), ("first", "second"))  # fmt: skip
    return replace(table, copies=[tuple(p for p in g.paths[1:] if p not in hidden) for g in groups[:limit]])


def leak_table(leaks: Sequence[Leak], limit: int = TABLE_ROWS) -> ReviewTable:
    """Held-out images with a twin in training: a fix acts on the held-out copy, never on the training image."""
    return _build(leaks, limit, {
        "test image": attrgetter("test_path"), "train image": attrgetter("train_path"),
        "test path": attrgetter("test_path"), "train path": attrgetter("train_path"), "kind": attrgetter("kind"),
        "distance": lambda lk: float(lk.distance),
    }, lambda lk: (lk.test_path,), ("test image", "train image"))  # fmt: skip


def outlier_table(outliers: Sequence[Outlier], limit: int = TABLE_ROWS) -> ReviewTable:
    """Images far from every class, farthest first."""
    return _build(outliers, limit, {
        "image": attrgetter("path"), "path": attrgetter("path"), "label": attrgetter("label"),
        "score": lambda o: float(o.score),
    }, lambda o: (o.path,), ("image",))  # fmt: skip


def unreadable_table(unreadable: Sequence[tuple[str, str]]) -> ReviewTable:
    """Files that do not decode, every one of them (no cap: they are few, and no thumbnail is drawn)."""
    return _build(unreadable, None, {"path": itemgetter(0), "reason": itemgetter(1)}, lambda u: (u[0],))
