"""A preset's training recipe: one-cycle learning rate, label smoothing, the small-best preset, config round-trip."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from core.errors import UserError
from core.models import architectures
from core.training import runs, trainer
from core.training.run_config import RunConfig
from core.training.schedules import FINAL_DIV, START_DIV, OneCycle, one_cycle_lr
from tests.helpers import make_dataset, train_tiny_run


def test_one_cycle_warms_up_to_the_peak_then_decays():
    peak, total = 1e-2, 201
    lrs = [one_cycle_lr(i, total, peak) for i in range(total)]
    assert lrs[0] == pytest.approx(peak / START_DIV)
    assert lrs[50] == pytest.approx(peak)  # the end of the first quarter
    assert lrs[-1] == pytest.approx(peak / FINAL_DIV)
    assert all(a < b for a, b in zip(lrs[:50], lrs[1:51], strict=True))
    assert all(a > b for a, b in zip(lrs[50:-1], lrs[51:], strict=True))
    assert lrs[125] == pytest.approx((peak + peak / FINAL_DIV) / 2)  # half way down the cosine


class _SeenRates(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.rates: list[float] = []

    def on_train_batch_begin(self, batch, logs=None) -> None:
        self.rates.append(float(self.model.optimizer.learning_rate.numpy()))


def test_the_callback_sets_the_rate_of_every_batch_in_a_real_fit():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (40, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 3, 40)
    model = architectures.build_model("fast", (28, 28, 1), 3)
    architectures.compile_model(model, "softmax", "sparse", "adam", 1e-3)
    seen = _SeenRates()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[OneCycle(4e-3), seen])
    assert len(seen.rates) == 10
    np.testing.assert_allclose(seen.rates, [one_cycle_lr(i, 10, 4e-3) for i in range(10)], rtol=1e-5)
    assert seen.rates[0] < seen.rates[3] and seen.rates[-1] < 1e-5


def test_label_smoothing_gets_into_the_compiled_loss():
    model = architectures.build_model("fast", (28, 28, 1), 4)
    architectures.compile_model(model, "softmax", "categorical", "adam", 1e-3, label_smoothing=0.2)
    y = np.eye(4, dtype="float32")[[0, 2]]
    p = np.array([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]], dtype="float32")
    smooth = y * 0.8 + 0.2 / 4
    expected = float(np.mean(-(smooth * np.log(p)).sum(axis=1)))
    assert float(model.loss(y, p)) == pytest.approx(expected, rel=1e-5)
    plain = architectures.loss_for("softmax", "categorical")
    assert float(plain(y, p)) != pytest.approx(expected, rel=1e-3)
    with pytest.raises(UserError, match="one-hot"):
        architectures.loss_for("softmax", "sparse", 0.1)


def test_xla_is_off_unless_asked_for_and_asking_on_a_cpu_is_harmless(monkeypatch):
    monkeypatch.delenv(architectures.XLA_ENV, raising=False)
    assert architectures.jit_setting() is False
    monkeypatch.setenv(architectures.XLA_ENV, "yes")  # only "1" turns it on
    assert architectures.jit_setting() is False
    monkeypatch.setenv(architectures.XLA_ENV, "1")
    assert architectures.jit_setting() == "auto"
    model = architectures.build_model("fast", (28, 28, 1), 3)
    architectures.compile_model(model, "softmax", "categorical", "adam", 1e-3)
    x, y = np.zeros((8, 28, 28, 1), "float32"), np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2, 0, 1]]
    model.fit(x, y, epochs=1, verbose=0)
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        assert model.jit_compile is False  # "auto" means no XLA on a CPU


def test_small_best_stays_under_100k_params_and_the_notebook_presets_keep_constant_hard_labels():
    model = architectures.build_model("small-best", (28, 28, 1), 10)
    assert 50_000 < model.count_params() < 100_000
    assert any(type(layer).__name__ == "RandomTranslation" for layer in model.layers)
    for name, p in architectures.PRESETS.items():
        if p.source != "ConvNet Studio":
            assert (p.lr_schedule, p.label_smoothing) == ("constant", 0.0), name


def test_the_recipe_comes_from_the_preset_and_can_be_overridden():
    make_dataset("tiny", size=28, per_class=8)
    cfg = trainer.resolve(trainer.TrainRequest(dataset="tiny", preset="fast"))
    assert (cfg.lr_schedule, cfg.label_smoothing, cfg.label_mode, cfg.epochs) == (
        "one-cycle",
        0.1,
        "categorical",
        3,
    )
    plain = trainer.resolve(
        trainer.TrainRequest(dataset="tiny", preset="fast", lr_schedule="constant", label_smoothing=0.0)
    )
    assert (plain.lr_schedule, plain.label_mode) == ("constant", "sparse")
    assert "lr_schedule" not in plain.to_dict()  # defaults are left out, as in configs from before recipes
    with pytest.raises(UserError, match="label smoothing"):
        trainer.resolve(trainer.TrainRequest(dataset="tiny", label_smoothing=0.9))
    with pytest.raises(UserError, match="lr schedule"):
        trainer.resolve(trainer.TrainRequest(dataset="tiny", lr_schedule="step"))


@pytest.mark.slow
def test_small_best_trains_an_epoch_and_its_config_round_trips():
    make_dataset("tiny", size=28, per_class=8)
    run = train_tiny_run("tiny", preset="small-best", epochs=1)
    saved = json.loads((run.path / "config.json").read_text())
    assert saved["lr_schedule"] == "one-cycle" and saved["label_smoothing"] == 0.1
    cfg = RunConfig.from_dict(saved)
    assert cfg.to_dict() == saved and cfg.label_mode == "categorical"
    assert runs.get_run(run.run_id).status["state"] == "completed"
    assert (run.path / "model.keras").is_file()


def test_the_train_form_starts_from_the_presets_recipe():
    from tests.apptest_support import open_page

    make_dataset("tiny", per_class=3)
    at = open_page("pages/train.py", active_dataset="tiny")
    assert not at.exception
    assert at.selectbox(key="sched_fast").value == "one-cycle"
    assert at.number_input(key="smooth_fast").value == 0.1
    at.selectbox(key="preset").set_value("fashion-cnn").run()
    assert not at.exception
    assert at.selectbox(key="sched_fashion-cnn").value == "constant"
    assert at.number_input(key="smooth_fashion-cnn").value == 0.0
