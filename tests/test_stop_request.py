"""The stop file is looked at every CHECK_EVERY_S while training (not at every batch), a signal at every batch."""

from __future__ import annotations

import time

import keras

from core.training.callbacks import StopRequest


def _stopper(run_dir) -> StopRequest:
    cb = StopRequest(run_dir)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.stop_training = False  # as fit() sets it
    cb.set_model(model)
    cb.on_train_begin()
    return cb


def test_a_stop_file_is_seen_within_the_check_interval_and_a_signal_at_once(tmp_path):
    cb = _stopper(tmp_path)
    cb.on_train_batch_end(0)  # first batch: the files are looked at
    assert not cb.model.stop_training
    (tmp_path / "stop").write_text("stop\n")
    cb.on_train_batch_end(1)  # inside the interval: not looked at yet
    assert not cb.model.stop_training
    time.sleep(cb.CHECK_EVERY_S * 1.5)
    cb.on_train_batch_end(2)
    assert cb.model.stop_training and cb.stopped and cb.requested

    cb = _stopper(tmp_path / "other")
    (tmp_path / "other").mkdir()
    cb.on_train_batch_end(0)
    cb.requested = True  # what the SIGTERM handler sets
    cb.on_train_batch_end(1)
    assert cb.model.stop_training and cb.stopped


def test_the_epoch_end_always_looks(tmp_path):
    cb = _stopper(tmp_path)
    cb.on_train_batch_end(0)
    (tmp_path / "stop").write_text("stop\n")
    cb.on_epoch_end(0)
    assert cb.model.stop_training and cb.stopped
