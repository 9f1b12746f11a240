"""What a run reports is what it did: NaN/exploding losses and chance-level accuracy end with a warning and a
hint, and best_val_accuracy is the validation accuracy of the model actually saved (evaluate --split val)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import paths
from core.analysis import evaluation_runs
from core.models import architectures, loading
from core.training import runs, trainer
from tests.helpers import make_dataset

REPO = Path(__file__).resolve().parents[1]


def _noisy_dataset(name: str, per_class: int = 15, signal: int = 60, seed: int = 0) -> str:
    """Three classes told apart by a faint brighter band under heavy noise: validation accuracy moves about."""
    rng = np.random.default_rng(seed)
    for k, c in enumerate(["a", "b", "c"]):
        d = paths.data_dir() / name / c
        d.mkdir(parents=True)
        for i in range(per_class):
            a = rng.integers(0, 200, (16, 16)).astype(np.int32)
            a[k * 5 : k * 5 + 5, :] += signal
            Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L").save(d / f"{i}.png")
    return name


def _train(learning_rate: float | None = None, **kw) -> runs.Run:
    """A real run; a learning rate beyond what `resolve` accepts (> 10) is written into config.json directly,
    as a run made by an older version or edited by hand would have it. A constant rate and hard labels (not
    `fast`'s one-cycle recipe), so the rate a test gives is the rate every batch trains at."""
    recipe = {"lr_schedule": "constant", "label_smoothing": 0.0}
    config = trainer.resolve(trainer.TrainRequest(**{"batch_size": 8, **recipe, **kw}))
    if learning_rate is not None:
        config = config.replace(learning_rate=learning_rate)
    run = runs.create_run(config)
    status = trainer.train_run(run.path)
    assert status["state"] == "completed", status
    return runs.get_run(run.run_id)


def _weights_finite(run: runs.Run) -> bool:
    model = loading.load_model(run.model_path)
    return all(np.isfinite(w).all() for w in model.get_weights())


def test_a_nan_loss_stops_early_and_saves_the_last_good_weights():
    make_dataset("tiny", per_class=10)
    run = _train(dataset="tiny", epochs=4, learning_rate=1e3, optimizer="sgd")
    warnings = run.warnings
    assert len(warnings) == 1 and re.search(r"loss became (NaN|inf) in epoch \d", warnings[0]), warnings
    assert warnings[0].endswith("try a lower learning rate") and "\n" not in warnings[0]
    epochs, _ = runs.read_progress(run.path)
    assert run.status["epochs_done"] < 4, "training went on after the loss became NaN"
    saved = run.status["saved_epoch"]
    assert saved < run.status["epochs_done"]
    if saved:
        assert np.isfinite(epochs[saved - 1]["loss"])
        assert run.status["best_val_accuracy"] == pytest.approx(epochs[saved - 1]["val_accuracy"], abs=1e-9)
    assert _weights_finite(run), "the saved model holds NaN weights"


def test_validation_accuracy_at_chance_level_gets_a_warning():
    """Every class holds the very same images (labels unrelated to content): no model can beat guessing."""
    src = make_dataset("src", classes=("only",), per_class=12)
    root = paths.data_dir() / "same"
    for c in ("x", "y", "z"):
        shutil.copytree(paths.data_dir() / src / "only", root / c)
    shutil.rmtree(paths.data_dir() / src)
    run = _train(dataset="same", epochs=2, learning_rate=0.01)
    assert len(run.warnings) == 1 and "chance level" in run.warnings[0], run.warnings
    assert "try a lower learning rate or more epochs" in run.warnings[0]


def test_a_healthy_run_has_no_warnings():
    make_dataset("easy", per_class=16)
    run = _train(dataset="easy", epochs=30, target_accuracy=0.9, learning_rate=0.01)
    assert run.status["best_val_accuracy"] >= 0.9 and run.warnings == []


def test_warnings_and_hints_without_training():
    rescaled = {p: trainer._has_rescaling(architectures.build_model(p, (32, 32, 3), 2, weights=None))
                for p in ("fast", "cats-dogs-2", "cats-dogs-3")}  # fmt: skip
    assert rescaled == {"fast": True, "cats-dogs-2": False, "cats-dogs-3": True}
    ep = [
        {"loss": 0.7, "val_accuracy": 0.9},
        {"loss": 2.0, "val_accuracy": 0.8},
        {"loss": 5.0, "val_accuracy": 0.7},
    ]
    (w,) = trainer.health_warnings(ep, "cats-dogs-2", rescaled=False, val_counts=[5, 5], first_loss=0.69)
    assert w.startswith("loss exploded") and w.endswith(
        "cats-dogs-2 has no rescaling layer, as in the blog: try a lower learning rate or cats-dogs-3"
    )
    assert trainer.health_warnings(ep[:1], "fast", rescaled=True, val_counts=[5, 5]) == []
    # 90% of the validation images in one class: 91% accuracy is what always guessing it gives
    (w,) = trainer.health_warnings([{"loss": 0.3, "val_accuracy": 0.91}], "fast", rescaled=True,
                                    val_counts=[90, 10])  # fmt: skip
    assert "chance level" in w and "90.0%" in w
    (w,) = trainer.health_warnings([], "fast", rescaled=True, val_counts=[3, 3], nonfinite_at=1,
                                    nonfinite_value="inf", saved_epoch=0)  # fmt: skip
    assert "loss became inf in epoch 1" in w and "untrained weights" in w


@pytest.mark.parametrize("restore_best", [True, False])
def test_best_val_accuracy_is_the_saved_models_and_evaluate_val_reproduces_it(restore_best):
    _noisy_dataset("noisy")
    run = _train(
        dataset="noisy", epochs=3, seed=2, learning_rate=0.1, optimizer="sgd", restore_best=restore_best
    )
    epochs, _ = runs.read_progress(run.path)
    vals = [e["val_accuracy"] for e in epochs]
    assert len(epochs) == 3 and len(set(vals)) > 1, f"validation accuracy should move between epochs: {vals}"
    if restore_best:
        best = max(vals)
        ties = [e for e in epochs if e["val_accuracy"] == best]
        expected = min(ties, key=lambda e: e["val_loss"])["epoch"]
    else:
        expected = 3
    st = run.status
    assert st["saved_epoch"] == expected
    assert st["best_val_accuracy"] == pytest.approx(vals[expected - 1], abs=1e-9)
    assert st["best_epoch_val_accuracy"] == pytest.approx(max(vals), abs=1e-9)
    result = evaluation_runs.evaluate_run(run.run_id, split="val")
    assert result.split == "val" and result.num_samples == run.status["val_images"]
    assert abs(result.accuracy - st["best_val_accuracy"]) <= 1e-6, (result.accuracy, st, vals)
    if restore_best:
        out = subprocess.run([sys.executable, "-m", "core", "evaluate", "--run", run.run_id, "--split", "val"],
                             cwd=REPO, env={**os.environ}, capture_output=True, text=True, timeout=240)  # fmt: skip
        assert out.returncode == 0, out.stderr
        printed = float(re.search(r"validation accuracy ([0-9.]+)", out.stdout).group(1))
        assert abs(printed - st["best_val_accuracy"]) <= 1e-6, out.stdout
