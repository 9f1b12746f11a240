"""Class probabilities for images, exactly as the model was trained: same decode, size, channels and scaling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.analysis.probabilities import to_probabilities
from core.data.images import prepare
from core.errors import UserError
from core.models.loading import LoadedModel

NON_FINITE = (
    "the model produced non-finite outputs (NaN); it was probably trained with too high a learning rate"
)


@dataclass
class Prediction:
    name: str
    probabilities: dict[str, float] | None = None
    seen: np.ndarray | None = None  # the image as the model sees it (uint8, for display)
    error: str | None = None
    unfamiliar: bool | None = None  # unlike the training data (core.analysis.unfamiliar); None: not scored
    unfamiliar_score: float | None = None

    def top(self, threshold: float = 0.0) -> tuple[str, float]:
        """Best class and its probability; "unknown" below the reject threshold."""
        assert self.probabilities is not None
        name, p = max(self.probabilities.items(), key=lambda kv: kv[1])
        return (name if p >= threshold else "unknown"), p

    def as_json(self) -> dict:
        if self.error:
            return {"file": self.name, "error": self.error}
        out: dict = {"file": self.name, "probabilities": self.probabilities}
        if self.unfamiliar is not None:
            out |= {"unfamiliar": self.unfamiliar, "unfamiliar_score": self.unfamiliar_score}
        return out


def batched_outputs(
    model: Any, x: np.ndarray, batch_size: int = 256, progress: Callable[[float], None] | None = None
) -> np.ndarray:
    """The model's first output for every image, in batches so a large split never has to fit at once.

    `model(x, training=False)` rather than `predict`: 2.5x faster for one image, and the same numbers.
    """
    import keras

    n = x.shape[0]
    batch_size = max(1, int(batch_size))
    chunks: list[np.ndarray] = []
    for start in range(0, n, batch_size):
        out = model(np.asarray(x[start : start + batch_size], dtype=np.float32), training=False)
        if isinstance(out, list | tuple):
            out = out[0]
        chunks.append(np.asarray(keras.ops.convert_to_numpy(out)))
        if progress is not None:
            progress(min(start + batch_size, n) / n)
    if not chunks:
        return np.zeros((0,), dtype=np.float32)
    return np.concatenate(chunks, axis=0)


def probabilities(lm: LoadedModel, x: np.ndarray) -> np.ndarray:
    """(N, k) probabilities for a float32 batch of raw pixels, temperature-scaled when the run is calibrated."""
    return scored(lm, x, unfamiliar=False)[0]


def scored(lm: LoadedModel, x: np.ndarray, unfamiliar: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities, unfamiliar scores or None): one pass through the model for both.

    Uncalibrated and without a detector, the model's own outputs (unchanged numbers); otherwise the logits
    before the softmax/sigmoid, divided by the run's temperature, and the detector's scores from the same pass.
    """
    detector = lm.detector if unfamiliar else None
    if lm.temperature == 1.0 and detector is None:
        return to_probabilities(batched_outputs(lm.model, x), lm.output_kind), None
    from core.analysis import calibration, head

    out = head.head_outputs(lm.model, x, lm.output_kind)
    if lm.temperature == 1.0 and out.outputs is not None:  # the model's own numbers, as without a detector
        probs = to_probabilities(out.outputs, lm.output_kind)
    else:
        probs = calibration.scaled_probabilities(out.logits, lm.temperature)
    return probs, (detector.scores(out) if detector is not None else None)


def prepare_for(lm: LoadedModel, source: bytes | Path | str, name: str) -> tuple[np.ndarray, np.ndarray]:
    h, w, c = lm.input_shape
    x, seen = prepare(source, (h, w), c, name=name)
    return x, np.asarray(seen)


def predict_sources(
    lm: LoadedModel, sources: list[tuple[str, bytes | Path | str]], batch: int = 64
) -> list[Prediction]:
    """Decode each source (a bad one becomes an error entry, the rest still classify), then predict in batches."""
    results: list[Prediction] = []
    ready: list[tuple[int, np.ndarray]] = []
    for name, src in sources:
        try:
            x, seen = prepare_for(lm, src, name)
            results.append(Prediction(name, seen=seen))
            ready.append((len(results) - 1, x))
        except UserError as exc:
            results.append(Prediction(name, error=str(exc)))
    for i in range(0, len(ready), batch):
        chunk = ready[i : i + batch]
        probs, scores = scored(lm, np.stack([x for _, x in chunk]))
        for j, ((idx, _), p) in enumerate(zip(chunk, probs, strict=True)):
            if not np.all(np.isfinite(p)):
                results[idx].error = NON_FINITE
                results[idx].seen = None
                continue
            results[idx].probabilities = {c: float(v) for c, v in zip(lm.class_names, p, strict=True)}
            if scores is not None and np.isfinite(scores[j]):
                results[idx].unfamiliar_score = float(scores[j])
                results[idx].unfamiliar = bool(lm.detector.flags(scores[j : j + 1])[0])
    return results
