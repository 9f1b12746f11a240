"""Turn a model's raw outputs into per-class probabilities, whatever head the preset used."""

from __future__ import annotations

import numpy as np

OUTPUT_KINDS = ("sigmoid", "softmax", "logits")


def to_probabilities(outputs: np.ndarray, output_kind: str) -> np.ndarray:
    """(N, k) probabilities summing to 1: sigmoid -> [1-p, p]; logits -> softmax; softmax unchanged."""
    out = np.asarray(outputs, dtype=np.float64)
    if out.ndim == 1:
        out = out[:, None]
    if output_kind == "sigmoid":
        p = out[:, :1]
        return np.concatenate([1.0 - p, p], axis=1)
    if output_kind == "logits":
        z = out - out.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    if output_kind == "softmax":
        return out
    raise ValueError(f"unknown output kind {output_kind!r}; expected one of {OUTPUT_KINDS}")
