"""Class probabilities for images, exactly as the model was trained: same decode, size, channels and scaling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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

    def top(self, threshold: float = 0.0) -> tuple[str, float]:
        """Best class and its probability; "unknown" below the reject threshold."""
        assert self.probabilities is not None
        name, p = max(self.probabilities.items(), key=lambda kv: kv[1])
        return (name if p >= threshold else "unknown"), p

    def as_json(self) -> dict:
        if self.error:
            return {"file": self.name, "error": self.error}
        return {"file": self.name, "probabilities": self.probabilities}


def probabilities(lm: LoadedModel, x: np.ndarray) -> np.ndarray:
    """(N, k) probabilities for a float32 batch of raw pixels; `model(x, training=False)` is faster than predict."""
    out = lm.model(np.asarray(x, dtype=np.float32), training=False)
    return to_probabilities(np.asarray(out), lm.output_kind)


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
        probs = probabilities(lm, np.stack([x for _, x in chunk]))
        for (idx, _), p in zip(chunk, probs, strict=True):
            if not np.all(np.isfinite(p)):
                results[idx].error = NON_FINITE
                results[idx].seen = None
                continue
            results[idx].probabilities = {c: float(v) for c, v in zip(lm.class_names, p, strict=True)}
    return results
