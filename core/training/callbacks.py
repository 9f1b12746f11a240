"""Keras callbacks a training job uses to talk to the run directory and to stop cleanly."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from core.models.loading import save_model
from core.training import runs


def _clean(logs: dict | None) -> dict:
    out = {}
    for k, v in (logs or {}).items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        out[k] = f if math.isfinite(f) else None
    return out


def _finite(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class ProgressWriter(keras.callbacks.Callback):
    """Appends every epoch's logs and throttled batch progress to progress.jsonl, and saves the model each epoch
    (atomically) so a killed job still leaves a loadable model.

    Nothing here recreates a deleted run folder: when it is gone, training stops after the batch (`gone`).
    """

    def __init__(self, run_dir: Path, every_s: float = 0.5, echo: Callable[[str], None] | None = None,
                 save_each_epoch: bool = True, meta: dict | None = None) -> None:  # fmt: skip
        super().__init__()
        self.run_dir = Path(run_dir)
        self.every_s = every_s
        self.echo = echo
        self.save_each_epoch = save_each_epoch
        self.meta = meta
        self.gone = False

    def _folder_gone(self) -> bool:
        if self.run_dir.is_dir():
            return False
        self.gone = True
        self.model.stop_training = True
        return True

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
        try:
            runs.append_progress(self.run_dir, rec)
        except OSError:
            if not self._folder_gone():
                raise

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        rec = {"type": "epoch", "epoch": epoch + 1, "epochs": self.params.get("epochs"), "t": now,
               "seconds": now - self._epoch_start, **_clean(logs)}  # fmt: skip
        self._history.append(rec)
        if self.gone:
            return
        # the checkpoint on disk is this epoch's: best_val_accuracy always describes the saved model
        saved: dict[str, Any] = {}
        try:
            if self.save_each_epoch:
                save_model(self.model, self.run_dir / "model.keras", self.meta, make_parents=False)
                saved = {"saved_epoch": epoch + 1, "best_val_accuracy": rec.get("val_accuracy")}
            runs.append_progress(self.run_dir, rec)
            runs.update_status(self.run_dir, epochs_done=epoch + 1,
                               best_epoch_val_accuracy=runs.best_val_accuracy(self._history), **saved)  # fmt: skip
        except OSError:
            if not self._folder_gone():
                raise
            return
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
    """Ends training after the current batch when a signal set `requested`, or when the stop file appears (looked
    at every CHECK_EVERY_S: two stats a batch were 0.1 ms of every step)."""

    CHECK_EVERY_S = 0.05

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.requested = False

    def on_train_begin(self, logs=None):
        self.stopped = False
        self._next_check = 0.0

    def on_train_batch_end(self, batch, logs=None):
        if not self.requested:
            now = time.monotonic()
            if now < self._next_check:
                return
            self._next_check = now + self.CHECK_EVERY_S
        self._check()

    def on_epoch_end(self, epoch, logs=None):
        self._check()

    def _check(self) -> None:
        if self.requested or runs.stop_requested(self.run_dir):
            self.requested = True
            self.stopped = True
            self.model.stop_training = True
        elif not self.run_dir.is_dir():  # the run was deleted under us: end quietly, write nothing
            self.model.stop_training = True


@dataclass
class Snapshot:
    """Weights held in memory at the end of an epoch, with that epoch's validation accuracy."""

    epoch: int  # 1-based; 0 = before training
    weights: list
    val_accuracy: float | None
    val_loss: float | None = None


def _better(new: Snapshot, best: Snapshot) -> bool:
    """Higher validation accuracy wins; at equal accuracy (small validation sets tie often) the lower loss."""
    if new.val_accuracy is None:
        return False
    if best.val_accuracy is None or new.val_accuracy > best.val_accuracy:
        return True
    if new.val_accuracy < best.val_accuracy:
        return False
    return new.val_loss is not None and (best.val_loss is None or new.val_loss < best.val_loss)


class TrainingHealth(keras.callbacks.Callback):
    """Stops at the first NaN/inf loss, and keeps the weights worth saving (ModelCheckpoint-style, in memory):
    the last epoch whose loss was finite and, by `monitor`, the best epoch (for "restore best weights")."""

    def __init__(self, monitor: str | None = "val_accuracy") -> None:
        super().__init__()
        self.monitor = monitor
        self._reset()
        self.last_good: Snapshot | None = None

    def _reset(self) -> None:
        self._epoch = 0
        self.first_loss: float | None = None
        self.nonfinite_at: int | None = None  # 1-based epoch in which the loss became NaN/inf
        self.nonfinite_value = ""
        self.best: Snapshot | None = None
        self.last_epoch: int = 0
        self.last_val_accuracy: float | None = None

    def on_train_begin(self, logs=None):
        self._reset()
        self.last_good = Snapshot(0, self.model.get_weights(), None)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _bad(self, value: Any, epoch: int) -> None:
        if self.nonfinite_at is None:
            self.nonfinite_at = epoch
            try:
                self.nonfinite_value = "inf" if math.isinf(float(value)) else "NaN"
            except (TypeError, ValueError):
                self.nonfinite_value = "NaN"
        self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        f = _finite(loss)
        if f is None:
            self._bad(loss, self._epoch + 1)
        elif self.first_loss is None:
            self.first_loss = f

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.last_epoch = epoch + 1
        self.last_val_accuracy = _finite(logs.get(self.monitor)) if self.monitor else None
        loss = logs.get("loss")
        if self.nonfinite_at is not None or (loss is not None and _finite(loss) is None):
            self._bad(loss, epoch + 1)
            return
        val_loss = _finite(logs.get("val_loss"))
        snap = Snapshot(epoch + 1, self.model.get_weights(), self.last_val_accuracy, val_loss)
        self.last_good = snap
        if snap.val_accuracy is not None and (self.best is None or _better(snap, self.best)):
            self.best = snap

    def weights_to_save(self, restore_best: bool) -> Snapshot | None:
        """The snapshot to put back before the final save, or None to keep the model's current weights."""
        if restore_best and self.best is not None:
            return self.best
        if self.nonfinite_at is not None:
            return self.last_good
        return None


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
