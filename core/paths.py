"""Where datasets and runs live; overridable so tests and several installs never share state."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_DATASET = "fashion-mnist-sample"


def data_dir() -> Path:
    """Datasets folder: `CONVNET_DATA_DIR` or `<repo>/data`."""
    return Path(os.environ.get("CONVNET_DATA_DIR", REPO_ROOT / "data"))


def runs_dir() -> Path:
    """Run directories: `CONVNET_RUNS_DIR` or `<repo>/runs`."""
    return Path(os.environ.get("CONVNET_RUNS_DIR", REPO_ROOT / "runs"))


def embedded_dataset_dir() -> Path:
    """The sample that ships in the repository, always read from the repo even when data_dir moves."""
    return REPO_ROOT / "data" / EMBEDDED_DATASET
