"""Compare two runs on the same test images: McNemar against hand computations, two real tiny runs that
disagree, refusals, the CLI and the Evaluate page's section."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import atomic, paths
from core.analysis import comparison, evaluation_runs
from core.errors import UserError
from core.training import runs
from tests.apptest_support import open_page, texts
from tests.helpers import app_dirs, make_dataset, train_tiny_run

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- McNemar by hand


def test_mcnemar_exact_binomial_matches_a_hand_computation():
    # b = 2, c = 8: P(X <= 2 | n = 10, 1/2) = (1 + 10 + 45) / 1024; two-sided doubles it
    for b, c in ((2, 8), (8, 2)):
        t = comparison.mcnemar(b, c)
        assert t.method == "exact binomial" and t.statistic is None
        assert t.p_value == pytest.approx(2 * 56 / 1024, abs=1e-12)
    assert comparison.mcnemar(5, 5).p_value == pytest.approx(1.0)
    none = comparison.mcnemar(0, 0)
    assert none.p_value == 1.0 and none.method == "no discordant pairs"


def test_mcnemar_chi_square_with_continuity_correction_matches_a_hand_computation():
    t = comparison.mcnemar(30, 10)  # (|30 - 10| - 1)^2 / 40 = 361 / 40
    assert t.method == "chi-square with continuity correction"
    assert t.statistic == pytest.approx(9.025)
    assert t.p_value == pytest.approx(
        math.erfc(math.sqrt(9.025 / 2)), rel=1e-9
    )  # chi2(1) tail = erfc(sqrt(x/2))
    assert (
        comparison.mcnemar(12, 12).method == "exact binomial"
        and comparison.mcnemar(13, 12).statistic is not None
    )


def test_mcnemar_on_constructed_predictions():
    labels = np.array([0] * 10 + [1] * 10)
    a = labels.copy()
    b = labels.copy()
    a[:3] = 1  # A wrong on 3 images B gets right
    b[10:11] = 0  # B wrong on 1 image A gets right
    a[19], b[19] = 0, 0  # both wrong on one image: not discordant
    right_a, right_b = a == labels, b == labels
    t = comparison.mcnemar(int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum()))
    assert (t.only_a, t.only_b) == (1, 3)
    assert t.p_value == pytest.approx(2 * (1 + 4) / 16)  # P(X <= 1 | n = 4) = 5/16, doubled
    order = comparison.disagreements(labels, a, b)
    assert list(order[:3]) == [0, 1, 2] and list(order[3:]) == [10]  # only B right first, then only A


# ------------------------------------------------------------------------------------------- two real runs


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A trained run and a barely trained one (tiny learning rate) on one dataset with a test split."""
    root = tmp_path_factory.mktemp("compare")
    with app_dirs(root):
        (root / "data").mkdir()
        (root / "runs").mkdir()
        name = make_dataset("shapes", split=True, per_class=15)
        good = train_tiny_run(name, epochs=3)
        weak = train_tiny_run(name, epochs=1, learning_rate=1e-6, preset="fashion-dense")
    return root, good.run_id, weak.run_id


