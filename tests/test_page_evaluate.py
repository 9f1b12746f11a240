"""The Evaluate page in AppTest, on a real tiny run: metrics, table, confusion matrix, drill-down, restart."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from core import figures, paths
from core.analysis import evaluation, evaluation_runs
from core.training import runs, trainer
from tests.apptest_support import open_page
from tests.helpers import app_dirs, make_dataset, train_tiny_run

CLASSES = ["circle", "square", "stripes"]
PERCENT = re.compile(r"^\d+%$")  # drill-down captions are the confidence only


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real run, trained once; its test split has three squares filed under circle, so a cell is off-diagonal."""
    root = tmp_path_factory.mktemp("evalpage")
    for sub in ("data", "runs"):
        (root / sub).mkdir()
    with app_dirs(root):
        name = make_dataset("shapes", split=True)
        test = root / "data" / name / "test"
        for i, f in enumerate(sorted((test / "square").iterdir())[:3]):
            Image.open(f).save(test / "circle" / f"mislabelled_{i}.png")
        run = train_tiny_run(name)
    return root, run.run_id


def _clear_caches() -> None:  # what a restarted server starts with
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(autouse=True)
def fresh_caches():
    _clear_caches()
    yield
    _clear_caches()


def _install(trained) -> runs.Run:
    root, run_id = trained
    for sub, dest in (("data", paths.data_dir()), ("runs", paths.runs_dir())):
        for entry in (root / sub).iterdir():
            shutil.copytree(entry, dest / entry.name)
    return runs.get_run(run_id)


def _open(run_id: str | None = None) -> AppTest:
    """A fresh app (caches cleared), the Datasets page first on the tiny dataset, then the Evaluate page."""
    state = {"active_dataset": "shapes", "active_run": run_id} if run_id else {}
    at = open_page("pages/evaluate.py", timeout=120, **state)
    assert not at.exception, [e.value for e in at.exception]
    return at


def _run(at: AppTest, run_id: str | None) -> AppTest:
    """Rerun with the active run handed in, as the sidebar keeps it: AppTest (1.67) runs a page file on its own
    after switch_page, so the test never depends on which run a sidebar drawn by the page would pick."""
    if run_id:
        at.session_state["active_run"] = run_id
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _cell_gallery(at: AppTest) -> list[str]:
    found = [img.captions for img in at.image if img.captions and all(PERCENT.match(c) for c in img.captions)]
    return found[0] if found else []


def test_without_a_run_the_page_says_what_to_do():
    at = _open()
    assert any("needs a trained model" in i.value for i in at.info)
    assert not at.metric


def test_evaluates_and_shows_metrics_table_and_confusion_matrix(trained):
    run = _install(trained)
    at = _open(run.run_id)
    result = evaluation_runs.cached_result(run)
    assert result is not None, "the page saved its evaluation with the run"
    shown = _metrics(at)
    assert shown["Accuracy"] == f"{result.accuracy:.1%}" and shown["Split"] == "test"
    assert shown["Images"] == "15"
    table = at.dataframe[0].value
    assert list(table["class"]) == CLASSES
    assert list(table["support"]) == [7, 4, 4]
    charts = at.get("plotly_chart")
    assert len(charts) >= 2  # confusion matrix and the PCA charts
    spec = charts[0].proto.spec
    assert all(c in spec for c in CLASSES) and '"heatmap"' in spec
    assert any("dense" in c.value for c in at.caption), "the embedding layer is named"
    at.radio(key="eval_cm_mode").set_value("Row-normalised")
    _run(at, run.run_id)
    assert '"share"' in at.get("plotly_chart")[0].proto.spec


def test_choosing_a_cell_shows_exactly_its_images(trained):
    run = _install(trained)
    at = _open(run.run_id)
    result = evaluation_runs.cached_result(run)
    cells = [(t, p) for t in range(3) for p in range(3) if len(evaluation.cell_indices(result, t, p))]
    for t, p in cells[:3]:
        at.selectbox(key="eval_true").set_value(CLASSES[t])
        at.selectbox(key="eval_pred").set_value(CLASSES[p])
        _run(at, run.run_id)
        expected = evaluation.cell_indices(result, t, p)
        captions = _cell_gallery(at)
        assert len(captions) == len(expected), (t, p)
        assert captions == [f"{result.confidence[i]:.0%}" for i in expected]
        assert any(c.value.startswith(f"{len(expected)} images of {CLASSES[t]} predicted as {CLASSES[p]}")
                   for c in at.caption)  # fmt: skip
    # an empty cell says so and shows no images
    empty = [(t, p) for t in range(3) for p in range(3) if (t, p) not in cells]
    if empty:
        t, p = empty[0]
        at.selectbox(key="eval_true").set_value(CLASSES[t])
        at.selectbox(key="eval_pred").set_value(CLASSES[p])
        _run(at, run.run_id)
        assert _cell_gallery(at) == []
        assert any(c.value.startswith("No images of") for c in at.caption)


