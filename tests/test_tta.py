"""Test-time augmentation: the views (shifts, the mirror rule), the averaging, a real run through the CLI and
the Evaluate page's toggle."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.analysis import evaluation_runs, tta
from core.errors import UserError
from tests.apptest_support import open_page, texts
from tests.helpers import app_dirs, make_dataset, train_tiny_run

REPO = Path(__file__).resolve().parents[1]


def _dot(h: int = 8, w: int = 8) -> np.ndarray:
    x = np.zeros((1, h, w, 1), np.uint8)
    x[0, 3, 4, 0] = 200
    return x


def test_shifts_move_the_image_and_repeat_the_edge():
    x = _dot()
    assert np.argwhere(tta.shifted(x, 2, 0)[0, ..., 0]).tolist() == [[5, 4]]
    assert np.argwhere(tta.shifted(x, 0, -2)[0, ..., 0]).tolist() == [[3, 2]]
    edge = np.arange(8, dtype=np.uint8)[None, None, :, None].repeat(8, axis=1)  # columns 0..7
    right = tta.shifted(edge, 0, 2)[0, 0, :, 0]
    assert right.tolist() == [0, 0, 0, 1, 2, 3, 4, 5]  # the left edge repeated into the gap
    assert np.argwhere(tta.view(x, "mirror", 2)[0, ..., 0]).tolist() == [[3, 3]]
    with pytest.raises(UserError):
        tta.view(x, "rotate", 2)


def test_the_rule_follows_the_models_own_augmentation_and_the_dataset():
    import keras

    def trained_with(*augmentation):
        inputs = keras.Input((28, 28, 1))
        x = inputs
        for layer in augmentation:
            x = layer(x)
        return keras.Model(inputs, x)

    plain = tta.plan("fashion-mnist-sample", (28, 28, 1), trained_with())
    assert plain.views == ("identity", "shift right", "shift left", "shift down", "shift up")
    assert plain.shift_px == 1 and "not trained with shifts" in plain.shift_reason
    both = tta.plan("fashion-mnist-sample", (28, 28, 1),
                    trained_with(keras.layers.RandomFlip("horizontal"), keras.layers.RandomTranslation(0.1, 0.1)))  # fmt: skip
    assert both.views == ("identity", "mirror", "shift right", "shift left", "shift down", "shift up")
    assert both.shift_px == 2 and "trained with horizontal flips" in both.mirror_reason
    assert "mirror" in tta.plan("my-photos", (28, 28, 3), trained_with(keras.layers.RandomFlip())).views
    assert (
        "mirror"
        not in tta.plan("my-photos", (28, 28, 1), trained_with(keras.layers.RandomFlip("vertical"))).views
    )
    digits = tta.plan("digits", (8, 8, 1), trained_with(keras.layers.RandomFlip("horizontal")))
    assert "mirror" not in digits.views and "digit" in digits.mirror_reason  # digits never, flips or not
    assert tta.plan("tiny", (4, 4, 1)).views == ("identity",)  # too small to shift


def test_tta_probabilities_are_the_mean_over_views():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    out = keras.layers.Dense(3, activation="softmax")(
        keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    )
    model = keras.Model(inputs, out)
    x = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 1)).astype(np.uint8)
    plan = tta.plan("fashion_mnist", (8, 8, 1))
    plain, mean = tta.probabilities(model, x, "softmax", plan)
    direct = [np.asarray(model(tta.view(x, v, plan.shift_px).astype(np.float32))) for v in plan.views]
    assert np.allclose(plain, direct[0], atol=1e-6)
    assert np.allclose(mean, np.mean(direct, axis=0), atol=1e-6)
    assert not np.allclose(mean, plain, atol=1e-4)  # the views did change something


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tta")
    with app_dirs(root):
        (root / "data").mkdir()
        (root / "runs").mkdir()
        name = make_dataset("shapes", split=True, per_class=15)
        run = train_tiny_run(name, epochs=2)
    return root, run.run_id


@pytest.fixture
def installed(trained, monkeypatch):
    root, run_id = trained
    monkeypatch.setenv("CONVNET_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("CONVNET_RUNS_DIR", str(root / "runs"))
    return run_id


@pytest.mark.slow
def test_a_run_with_and_without_tta_on_the_same_images(installed):
    result = tta.evaluate_run(installed)
    plain = evaluation_runs.evaluate_run(installed)
    assert result.split == "test" and result.num_samples == plain.num_samples == 15
    assert result.accuracy == pytest.approx(plain.accuracy)  # "without" is exactly what Evaluate reports
    assert result.gain == pytest.approx((result.fixed - result.broken) / result.num_samples)
    assert "mirror" not in result.plan.views  # a folder of our own, trained without flips
    assert "test-time augmentation on 15 test images" in result.describe()


@pytest.mark.slow
def test_cli_evaluate_tta(installed):
    out = subprocess.run([sys.executable, "-m", "core", "evaluate", "--run", installed, "--tta"], cwd=REPO,
                         env={**os.environ}, capture_output=True, text=True, timeout=240)  # fmt: skip
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("test-time augmentation on 15 test images: accuracy") and "shifts of ±1 px" in last
    assert "no mirror (the model was not trained with horizontal flips)" in last


@pytest.mark.slow
def test_evaluate_page_toggle_shows_the_measured_gain(installed):
    at = open_page("pages/evaluate.py", timeout=180, active_dataset="shapes", active_run=installed)
    at.session_state["active_run"] = installed
    at.run()
    assert not at.exception, at.exception
    at.toggle(key="eval_tta").set_value(True).run()
    assert not at.exception, at.exception
    result = at.session_state["tta_result"][1]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accuracy with TTA"] == f"{result.tta_accuracy:.1%}"
    assert metrics["Without"] == f"{result.accuracy:.1%}"
    assert "5 views: the image, shifts of ±1 px (the smallest shift" in texts(at)
