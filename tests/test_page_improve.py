"""The Improve page in AppTest on a real tiny run: review a planted audit, relabel, keep, undo, hardest examples,
retrain with the same settings.

The audit back end (core.analysis.audit) is expensive and built elsewhere; these tests patch its three entry points
to hand the page a planted report of the dataset (duck-typed like its AuditReport), as design.md allows for back
ends. Without the module the page must say so in one line.
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass, field

import pytest

from core.analysis import evaluation_runs
from core.data import fixes
from core.training import jobs, retrain, runs
from tests.apptest_support import open_trained_page, texts
from tests.helpers import app_dirs, module_run

PAGE = "pages/improve.py"


@dataclass
class Issue:
    path: str
    given: str
    suggested: str
    score: float
    split: str = "train"


@dataclass
class Group:
    kind: str
    paths: list[str]
    labels: list[str]
    splits: list[str]
    distance: float
    conflict: bool


@dataclass
class Leak:
    test_path: str
    train_path: str
    kind: str
    distance: float


@dataclass
class Outlier:
    path: str
    label: str
    score: float


@dataclass
class Report:
    dataset: str
    run_id: str | None
    label_issues: list[Issue] = field(default_factory=list)
    duplicates: list[Group] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)
    outliers: list[Outlier] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    leak_adjusted_accuracy: float | None = None
    test_accuracy: float | None = None


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root, name, run = module_run(tmp_path_factory, "improvepage")
    with app_dirs(root):
        evaluation_runs.evaluate_run(run.run_id)
    return root, name, run


def _planted(name: str, run_id: str) -> Report:
    return Report(
        name,
        run_id,
        label_issues=[Issue("circle/circle_003.png", "circle", "square", 0.02), Issue("square/square_001.png", "square", "stripes", 0.1)],
        duplicates=[Group("exact", ["circle/circle_000.png", "circle/circle_001.png"], ["circle", "circle"], ["train", "train"], 0.0, False)],
        outliers=[Outlier("stripes/stripes_002.png", "stripes", 3.5)],
        leak_adjusted_accuracy=0.8,
        test_accuracy=0.9,
    )  # fmt: skip


@pytest.fixture
def audit(monkeypatch, trained):
    """The audit module with its entry points answering from a planted report (a stand-in module when absent)."""
    _, name, run = trained
    try:
        module = importlib.import_module("core.analysis.audit")
    except ImportError:
        module = types.ModuleType("core.analysis.audit")
        monkeypatch.setitem(sys.modules, "core.analysis.audit", module)
    started: list[tuple] = []
    report = _planted(name, run.run_id)
    monkeypatch.setattr(
        module, "cached_audit", lambda d, r=None: report if d == name else None, raising=False
    )
    monkeypatch.setattr(module, "audit_status", lambda d, r=None: {"state": "done", "stage": "", "fraction": 1.0, "error": None}, raising=False)  # fmt: skip
    monkeypatch.setattr(module, "start_audit_job", lambda d, r=None: started.append((d, r)), raising=False)
    return started


@pytest.fixture(autouse=True)
def undo_everything(trained, monkeypatch):
    """Each test starts from the dataset as trained: whatever a test fixed is undone afterwards."""
    root, name, _ = trained
    yield
    monkeypatch.setenv("CONVNET_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("CONVNET_RUNS_DIR", str(root / "runs"))
    while any(not a.undone for a in fixes.journal(name)):
        fixes.undo(name)


def _button(at, key):
    return next(b for b in at.button if b.key == key)


def test_review_relabel_and_undo(trained, monkeypatch, audit):
    root, name, run = trained
    s = open_trained_page(trained, monkeypatch, PAGE)
    at = s.at
    shown = texts(at)
    assert "Improve" in shown and "circle/circle_003.png" in shown and "suggested **square**" in shown
    assert [t.label for t in at.tabs][:2] == ["Label issues (2)", "Duplicates (1)"]
    assert "Leak-adjusted test accuracy" in [m.label for m in at.metric]
    src = root / "data" / name / "circle" / "circle_003.png"
    _button(at, "imp_li_relabel_0").click()
    at = s.run()
    assert not src.exists() and (root / "data" / name / "square" / "circle_003.png").is_file()
    assert "Relabelled circle/circle_003.png as square" in texts(at)
    assert [t.label for t in at.tabs][0] == "Label issues (1)"  # the fixed row is hidden
    assert "circle/circle_003.png" not in "\n".join(
        str(m.value) for m in at.markdown if "given" in str(m.value)
    )
    _button(at, "imp_li_keep_0").click()  # now the square one leads
    at = s.run()
    assert fixes.kept(name) == {"square/square_001.png"}
    assert "No likely mislabelled images left" in texts(at)
    _button(at, "imp_undo_last").click()  # undoes the keep
    at = s.run()
    assert fixes.kept(name) == set()
    _button(at, "imp_undo_last").click()  # undoes the relabel
    at = s.run()
    assert src.is_file() and not (root / "data" / name / "square" / "circle_003.png").exists()
    assert "Undone: relabelled circle/circle_003.png" in texts(at)
    _button(at, "imp_audit").click()
    s.run()
    assert audit == [(name, run.run_id)]


def test_without_the_audit_module_the_page_says_so(trained, monkeypatch):
    monkeypatch.setitem(sys.modules, "core.analysis.audit", None)  # import now fails as in a build without it
    s = open_trained_page(trained, monkeypatch, PAGE)
    assert "audit not available" in texts(s.at)
    assert "Hardest examples and confusions" in texts(s.at)  # the rest of the page still works


def test_hardest_examples_show_evidence_and_fix(trained, monkeypatch, audit):
    root, name, run = trained
    s = open_trained_page(trained, monkeypatch, PAGE)
    at = s.at
    shown = texts(at)
    assert "Highest loss per class" in shown and "nearest training images" in shown
    assert len(at.selectbox(key="imp_hard_class").options) == 3
    keep = [b for b in at.button if b.key and b.key.startswith("imp_hard_ev_keep_")]
    assert keep
    keep[0].click()
    at = s.run()
    assert len(fixes.kept(name)) == 1


def test_retrain_starts_a_run_with_the_same_settings(trained, monkeypatch, audit):
    root, name, run = trained
    s = open_trained_page(trained, monkeypatch, PAGE)
    _button(s.at, "imp_retrain").click()
    at = s.run()
    new_ids = [r.run_id for r in runs.list_runs() if r.run_id != run.run_id]
    assert len(new_ids) == 1, new_ids
    try:
        new = runs.get_run(new_ids[0])
        assert retrain.source_of(new) == run.run_id
        same = {k: v for k, v in run.config.to_dict().items() if k != "run_id"}
        assert {k: v for k, v in new.config.to_dict().items() if k != "run_id"} == same
        assert "Before and after" in texts(at)
        assert at.session_state["imp_retrained"] == (run.run_id, new.run_id)
    finally:
        jobs.kill(new_ids[0])  # the job itself is the e2e test's business; here only what it was asked to do
