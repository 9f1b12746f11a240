"""Shared fixtures: every test gets its own data and runs folders so nothing touches the real ones."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
