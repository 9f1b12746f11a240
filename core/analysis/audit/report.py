"""What an audit found, as plain data: the Improve page, the CLI's `--json` and the on-disk cache all read this."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class LabelIssue:
    """An image whose given label the cross-validated model doubts; low `score` = likely wrong."""

    path: str
    given: str
    suggested: str
    score: float  # cleanlab's label-quality score in [0, 1]
    split: str


@dataclass(frozen=True)
class DuplicateGroup:
    """Images with the same (exact) or nearly the same (near) content; `conflict` when their labels differ."""

    kind: str  # exact | near
    paths: list[str]
    labels: list[str]
    splits: list[str]
    distance: (
        float  # largest perceptual-hash Hamming distance (bits of 64) between linked members; 0 for exact
    )
    conflict: bool


@dataclass(frozen=True)
class Leak:
    """A test (or validation) image with an exact or near twin in the training split."""

    test_path: str
    train_path: str
    kind: str  # exact | near
    distance: float


@dataclass(frozen=True)
class Outlier:
    """An image far from every class in the model's embedding space; higher score = farther."""

    path: str
    label: str
    score: float


@dataclass
class AuditReport:
    dataset: str
    run_id: str | None
    label_issues: list[LabelIssue]
    duplicates: list[DuplicateGroup]
    leaks: list[Leak]
    outliers: list[Outlier]
    unreadable: list[tuple[str, str]]
    leak_adjusted_accuracy: float | None
    test_accuracy: float | None
    meta: dict[str, Any] = field(
        default_factory=dict
    )  # how it was computed: folds, epochs, images, seconds, ...

    def to_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "run_id": self.run_id,
            "label_issues": [asdict(r) for r in self.label_issues],
            "duplicates": [asdict(r) for r in self.duplicates],
            "leaks": [asdict(r) for r in self.leaks],
            "outliers": [asdict(r) for r in self.outliers],
            "unreadable": [{"path": p, "reason": why} for p, why in self.unreadable],
            "leak_adjusted_accuracy": self.leak_adjusted_accuracy,
            "test_accuracy": self.test_accuracy,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_json(cls, d: dict) -> AuditReport:
        """The inverse of `to_json`; KeyError/TypeError/ValueError on something we did not write."""

        def opt_float(v: Any) -> float | None:
            return None if v is None else float(v)

        return cls(
            dataset=str(d["dataset"]),
            run_id=None if d.get("run_id") is None else str(d["run_id"]),
            label_issues=[
                LabelIssue(
                    str(r["path"]), str(r["given"]), str(r["suggested"]), float(r["score"]), str(r["split"])
                )
                for r in d["label_issues"]
            ],
            duplicates=[
                DuplicateGroup(
                    str(r["kind"]),
                    [str(p) for p in r["paths"]],
                    [str(x) for x in r["labels"]],
                    [str(s) for s in r["splits"]],
                    float(r["distance"]),
                    bool(r["conflict"]),
                )
                for r in d["duplicates"]
            ],  # fmt: skip
            leaks=[
                Leak(str(r["test_path"]), str(r["train_path"]), str(r["kind"]), float(r["distance"]))
                for r in d["leaks"]
            ],
            outliers=[Outlier(str(r["path"]), str(r["label"]), float(r["score"])) for r in d["outliers"]],
            unreadable=[(str(r["path"]), str(r["reason"])) for r in d.get("unreadable", [])],
            leak_adjusted_accuracy=opt_float(d.get("leak_adjusted_accuracy")),
            test_accuracy=opt_float(d.get("test_accuracy")),
            meta=dict(d.get("meta") or {}),
        )

    def summary(self) -> str:
        """A few human lines for the CLI."""
        lines = [
            f"audit of {self.dataset}" + (f" with run {self.run_id}" if self.run_id else ""),
            f"  likely mislabeled: {len(self.label_issues)}",
            f"  duplicate groups: {len(self.duplicates)} "
            f"({sum(g.kind == 'exact' for g in self.duplicates)} exact, "
            f"{sum(g.conflict for g in self.duplicates)} with conflicting labels)",
            f"  leaks (held-out images with a twin in train): {len(self.leaks)}",
            f"  outliers: {len(self.outliers)}",
            f"  unreadable or stray files: {len(self.unreadable)}",
        ]
        if self.test_accuracy is not None:
            adj = self.leak_adjusted_accuracy
            lines.append(
                f"  held-out accuracy {self.test_accuracy:.2%}"
                + (f", leak-adjusted {adj:.2%}" if adj is not None else "")
                + f" ({self.meta.get('accuracy_source', '')})"
            )
        for title, rows in (
            ("most likely mislabeled", [f"{r.path}: given {r.given}, suggested {r.suggested} (score {r.score:.3f})"
                                        for r in self.label_issues[:10]]),
            ("leaks", [f"{r.test_path} ~ {r.train_path} ({r.kind}, distance {r.distance:g})" for r in self.leaks[:10]]),
            ("outliers", [f"{r.path} ({r.label}, score {r.score:.2f})" for r in self.outliers[:10]]),
        ):  # fmt: skip
            if rows:
                lines.append(f"{title}:")
                lines += [f"  {row}" for row in rows]
        return "\n".join(lines)
