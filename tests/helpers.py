"""Tiny real datasets and real trained runs for tests (seconds, not minutes)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core import paths
from core.training import runs, trainer


def make_image_folder(root: Path, classes=("circle", "square", "stripes"), per_class: int = 12, size: int = 16,
                      rgb: bool = False, split: bool = False, seed: int = 0) -> Path:  # fmt: skip
    """Class folders of PNGs whose class is visible (a bright blob in a class-specific place), so a model learns."""
    rng = np.random.default_rng(seed)
    splits = {"train": per_class, "test": max(2, per_class // 3)} if split else {"": per_class}
    for split_name, n in splits.items():
        for k, c in enumerate(classes):
            d = root / split_name / c if split_name else root / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = rng.integers(0, 40, (size, size)).astype(np.uint8)
                q = size // 2
                r0, c0 = [(0, 0), (q, q), (0, q), (q, 0)][k % 4]
                a[r0 : r0 + q, c0 : c0 + q] = 220
                img = Image.fromarray(a, "L")
                if rgb:
                    img = Image.merge("RGB", (img, img.point(lambda v: v // 2), img))
                img.save(d / f"{c}_{i:03d}.png")
    return root


def make_dataset(name: str = "tiny", **kwargs) -> str:
    """A dataset folder in the (test-isolated) data dir; returns its catalog name."""
    make_image_folder(paths.data_dir() / name, **kwargs)
    return name


def train_tiny_run(dataset: str, preset: str = "fast", epochs: int = 1, **kwargs) -> runs.Run:
    """A real run trained in this process: config, progress, status and model.keras on disk."""
    req = trainer.TrainRequest(dataset=dataset, preset=preset, epochs=epochs, batch_size=kwargs.pop("batch_size", 8),
                                **kwargs)  # fmt: skip
    run = trainer.start_run(req)
    status = trainer.train_run(run.path)
    assert status["state"] == "completed", status
    return runs.get_run(run.run_id)


def module_run(tmp_path_factory, label: str, **dataset: Any) -> tuple[Path, str, runs.Run]:
    """One real run shared by a test module (training is the slow part), in its own data and runs folders."""
    root = tmp_path_factory.mktemp(label)
    with app_dirs(root):
        name = make_dataset(**dataset)
        run = train_tiny_run(name)
    return root, name, run


@contextmanager
def app_dirs(root: Path) -> Iterator[None]:
    """The app's data and runs folders under `root` while a module fixture builds real datasets and runs there."""
    with pytest.MonkeyPatch.context() as mp:
        in_run_dirs(mp, root)
        yield


def in_run_dirs(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Point the app's data and runs folders at a module_run's root for one test."""
    monkeypatch.setenv("CONVNET_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("CONVNET_RUNS_DIR", str(root / "runs"))


def wait_for(pred, timeout: float = 120, poll: float = 0.2) -> bool:
    """Poll `pred` until it is true or `timeout` seconds pass (a training job is another process)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(poll)
    return False
