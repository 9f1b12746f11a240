"""Shared fixtures: every test gets its own data and runs folders so nothing touches the real ones."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# no warm spare training processes (core.training.spare) unless a test asks for one: each is a TensorFlow process
os.environ.setdefault("CONVNET_WARM_START", "0")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    data = tmp_path / "data"
    runs = tmp_path / "runs"
    data.mkdir()
    runs.mkdir()
    monkeypatch.setenv("CONVNET_DATA_DIR", str(data))
    monkeypatch.setenv("CONVNET_RUNS_DIR", str(runs))
    return data, runs


# Files whose tests train real models, drive AppTest pages or start processes: seconds to a minute each. They are
# marked `slow` so `make test-fast` (the inner loop, <= 2 minutes) leaves them out; `make test` runs everything.
SLOW_FILES = {
    "test_bad_uploads.py", "test_cli.py", "test_cli_dataset.py", "test_distribute.py", "test_evaluation.py", "test_evaluation_runs.py",
    "test_export.py", "test_export_onnx.py", "test_export_safety.py", "test_hostile_cli.py", "test_inspection.py", "test_runs_lifecycle.py",
    "test_streaming.py", "test_timelapse.py", "test_training.py", "test_training_health.py",
}  # fmt: skip


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.path.name
        if item.path.parent.name == "e2e":
            item.add_marker(pytest.mark.e2e)
        if name in SLOW_FILES or name.startswith("test_page_") or item.path.parent.name == "e2e":
            item.add_marker(pytest.mark.slow)
        # pytest-xdist (`make test` runs 2 workers, --dist loadgroup): one worker runs every browser test in turn
        # (one Chromium, one server at a time); other files go whole to a worker, so module fixtures (a trained
        # run) are built once
        group = "browser" if item.path.parent.name == "e2e" else name
        item.add_marker(pytest.mark.xdist_group(group))
