"""The class scores before the softmax/sigmoid, and the features the head reads, for a batch of images.

Temperature scaling divides the logits, and the "unfamiliar image" score reads the logits (energy) and the head's
input (distance to the training images), so both need what a model's softmax/sigmoid hides. Grad-CAM already
finds that tensor without changing the shared model (`inspection.score_tensor`); this module reuses it to build
one side model per loaded model (the score and the output, one pass), cached while the model lives.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import UserError

EPS = 1e-12  # probabilities are clipped to this before taking logs (an opaque softmax head)

_SIDES: weakref.WeakKeyDictionary[Any, _Side] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


@dataclass(frozen=True)
class HeadOutputs:
    """logits: (N, k) float64, k = 1 for a one-unit (sigmoid) head; features: (N, d) float32 the head reads, or
    None when the head cannot be looked through (then only the logits are known)."""

    logits: np.ndarray
    features: np.ndarray | None
    outputs: np.ndarray | None = (
        None  # the model's own outputs from the same pass (probabilities for softmax)
    )


@dataclass(frozen=True)
class _Side:
    model: Any  # keras.Model: input -> the score tensor
    kernel: (
        np.ndarray | None
    )  # the Dense head's kernel and bias when the side model stops at the head's input
    bias: np.ndarray | None
    pre_activation: bool


def _side(model: Any) -> _Side:
    import keras

    from core.analysis import inspection

    with _LOCK:
        cached = _SIDES.get(model)
        if cached is None:
            score, dense, pre = inspection.score_tensor(model)
            inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
            kernel = bias = None
            if dense is not None:
                kernel = np.asarray(keras.ops.convert_to_numpy(dense.kernel), dtype=np.float64)
                if dense.use_bias:
                    bias = np.asarray(keras.ops.convert_to_numpy(dense.bias), dtype=np.float64)
            cached = _Side(keras.Model(inputs, [score, model.outputs[0]]), kernel, bias, pre)
            _SIDES[model] = cached
        return cached


def logits_from_outputs(outputs: np.ndarray, output_kind: str) -> np.ndarray:
    """Logits recovered from a head we cannot look through: log p for a softmax (softmax(log p) = p), the
    log-odds for a sigmoid, the outputs themselves for logits."""
    out = np.asarray(outputs, dtype=np.float64)
    if out.ndim == 1:
        out = out[:, None]
    if output_kind == "softmax":
        return np.log(np.clip(out, EPS, 1.0))
    if output_kind == "sigmoid":
        p = np.clip(out[:, :1], EPS, 1.0 - EPS)
        return np.log(p) - np.log1p(-p)
    return out


def head_outputs(
    model: Any,
    x: np.ndarray,
    output_kind: str,
    batch_size: int = 256,
    progress: Callable[[float], None] | None = None,
) -> HeadOutputs:
    """Logits (and the head's input features when the head is a softmax/sigmoid Dense) for raw-pixel images."""
    import keras

    side = _side(model)
    n = int(x.shape[0])
    batch_size = max(1, int(batch_size))
    scores, outs = [], []
    for start in range(0, n, batch_size):
        s, o = side.model(np.asarray(x[start : start + batch_size], dtype=np.float32), training=False)
        scores.append(np.asarray(keras.ops.convert_to_numpy(s)).reshape(min(batch_size, n - start), -1))
        outs.append(np.asarray(keras.ops.convert_to_numpy(o)).reshape(min(batch_size, n - start), -1))
        if progress is not None:
            progress(min(start + batch_size, n) / n)
    if not scores:
        raise UserError("no images to score")
    raw, own = np.concatenate(scores), np.concatenate(outs)
    if side.kernel is not None:
        feats = raw.astype(np.float32)
        z = feats.astype(np.float64) @ side.kernel
        if side.bias is not None:
            z = z + side.bias
        return HeadOutputs(z.reshape(n, -1), feats, own)
    if side.pre_activation:
        return HeadOutputs(raw.astype(np.float64), None, own)
    return HeadOutputs(logits_from_outputs(raw, output_kind), None, own)
