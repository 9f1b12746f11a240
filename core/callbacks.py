"""Keras callbacks a training job uses to talk to the run directory and to stop cleanly."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import keras

from core import runs
from core.models import save_model


def _clean(logs: dict | None) -> dict:
    out = {}
    for k, v in (logs or {}).items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        out[k] = f if math.isfinite(f) else None
    return out


class ProgressWriter(keras.callbacks.Callback):
    """Appends every epoch's logs and throttled batch progress to progress.jsonl, and saves the model each epoch
    (atomically) so a killed job still leaves a loadable model."""

    def __init__(self, run_dir: Path, every_s: float = 0.5, echo: Callable[[str], None] | None = None,
                 save_each_epoch: bool = True, meta: dict | None = None) -> None:  # fmt: skip
        super().__init__()
        self.run_dir = Path(run_dir)
        self.every_s = every_s
        self.echo = echo
        self.save_each_epoch = save_each_epoch
        self.meta = meta

    def on_train_begin(self, logs=None):
        self._epoch = 0
        self._last_write = 0.0
        self._epoch_start = time.time()
        self._history: list[dict] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        now = time.time()
        if now - self._last_write < self.every_s:
            return
        self._last_write = now
        rec = {"type": "batch", "epoch": self._epoch + 1, "epochs": self.params.get("epochs"),
               "step": batch + 1, "steps": self.params.get("steps"), "t": now,
               "epoch_elapsed": now - self._epoch_start, **_clean(logs)}  # fmt: skip
        runs.append_progress(self.run_dir, rec)

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        rec = {"type": "epoch", "epoch": epoch + 1, "epochs": self.params.get("epochs"), "t": now,
               "seconds": now - self._epoch_start, **_clean(logs)}  # fmt: skip
        self._history.append(rec)
        if self.save_each_epoch:
            save_model(self.model, self.run_dir / "model.keras", self.meta)
        runs.append_progress(self.run_dir, rec)
        runs.update_status(
            self.run_dir, epochs_done=epoch + 1, best_val_accuracy=runs.best_val_accuracy(self._history)
        )
        if self.echo:
            parts = [
                f"{k} {v:.4f}"
                for k, v in rec.items()
                if k in ("loss", "accuracy", "val_loss", "val_accuracy") and v is not None
            ]
            self.echo(
                f"epoch {epoch + 1}/{self.params.get('epochs')}: {' '.join(parts)} ({rec['seconds']:.1f} s)"
            )


class StopRequest(keras.callbacks.Callback):
    """Ends training after the current batch when the stop file appears or a signal set `requested`."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.requested = False

    def on_train_begin(self, logs=None):
        self.stopped = False

    def on_train_batch_end(self, batch, logs=None):
        if self.requested or runs.stop_requested(self.run_dir):
            self.requested = True
            self.stopped = True
            self.model.stop_training = True

    on_epoch_end = on_train_batch_end


class TargetAccuracy(keras.callbacks.Callback):
    """The intro notebook's callback: stop once accuracy (validation when there is one) reaches the target."""

    def __init__(self, target: float, monitor: str = "val_accuracy") -> None:
        super().__init__()
        self.target = target
        self.monitor = monitor

    def on_train_begin(self, logs=None):
        self.reached_at: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor, (logs or {}).get("accuracy"))
        if value is not None and float(value) >= self.target:
            self.reached_at = epoch + 1
            self.model.stop_training = True