def test_misclassified_gallery_captions_true_predicted_confidence(trained):
    run = _install(trained)
    at = _open(run.run_id)
    result = evaluation_runs.cached_result(run)
    wrong = evaluation.misclassified(result)
    assert len(wrong) >= 1, "three squares are filed under circle"
    at.selectbox(key="eval_mis_class").set_value(-1)
    _run(at, run.run_id)
    arrows = [img.captions for img in at.image if img.captions and "→" in img.captions[0]]
    expected = [f"{CLASSES[result.labels[i]]} → {CLASSES[result.predictions[i]]} ({result.confidence[i]:.2f})"
                for i in wrong]  # fmt: skip
    assert arrows and arrows[0] == expected
    confidences = [float(c.rsplit("(", 1)[1][:-1]) for c in arrows[0]]
    assert confidences == sorted(confidences, reverse=True)


def test_restart_shows_the_saved_evaluation_without_scoring_again(trained):
    run = _install(trained)
    first = _open(run.run_id)
    metrics_file = run.path / "evaluation" / "metrics.json"
    before = metrics_file.stat().st_mtime_ns
    accuracy = _metrics(first)["Accuracy"]
    _clear_caches()
    second = _open(run.run_id)
    assert _metrics(second)["Accuracy"] == accuracy
    assert metrics_file.stat().st_mtime_ns == before
    assert any(c.value.startswith("Saved evaluation") for c in second.caption)
    second.number_input(key="eval_limit").set_value(5)
    second.button(key="eval_again").click()
    _run(second, run.run_id)  # Re-evaluate scores again (a sample of 5) and saves again
    assert metrics_file.stat().st_mtime_ns != before and _metrics(second)["Images"] == "5"
    assert evaluation_runs.cached_result(run).num_samples == 5


def test_a_problem_is_one_line_and_not_retried_on_every_rerun(trained):
    run = _install(trained)
    shutil.rmtree(paths.data_dir() / "shapes")  # the dataset is gone: nothing to score
    at = _open(run.run_id)
    assert [e.value for e in at.error] == ["unknown dataset 'shapes'; `python -m core datasets` lists them"]
    assert not at.metric and not (run.path / "evaluation" / "source.json").exists()
    at.number_input(key="eval_limit").set_value(3)  # any rerun shows the same line without trying again
    _run(at, run.run_id)
    assert len(at.error) == 1 and any("press Re-evaluate" in i.value for i in at.info)


def test_a_run_still_training_is_scored_only_on_request(trained):
    run = _install(trained)
    me = os.getpid()  # a live process, so the liveness check keeps the run "running"
    runs.update_status(run.path, state="running", pid=me, pid_start=trainer.process_start_time(me))
    at = _open(run.run_id)
    assert any(i.value.startswith(f"Run {run.run_id} is still training: Re-evaluate scores the checkpoint saved "
                                  "after epoch 1 of 1") for i in at.info)  # fmt: skip
    assert not at.metric
    at.button(key="eval_again").click()
    _run(at, run.run_id)
    assert _metrics(at)["Images"] == "15"


def test_another_active_dataset_warns_that_metrics_use_the_runs(trained):
    run = _install(trained)
    at = open_page("pages/evaluate.py", timeout=120, active_dataset="digits", active_run=run.run_id)
    assert not at.exception, [e.value for e in at.exception]
    assert [w.value for w in at.warning] == [
        "The active run was trained on shapes; the active dataset is digits — metrics use the test images of "
        "shapes (its validation split when it has no test split)."
    ]
    assert (
        _metrics(at)["Split"] == "test" and _metrics(at)["Images"] == "15"
    )  # shapes' test split, as it says


def test_no_chart_puts_its_toolbar_over_a_title_or_legend(trained):
    """Every plotly chart the page draws (confusion matrix, PCA 2-D and 3-D, explained variance)."""
    run = _install(trained)
    at = _open(run.run_id)
    charts = at.get("plotly_chart")
    assert len(charts) == 4
    for chart in charts:
        spec, config = json.loads(chart.proto.spec), json.loads(chart.proto.config or "{}")
        assert figures.toolbar_problems(spec, config) == [], chart.proto.spec[:200]