def _install(two_runs, monkeypatch) -> tuple[str, str]:
    root, a, b = two_runs
    monkeypatch.setenv("CONVNET_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("CONVNET_RUNS_DIR", str(root / "runs"))
    return a, b


@pytest.mark.slow
def test_two_runs_are_scored_on_the_same_images(two_runs, monkeypatch):
    a, b = _install(two_runs, monkeypatch)
    c = comparison.compare_runs(a, b)
    assert c.split == "test" and c.num_samples == 15 and c.class_names == ["circle", "square", "stripes"]
    # each accuracy is the one Evaluate gives for that run on the same split
    assert c.a.accuracy == pytest.approx(evaluation_runs.evaluate_run(a).accuracy)
    assert c.b.accuracy == pytest.approx(evaluation_runs.evaluate_run(b).accuracy)
    right_a, right_b = c.a.predictions == c.labels, c.b.predictions == c.labels
    assert (c.test.only_a, c.test.only_b) == (
        int((right_a & ~right_b).sum()),
        int((right_b & ~right_a).sum()),
    )
    assert c.test.p_value == comparison.mcnemar(c.test.only_a, c.test.only_b).p_value
    assert c.a.accuracy > c.b.accuracy and c.test.only_a > 0  # the trained run wins somewhere
    assert set(c.disagree) == set(np.flatnonzero(c.a.predictions != c.b.predictions))
    assert len(c.gallery) == min(len(c.disagree), comparison.MAX_GALLERY) and c.gallery[0].shape == (
        16,
        16,
        1,
    )
    for row in c.per_class:
        k = c.class_names.index(row["class"])
        mask = c.labels == k
        assert row["accuracy_a"] == pytest.approx(np.mean(c.a.predictions[mask] == k))
        assert row["difference"] == pytest.approx(row["accuracy_b"] - row["accuracy_a"])
    assert c.a.params == 70851 and c.b.params == 33283  # fast vs fashion-dense at 16x16x1, 3 classes
    assert c.a.file_bytes == runs.get_run(a).model_path.stat().st_size
    assert c.a.latency_ms > 0 and c.b.latency_ms > 0
    text = comparison.format_text(c)
    assert "McNemar" in text and c.test.method in text


@pytest.mark.slow
def test_runs_on_other_datasets_or_classes_are_refused(two_runs, monkeypatch, tmp_path):
    a, b = _install(two_runs, monkeypatch)
    with pytest.raises(UserError, match="two different runs"):
        comparison.compare_runs(a, a)
    copy = runs.get_run(b)
    other = paths.runs_dir() / "other-run"
    shutil.copytree(copy.path, other)
    try:
        cfg = atomic.read_json(other / "config.json")
        atomic.write_json(other / "config.json", {**cfg, "class_names": ["circle", "stripes", "square"]})
        with pytest.raises(UserError, match="different classes"):
            comparison.compare_runs(a, "other-run")
        atomic.write_json(other / "config.json", {**cfg, "dataset": "elsewhere"})
        with pytest.raises(UserError, match="different datasets"):
            comparison.compare_runs(a, "other-run")
    finally:
        shutil.rmtree(other)


@pytest.mark.slow
def test_without_a_test_split_runs_split_differently_are_refused():
    name = make_dataset("flat", per_class=10)
    a = train_tiny_run(name, seed=1)
    b = train_tiny_run(name, seed=2)
    with pytest.raises(UserError, match="different validation splits"):
        comparison.compare_runs(a.run_id, b.run_id)
    c = train_tiny_run(name, seed=1)
    assert comparison.compare_runs(a.run_id, c.run_id).split == "val"


@pytest.mark.slow
def test_cli_prints_json_and_refuses_in_one_line(two_runs, monkeypatch):
    a, b = _install(two_runs, monkeypatch)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "core", "compare", *args], cwd=REPO, env={**os.environ},
                              capture_output=True, text=True, timeout=240)  # fmt: skip

    out = cli(a, b, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["num_samples"] == 15 and data["a"]["run"] == a and data["b"]["run"] == b
    assert data["mcnemar"]["method"] in ("exact binomial", "chi-square with continuity correction")
    bad = cli(a, a)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: pick two different runs to compare"
    text = cli(a, b, "--limit", "6")
    assert text.returncode == 0 and "6 images, the same for both" in text.stdout


@pytest.mark.slow
def test_evaluate_page_compares_with_another_run(two_runs, monkeypatch):
    a, b = _install(two_runs, monkeypatch)
    at = open_page("pages/evaluate.py", timeout=180, active_dataset="shapes", active_run=a)
    at.session_state["active_run"] = a
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="cmp_other").value == b
    at.button(key="cmp_go").click().run()
    assert not at.exception, at.exception
    shown = texts(at)
    assert "McNemar's test" in shown and "images where the two models disagree" in shown
    tables = [d.value for d in at.dataframe if "B − A" in d.value.columns]
    assert tables and list(tables[0]["class"]) == ["circle", "square", "stripes"]
    c = at.session_state["cmp_result"][1]
    assert [m.value for m in at.metric if m.label == "Accuracy"][-2:] == [
        f"{c.a.accuracy:.1%}",
        f"{c.b.accuracy:.1%}",
    ]
    at.run()  # kept across reruns
    assert not at.exception and "McNemar's test" in texts(at)
