"""What the audit review shows (core.analysis.audit.review): open findings once some images were fixed, table rows
in the report's order, columns in display order, the cap on rows, and what a selection of rows acts on."""

from __future__ import annotations

from core.analysis.audit import AuditReport, DuplicateGroup, LabelIssue, Leak, Outlier, review


def _report() -> AuditReport:
    return AuditReport(
        dataset="planted",
        run_id="r1",
        label_issues=[LabelIssue("train/a/1.png", "a", "b", 0.01, "train"),
                      LabelIssue("train/b/2.png", "b", "a", 0.05, "train"),
                      LabelIssue("test/a/3.png", "a", "c", 0.2, "test")],
        duplicates=[DuplicateGroup("exact", ["train/a/x.png", "test/a/x.png"], ["a", "a"], ["train", "test"], 0.0, False),
                    DuplicateGroup("near", ["train/a/y.png", "train/b/y.png", "train/c/y.png"], ["a", "b", "a"],
                                   ["train", "train", "train"], 4.0, True),
                    DuplicateGroup("near", ["train/c/z.png", "train/c/z2.png"], ["c", "c"], ["train", "train"], 2.0, False)],
        leaks=[Leak("test/a/x.png", "train/a/x.png", "exact", 0.0), Leak("test/b/q.jpg", "train/b/q.png", "near", 3.0)],
        outliers=[Outlier("train/a/photo.png", "a", 9.5), Outlier("train/b/odd.png", "b", 4.25)],
        unreadable=[("train/a/broken.png", "cannot decode"), ("train/b/empty.png", "empty file")],
        leak_adjusted_accuracy=0.8,
        test_accuracy=0.9,
    )  # fmt: skip


def test_nothing_hidden_keeps_every_finding_in_report_order():
    found = review.open_findings(_report(), set())
    assert [i.path for i in found.label_issues] == ["train/a/1.png", "train/b/2.png", "test/a/3.png"]
    assert [g.kind for g in found.duplicates] == ["exact", "near", "near"]
    assert [lk.test_path for lk in found.leaks] == ["test/a/x.png", "test/b/q.jpg"]
    assert [o.path for o in found.outliers] == ["train/a/photo.png", "train/b/odd.png"]
    assert [p for p, _ in found.unreadable] == ["train/a/broken.png", "train/b/empty.png"]
    assert found.conflicts == 1


def test_handled_images_leave_their_findings():
    hidden = {"train/b/2.png", "test/a/x.png", "train/c/z.png", "train/b/y.png", "train/b/odd.png",
              "train/a/broken.png"}  # fmt: skip
    found = review.open_findings(_report(), hidden)
    assert [i.path for i in found.label_issues] == ["train/a/1.png", "test/a/3.png"]
    # a group stays while two of its images are open: y keeps a and c; x and z have one image left each
    assert [g.paths[0] for g in found.duplicates] == ["train/a/y.png"]
    assert found.conflicts == 1
    assert [lk.test_path for lk in found.leaks] == ["test/b/q.jpg"]  # a leak goes with its test copy only
    assert [o.path for o in found.outliers] == ["train/a/photo.png"]
    assert found.unreadable == [("train/b/empty.png", "empty file")]
    # hiding a leak's training twin does not close the leak
    assert len(review.open_findings(_report(), {"train/b/q.png"}).leaks) == 2


def test_label_issue_table_rows_columns_and_relabel_targets():
    t = review.label_issue_table(review.open_findings(_report(), {"train/b/2.png"}).label_issues)
    assert list(t.columns) == ["image", "path", "given", "suggested", "score", "split"]
    assert t.images == ("image",) and t.total == 2 and t.rows == 2
    assert t.columns["path"] == t.columns["image"] == ["train/a/1.png", "test/a/3.png"]
    assert t.columns["suggested"] == ["b", "c"] and t.columns["score"] == [0.01, 0.2]
    assert t.relabel == {"train/a/1.png": "b", "test/a/3.png": "c"}
    assert t.picked([1, 0]) == ["test/a/3.png", "train/a/1.png"]  # in the order selected


def test_tables_are_capped_but_count_every_open_finding():
    issues = [LabelIssue(f"train/a/{i}.png", "a", "b", i / 100, "train") for i in range(7)]
    t = review.label_issue_table(issues, limit=3)
    assert t.total == 7 and t.rows == 3 and t.columns["path"] == [f"train/a/{i}.png" for i in range(3)]
    assert t.picked([2, 5, -1]) == ["train/a/2.png"]  # rows no longer drawn are ignored
    assert t.chosen([2, 5, 0]) == [2, 0]


def test_duplicate_table_keep_all_and_set_aside_all_but_the_first():
    t = review.duplicate_table(_report().duplicates, hidden={"train/c/y.png"})
    assert list(t.columns) == ["first", "second", "kind", "images", "labels", "splits", "conflict", "distance",
                               "paths"]  # fmt: skip
    assert t.images == ("first", "second")
    assert t.columns["second"] == ["test/a/x.png", "train/b/y.png", "train/c/z2.png"]
    assert t.columns["labels"] == ["a", "a, b", "c"] and t.columns["splits"] == [
        "train, test",
        "train",
        "train",
    ]
    assert t.columns["images"] == [2, 3, 2] and t.columns["conflict"] == [False, True, False]
    assert t.columns["paths"][1] == "train/a/y.png | train/b/y.png | train/c/y.png"
    assert t.picked([1]) == ["train/a/y.png", "train/b/y.png"]  # keep: the open images of the group
    assert t.picked([1, 0], copies=True) == ["train/b/y.png", "test/a/x.png"]  # never a group's first
    assert review.duplicate_table([_report().duplicates[0]], set()).columns["second"] == ["test/a/x.png"]
    single = DuplicateGroup("exact", ["train/a/only.png"], ["a"], ["train"], 0.0, False)
    assert review.duplicate_table([single], set()).columns["second"] == [None]


def test_leak_table_acts_on_the_test_copy_only():
    t = review.leak_table(_report().leaks)
    assert list(t.columns) == ["test image", "train image", "test path", "train path", "kind", "distance"]
    assert t.images == ("test image", "train image")
    assert t.columns["train image"] == ["train/a/x.png", "train/b/q.png"]
    assert t.columns["kind"] == ["exact", "near"] and t.columns["distance"] == [0.0, 3.0]
    assert t.picked([0, 1]) == ["test/a/x.png", "test/b/q.jpg"] and t.relabel == {}


def test_outlier_and_unreadable_tables():
    o = review.outlier_table(_report().outliers)
    assert list(o.columns) == ["image", "path", "label", "score"]
    assert o.columns["label"] == ["a", "b"] and o.columns["score"] == [9.5, 4.25]
    assert o.picked([1]) == ["train/b/odd.png"]
    u = review.unreadable_table(review.open_findings(_report(), {"train/a/broken.png"}).unreadable)
    assert u.columns == {"path": ["train/b/empty.png"], "reason": ["empty file"]}
    assert u.images == () and u.total == 1 and u.picked([0]) == ["train/b/empty.png"]
    empty = review.outlier_table([])
    assert empty.total == 0 and empty.rows == 0 and empty.picked([0]) == []
