"""A Keras callback that records how each layer's weights move: runs/<id>/dynamics.jsonl, one line per epoch.

Per layer with trainable weights: the weight norm (all its weights together) and the update/weight ratio
(the norm of the change over the epoch over the norm before it; around 1e-3 is the usual healthy pace, much
more means a learning rate too high, much less a layer that stopped learning). Per ReLU layer: the share of
dead units, those whose output is 0 for every image of a fixed small batch of training images (a unit of a
conv layer is a channel: zero at every position of every image). Written atomically, never recreating a
deleted run (in a background thread, recordings.QueuedWrites); what each epoch's recording cost the
training thread is in the line (`seconds`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from core import atomic
from core.analysis import inspection
from core.training import recordings


def _is_relu(layer: keras.layers.Layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return True
    return getattr(getattr(layer, "activation", None), "__name__", "") == "relu"


def _norm(arrays: list[np.ndarray]) -> float:
    """The norm of several arrays together; squares summed in float64 (~1e-11 relative error on float32 weights)."""
    return math.sqrt(sum(float(np.sum(np.square(a), dtype=np.float64)) for a in arrays))


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class Dynamics(keras.callbacks.Callback):
    """Weight norms, update/weight ratios and dead-ReLU shares per layer and epoch (see the module docstring)."""

    def __init__(self, run_dir: Path, probe: np.ndarray | None) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.probe = None if probe is None else np.asarray(probe, dtype=np.float32)

    def on_train_begin(self, logs=None):
        self._writes = recordings.QueuedWrites("training dynamics")
        self.rows: list[dict[str, Any]] = []
        self._layers = [layer for layer in self.model.layers if layer.trainable_weights]
        self._before = {layer.name: self._weights(layer) for layer in self._layers}
        self._norms = {name: _norm(ws) for name, ws in self._before.items()}  # as the last epoch ended
        relus = [layer for layer in self.model.layers if _is_relu(layer)]
        self._relu_names = [layer.name for layer in relus]
        self._fn = None
        if relus and self.probe is not None and len(self.probe):
            side = keras.Model(inspection.model_inputs(self.model),
                               [inspection.layer_output(self.model, layer) for layer in relus])  # fmt: skip

            def peaks(x):
                outs = side(x, training=False)
                outs = outs if isinstance(outs, list | tuple) else [outs]
                # each unit's largest output over every image (and position): 0 means dead
                return [tf.reduce_max(tf.reshape(o, (-1, o.shape[-1])), axis=0) for o in outs]

            self._fn = tf.function(peaks, reduce_retracing=True)

    @staticmethod
    def _weights(layer: keras.layers.Layer) -> list[np.ndarray]:
        """float32 copies, summed in float64 (_norm): float64 copies of a 6.5M-weight dense layer (`fast` at
        160x160) cost 0.27 s an epoch, ~5% of the epoch; this way ~0.03 s."""
        return [np.array(v.numpy(), dtype=np.float32, copy=True) for v in layer.trainable_weights]

    @property
    def gone(self) -> bool:
        """The run folder was deleted while training: nothing more is recorded."""
        return self._writes.gone

    def on_train_end(self, logs=None):
        self._writes.close()

    def on_epoch_end(self, epoch, logs=None):
        if self._writes.gone:
            return
        t0 = time.perf_counter()
        norms: dict[str, float | None] = {}
        ratios: dict[str, float | None] = {}
        for layer in self._layers:
            now = self._weights(layer)
            before = self._before[layer.name]
            norm, prev = _norm(now), self._norms[layer.name]
            step = _norm([a - b for a, b in zip(now, before, strict=True)])
            norms[layer.name] = _finite(norm)
            ratios[layer.name] = _finite(step / prev) if prev > 0 else None
            self._before[layer.name], self._norms[layer.name] = now, norm
        dead: dict[str, float | None] = {}
        if self._fn is not None:
            for name, peak in zip(self._relu_names, self._fn(tf.constant(self.probe)), strict=True):
                p = np.asarray(peak)
                dead[name] = float(np.mean(p <= 0.0)) if np.all(np.isfinite(p)) else None
        row = {"epoch": epoch + 1, "weight_norm": norms, "update_ratio": ratios, "dead_relu": dead,
               "seconds": round(time.perf_counter() - t0, 4)}  # fmt: skip
        self.rows.append(row)
        text = recordings.dynamics_lines(self.rows)
        path = self.run_dir / recordings.DYNAMICS_FILE
        self._writes.submit(lambda: atomic.write_bytes(path, text.encode(), make_parents=False))
