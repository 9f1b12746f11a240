"""Evaluating real tiny runs: what is saved, when it is stale, which images come back, and the CLI around it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import paths
from core.analysis import evaluation, evaluation_runs
from core.data import datasets
from core.errors import UserError
from core.models import loading
from core.training import runs
from tests.helpers import app_dirs, make_dataset, train_tiny_run

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["circle", "square", "stripes"]


def _trained(tmp: Path, dataset: str, **make) -> tuple[Path, str]:
    """Train once per module in its own folders; each test gets a copy (runs.get_run finds it by id)."""
    for sub in ("data", "runs"):
        (tmp / sub).mkdir()
    with app_dirs(tmp):
        if dataset != "digits":
            make_dataset(dataset, **make)
        kwargs = {"limit": 120} if dataset == "digits" else {}
        run = train_tiny_run(dataset, **kwargs)
    return tmp, run.run_id


@pytest.fixture(scope="module")
def split_source(tmp_path_factory):
    return _trained(tmp_path_factory.mktemp("split"), "shapes", split=True)


@pytest.fixture(scope="module")
def flat_source(tmp_path_factory):
    return _trained(tmp_path_factory.mktemp("flat"), "flatshapes", split=False)


@pytest.fixture(scope="module")
def digits_source(tmp_path_factory):
    return _trained(tmp_path_factory.mktemp("digits"), "digits")


def _install(source: tuple[Path, str]) -> runs.Run:
    """Copy a module's trained run (and its dataset) into this test's isolated folders, mtimes kept."""
    root, run_id = source
    for sub, dest in (("data", paths.data_dir()), ("runs", paths.runs_dir())):
        for entry in (root / sub).iterdir():
            shutil.copytree(entry, dest / entry.name)
    return runs.get_run(run_id)


def _split_data(run: runs.Run, limit: int | None = None) -> tuple[str, datasets.SplitData]:
    h, w, c = run.input_shape
    cfg = run.config
    # the run's own limit: a validation split is scored as training drew it
    return datasets.evaluation_split(cfg.dataset, (h, w), c, val_split=cfg.val_split, seed=cfg.seed,
                                     limit=limit or cfg.limit)  # fmt: skip


def test_evaluate_run_saves_and_cached_result_loads_it(split_source):
    run = _install(split_source)
    assert evaluation_runs.cached_result(run) is None
    result = evaluation_runs.evaluate_run(run.run_id)
    folder = run.path / "evaluation"
    for name in ("metrics.json", "arrays.npz", "images.npy", "source.json"):
        assert (folder / name).is_file(), name
    assert result.split == "test" and result.num_samples == 12 and result.class_names == CLASSES
    again = evaluation_runs.cached_result(runs.get_run(run.run_id))
    assert again is not None
    assert again.split == "test" and again.accuracy == pytest.approx(result.accuracy)
    assert again.loss == pytest.approx(result.loss)
    np.testing.assert_array_equal(again.labels, result.labels)
    np.testing.assert_array_equal(again.predictions, result.predictions)
    np.testing.assert_array_equal(again.confusion, result.confusion)
    np.testing.assert_allclose(again.confidence, result.confidence)
    assert again.paths == result.paths and again.embedding_layer == result.embedding_layer == "dense"
    assert list(again.per_class.index) == CLASSES
    assert evaluation_runs.source(run)["split"] == "test"


def test_cached_result_is_none_once_the_model_changes(split_source):
    run = _install(split_source)
    evaluation_runs.evaluate_run(run.run_id)
    assert evaluation_runs.cached_result(run) is not None
    st = run.model_path.stat()
    os.utime(run.model_path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touch
    assert evaluation_runs.cached_result(run) is None
    evaluation_runs.evaluate_run(run.run_id)
    assert evaluation_runs.cached_result(run) is not None
    lm = loading.load_run_model(run)
    loading.save_model(
        lm.model, run.model_path, run.config.to_dict()
    )  # re-saved, as a training job does every epoch
    assert evaluation_runs.cached_result(run) is None


def test_an_incomplete_save_is_not_taken_for_current(split_source):
    run = _install(split_source)
    evaluation_runs.evaluate_run(run.run_id)
    (run.path / "evaluation" / "source.json").unlink()  # what a reader sees mid-save
    assert evaluation_runs.cached_result(run) is None


def test_sample_images_are_exactly_the_scored_images(split_source):
    run = _install(split_source)
    result = evaluation_runs.evaluate_run(run.run_id)
    h, w, c = run.input_shape
    picks = np.array([5, 0, 11, 3])
    expected = datasets.decode_files([(Path(result.paths[i]), 0) for i in picks], (h, w), c).x
    got = evaluation_runs.sample_images(run, result, picks)
    assert [g.dtype for g in got] == [np.uint8] * 4
    np.testing.assert_array_equal(np.stack(got), expected)
    (run.path / "evaluation" / "images.npy").unlink()  # falls back to decoding the files
    np.testing.assert_array_equal(np.stack(evaluation_runs.sample_images(run, result, picks)), expected)
    with pytest.raises(UserError):
        evaluation_runs.sample_images(run, result, np.array([12]))


def test_accuracy_matches_model_predict_on_the_test_split(split_source):
    run = _install(split_source)
    result = evaluation_runs.evaluate_run(run.run_id)
    split, data = _split_data(run)
    assert split == "test"
    model = loading.load_run_model(run).model
    predicted = model.predict(data.x.astype(np.float32), verbose=0).argmax(axis=1)
    np.testing.assert_array_equal(result.labels, data.y)
    np.testing.assert_array_equal(result.predictions, predicted)
    assert result.accuracy == pytest.approx(float(np.mean(predicted == data.y)))


def test_flat_dataset_is_scored_on_its_validation_split(flat_source):
    run = _install(flat_source)
    result = evaluation_runs.evaluate_run(run.run_id)
    split, data = _split_data(run)
    assert split == "val" == result.split
    assert result.num_samples == len(data) == 3 * 2  # 20% of 12 per class, as training held out
    model = loading.load_run_model(run).model
    predicted = model.predict(data.x.astype(np.float32), verbose=0).argmax(axis=1)
    assert result.accuracy == pytest.approx(float(np.mean(predicted == data.y)))
    assert sorted(result.paths) == sorted(data.paths)
    assert evaluation_runs.cached_result(run).split == "val"


def test_array_dataset_keeps_its_images_beside_the_result(digits_source):
    """scikit-learn digits: no files to re-decode, no test split; the saved images are the only way back."""
    run = _install(digits_source)
    result = evaluation_runs.evaluate_run(run.run_id)
    split, data = _split_data(run)
    assert result.split == split == "val" and result.paths is None
    assert result.class_names == [str(i) for i in range(10)]
    picks = evaluation.misclassified(result)[:5] if len(evaluation.misclassified(result)) else np.arange(5)
    got = evaluation_runs.sample_images(run, evaluation_runs.cached_result(run), picks)
    np.testing.assert_array_equal(np.stack(got), data.x[picks])
    (run.path / "evaluation" / "images.npy").unlink()
    with pytest.raises(UserError, match="not kept"):
        evaluation_runs.sample_images(run, result, picks)


def test_limit_scores_a_sample_and_is_recorded(split_source):
    run = _install(split_source)
    result = evaluation_runs.evaluate_run(run.run_id, limit=5)
    assert result.num_samples == 5
    assert evaluation_runs.source(run)["limit"] == 5
    assert evaluation_runs.cached_result(run).num_samples == 5
    with pytest.raises(UserError, match="limit"):
        evaluation_runs.evaluate_run(run.run_id, limit=-1)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_cli_evaluate_prints_the_per_class_table(split_source):
    run = _install(split_source)
    proc = _cli("evaluate", "--run", run.run_id)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("test: 12 samples")
    rows = [line.split()[0] for line in lines[4:]]
    assert rows == CLASSES
    assert evaluation_runs.cached_result(run) is not None  # the CLI saved it for the UI


def test_cli_unknown_run_is_one_line_and_nonzero():
    proc = _cli("evaluate", "--run", "no-such-run")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "error: no run 'no-such-run'; `python -m core runs` lists them"
    ]
    assert "Traceback" not in proc.stderr + proc.stdout
