"""Score a trained model on a labelled split and keep everything the evaluation page needs to explain it.

One pass produces the numbers (loss, accuracy, per-class table, confusion matrix) and the material for the
drill-downs (per-sample probabilities, a PCA of the penultimate activations), so the UI can be re-drawn from
disk without TensorFlow and without predicting again.
"""

from __future__ import annotations

import math
import secrets
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from core.analysis.prediction import batched_outputs
from core.analysis.probabilities import OUTPUT_KINDS, to_probabilities
from core.atomic import atomic_path, read_json, write_json
from core.errors import UserError

EVALUATION_DIR = "evaluation"
METRICS_FILE = "metrics.json"
ARRAYS_FILE = "arrays.npz"
EPSILON = 1e-7
MAX_PCA_COMPONENTS = 10
PCA_SEED = 0
PER_CLASS_COLUMNS = ("precision", "recall", "f1", "support")
ARRAY_FIELDS = (
    "labels",
    "predictions",
    "probabilities",
    "confusion",
    "pca_coords",
    "pca_labels",
    "pca_indices",
)

# Layers that only reshape or squash the head's values; the "output layer" for embedding purposes is the
# Dense underneath them, so a Dense(k) -> Activation("softmax") head does not become its own embedding.
_PASS_THROUGH_LAYERS = ("Activation", "Softmax", "Dropout", "ReLU", "Flatten", "Reshape")

Progress = Callable[[float], None]


@dataclass
class EvaluationResult:
    class_names: list[str]
    loss: float
    accuracy: float
    labels: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray
    confidence: np.ndarray
    per_class: pd.DataFrame
    confusion: np.ndarray
    embedding_layer: str
    pca_coords: np.ndarray
    pca_labels: np.ndarray
    pca_indices: np.ndarray
    explained_variance: list[float] = field(default_factory=list)
    paths: list[str] | None = None
    split: str = "test"

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])


# --------------------------------------------------------------------------------------------- prediction


def model_input(model: Any) -> Any:
    """A single-input model is called with a bare tensor; wrapping it in a list makes Keras warn."""
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs


def _check_images(model: Any, images: np.ndarray) -> np.ndarray:
    """Shape check only: batches become float32 one at a time, so a big uint8 split is never copied whole."""
    x = np.asarray(images)
    if x.ndim != 4:
        raise UserError(f"expected a batch of images shaped (N, H, W, C), got shape {tuple(x.shape)}")
    try:
        expected = tuple(model.inputs[0].shape[1:])
    except (AttributeError, IndexError, TypeError):
        expected = ()
    if len(expected) == 3:
        for got, want in zip(x.shape[1:], expected, strict=True):
            if want is not None and got != want:
                raise UserError(
                    f"images are {'x'.join(map(str, x.shape[1:]))} but the model expects "
                    f"{'x'.join('?' if d is None else str(d) for d in expected)}"
                )
    return x


def predict_probabilities(
    model: Any,
    images: np.ndarray,
    batch_size: int = 256,
    progress: Progress | None = None,
    *,
    output_kind: str | None = None,
) -> np.ndarray:
    """The model's outputs for every image, batched so a large split never has to fit in memory at once.

    Without `output_kind` the head's raw outputs come back (already probabilities for a softmax head); with
    it they are turned into (N, k) per-class probabilities.
    """
    x = _check_images(model, images)
    raw = batched_outputs(model, x, batch_size, progress)
    if x.shape[0] == 0:
        width = model.outputs[0].shape[-1] or 1
        raw = np.zeros((0, width), dtype=np.float32)
    if output_kind is None:
        return raw
    return to_probabilities(raw, output_kind)


# --------------------------------------------------------------------------------------------- embeddings


def _producer(tensor: Any) -> Any:
    history = getattr(tensor, "_keras_history", None)
    return None if history is None else history.operation


def _single_input_tensor(layer: Any) -> Any:
    try:
        return layer.input
    except (AttributeError, ValueError):
        return None


def _head_layer(model: Any) -> Any:
    """The layer that computes the class scores, looking through trailing activations/dropout."""
    head = _producer(model.outputs[0])
    while head is not None and type(head).__name__ in _PASS_THROUGH_LAYERS:
        upstream = _producer(_single_input_tensor(head))
        if upstream is None or type(upstream).__name__ == "InputLayer":
            break
        head = upstream
    return head


def embedding_tensor(model: Any) -> tuple[str, Any]:
    """(layer name, symbolic tensor) of the representation the classifier head reads.

    The last hidden Dense is what the head separates linearly, so its geometry is what the PCA should show;
    models with no hidden Dense fall back to whatever feeds the head.
    """
    import keras

    head = _head_layer(model)
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.Dense) and layer is not head:
            try:
                return layer.name, layer.output
            except (AttributeError, ValueError):
                continue  # a shared layer has no single output; keep looking
    feed = _single_input_tensor(head) if head is not None else None
    if feed is None:
        feed = model.inputs[0]
    source = _producer(feed)
    return (getattr(source, "name", "input"), feed)


def _embeddings(
    model: Any, x: np.ndarray, batch_size: int, progress: Progress | None
) -> tuple[str, np.ndarray]:
    import keras

    name, tensor = embedding_tensor(model)
    sub_model = keras.Model(model_input(model), tensor)
    values = batched_outputs(sub_model, x, batch_size, progress)
    return name, values.reshape(x.shape[0], -1).astype(np.float64)


def _pca(features: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """3-D coordinates (zero-padded) and the scree ratios; tiny or degenerate inputs shrink instead of failing."""
    n, dims = features.shape if features.ndim == 2 else (features.shape[0], 0)
    coords = np.zeros((n, 3), dtype=np.float64)
    components = min(MAX_PCA_COMPONENTS, dims, n)
    if n < 2 or components < 1:
        return coords, []
    with np.errstate(invalid="ignore", divide="ignore"):
        pca = PCA(n_components=components, random_state=PCA_SEED)
        projected = pca.fit_transform(features)
        ratios = np.nan_to_num(np.asarray(pca.explained_variance_ratio_, dtype=np.float64))
    projected = np.nan_to_num(projected)
    keep = min(3, projected.shape[1])
    coords[:, :keep] = projected[:, :keep]
    return coords, [float(r) for r in ratios]


# --------------------------------------------------------------------------------------------- evaluation


def _cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean CE of the true class; for a sigmoid head p[y] is p or 1-p, so this is exactly binary CE."""
    picked = probabilities[np.arange(labels.shape[0]), labels]
    return float(np.mean(-np.log(np.clip(picked, EPSILON, 1.0 - EPSILON))))


def _per_class_table(labels: np.ndarray, predictions: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    k = len(class_names)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=list(range(k)), zero_division=0
    )
    table = pd.DataFrame(
        {
            "precision": np.asarray(precision, dtype=np.float64),
            "recall": np.asarray(recall, dtype=np.float64),
            "f1": np.asarray(f1, dtype=np.float64),
            "support": np.asarray(support, dtype=np.int64),
        },
        index=pd.Index(class_names, name="class"),
    )
    return table


def evaluate(
    model: Any,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    output_kind: str,
    *,
    paths: list[str] | None = None,
    embed_samples: int = 2000,
    progress: Progress | None = None,
    split: str = "test",
    batch_size: int = 256,
) -> EvaluationResult:
    """Everything the evaluation page shows, from one prediction pass plus one embedding pass on a sample."""
    class_names = [str(c) for c in class_names]
    k = len(class_names)
    if output_kind not in OUTPUT_KINDS:
        raise UserError(f"unknown output kind {output_kind!r}; expected one of {', '.join(OUTPUT_KINDS)}")
    if output_kind == "sigmoid" and k != 2:
        raise UserError(f"a sigmoid head needs exactly 2 classes, this dataset has {k}")
    if k < 1:
        raise UserError("no class names given")
    x = _check_images(model, images)
    y = np.asarray(labels)
    n = x.shape[0]
    if n == 0:
        raise UserError(f"nothing to evaluate: the {split} split has no images")
    if y.shape != (n,):
        raise UserError(f"got {n} images but labels shaped {tuple(y.shape)}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise UserError("labels must be whole class indices")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= k:
        raise UserError(
            f"labels must lie in 0..{k - 1} for {k} classes, found {int(y.min())}..{int(y.max())}"
        )
    if paths is not None:
        paths = [str(p) for p in paths]
        if len(paths) != n:
            raise UserError(f"got {n} images but {len(paths)} file paths")

    m = max(0, min(int(embed_samples), n))
    # Share one progress bar between the two passes, weighted by how many images each one feeds.
    total = n + m

    def scaled(offset: int, weight: int) -> Progress | None:
        if progress is None:
            return None
        return lambda f: progress((offset + f * weight) / total)

    raw = batched_outputs(model, x, batch_size, scaled(0, n))
    probabilities = to_probabilities(raw, output_kind)
    if probabilities.shape != (n, k):
        raise UserError(
            f"the model outputs {probabilities.shape[1]} class scores but the dataset has {k} classes"
        )
    predictions = probabilities.argmax(axis=1).astype(np.int64)
    confidence = probabilities[np.arange(n), predictions]

    chosen = np.sort(np.random.default_rng(PCA_SEED).permutation(n)[:m]).astype(np.int64)
    if m > 0:
        layer_name, features = _embeddings(model, x[chosen], batch_size, scaled(n, m))
    else:
        layer_name, _ = embedding_tensor(model)
        features = np.zeros((0, 0))
    coords, explained = _pca(features)

    return EvaluationResult(
        class_names=class_names,
        loss=_cross_entropy(probabilities, y),
        accuracy=float(np.mean(predictions == y)),
        labels=y,
        predictions=predictions,
        probabilities=probabilities,
        confidence=confidence,
        per_class=_per_class_table(y, predictions, class_names),
        confusion=confusion_matrix(y, predictions, labels=list(range(k))).astype(np.int64),
        embedding_layer=layer_name,
        pca_coords=coords,
        pca_labels=y[chosen],
        pca_indices=chosen,
        explained_variance=explained,
        paths=paths,
        split=split,
    )


# --------------------------------------------------------------------------------------------- drill-downs


def _by_confidence(result: EvaluationResult, mask: np.ndarray) -> np.ndarray:
    indices = np.flatnonzero(mask)
    order = np.argsort(-result.confidence[indices], kind="stable")
    return indices[order].astype(np.int64)


def cell_indices(result: EvaluationResult, true_class: int, predicted_class: int) -> np.ndarray:
    """Samples behind one confusion-matrix cell, most confident first so the worst mistakes lead."""
    mask = (result.labels == true_class) & (result.predictions == predicted_class)
    return _by_confidence(result, mask)


def misclassified(result: EvaluationResult, true_class: int | None = None) -> np.ndarray:
    """Wrong predictions, most confident first: confidently wrong samples are the interesting ones."""
    mask = result.predictions != result.labels
    if true_class is not None:
        mask &= result.labels == true_class
    return _by_confidence(result, mask)


def normalized_confusion(result: EvaluationResult) -> np.ndarray:
    """Row-normalised so classes of different sizes compare; an absent class keeps a row of zeros."""
    confusion = np.asarray(result.confusion, dtype=np.float64)
    totals = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)


# --------------------------------------------------------------------------------------------- persistence


def save(result: EvaluationResult, directory: Path) -> Path:
    """Write `<run dir>/evaluation/`; returns that folder.

    metrics.json goes away first and comes back last, and both files carry the same token, so a reader
    polling mid-save sees either nothing or one matching, complete pair.
    """
    folder = Path(directory) / EVALUATION_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METRICS_FILE).unlink(missing_ok=True)
    token = secrets.token_hex(8)
    with atomic_path(folder / ARRAYS_FILE, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            arrays: dict[str, Any] = {name: np.asarray(getattr(result, name)) for name in ARRAY_FIELDS}
            np.savez(fh, token=np.array(token), **arrays)
    table = result.per_class
    metrics = {
        "token": token,
        "split": result.split,
        "class_names": list(result.class_names),
        "loss": float(result.loss),
        "accuracy": float(result.accuracy),
        "per_class": [
            {
                "class": str(name),
                "precision": float(row["precision"]),
                "recall": float(row["recall"]),
                "f1": float(row["f1"]),
                "support": int(row["support"]),
            }
            for name, row in table.iterrows()
        ],
        "embedding_layer": result.embedding_layer,
        "explained_variance": [float(v) for v in result.explained_variance],
        "paths": None if result.paths is None else [str(p) for p in result.paths],
    }
    write_json(folder / METRICS_FILE, metrics)
    return folder


def load(directory: Path) -> EvaluationResult | None:
    """The saved evaluation of a run directory, or None when there is none or it is incomplete/corrupt."""
    folder = Path(directory) / EVALUATION_DIR
    metrics = read_json(folder / METRICS_FILE)
    if not isinstance(metrics, dict):
        return None
    try:
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as data:
            arrays = {name: np.array(data[name]) for name in ARRAY_FIELDS}
            token = str(data["token"]) if "token" in data.files else None
        if token != metrics.get("token"):
            return None
        class_names = [str(c) for c in metrics["class_names"]]
        rows = metrics["per_class"]
        per_class = pd.DataFrame(
            {
                "precision": np.array([float(r["precision"]) for r in rows], dtype=np.float64),
                "recall": np.array([float(r["recall"]) for r in rows], dtype=np.float64),
                "f1": np.array([float(r["f1"]) for r in rows], dtype=np.float64),
                "support": np.array([int(r["support"]) for r in rows], dtype=np.int64),
            },
            index=pd.Index([str(r["class"]) for r in rows], name="class"),
        )
        labels = arrays["labels"].astype(np.int64)
        predictions = arrays["predictions"].astype(np.int64)
        probabilities = arrays["probabilities"].astype(np.float64)
        n = labels.shape[0]
        if predictions.shape != (n,) or probabilities.shape != (n, len(class_names)):
            return None
        paths = metrics.get("paths")
        return EvaluationResult(
            class_names=class_names,
            loss=float(metrics["loss"]),
            accuracy=float(metrics["accuracy"]),
            labels=labels,
            predictions=predictions,
            probabilities=probabilities,
            confidence=probabilities[np.arange(n), predictions] if n else np.zeros((0,)),
            per_class=per_class,
            confusion=arrays["confusion"].astype(np.int64),
            embedding_layer=str(metrics["embedding_layer"]),
            pca_coords=arrays["pca_coords"].astype(np.float64),
            pca_labels=arrays["pca_labels"].astype(np.int64),
            pca_indices=arrays["pca_indices"].astype(np.int64),
            explained_variance=[float(v) for v in metrics.get("explained_variance", [])],
            paths=None if paths is None else [str(p) for p in paths],
            split=str(metrics.get("split", "test")),
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, zipfile.BadZipFile):
        return None


# --------------------------------------------------------------------------------------------- CLI text


def _fmt(value: float) -> str:
    return "nan" if isinstance(value, float) and math.isnan(value) else f"{value:.4f}"


def format_table(result: EvaluationResult) -> str:
    """Plain aligned text for the terminal; the UI draws its own table from `per_class`."""
    header = (
        f"{result.split}: {result.num_samples} samples  "
        f"accuracy {_fmt(float(result.accuracy))}  loss {_fmt(float(result.loss))}"
    )
    table = result.per_class
    names = [str(n) for n in table.index]
    name_width = max([len("class"), *map(len, names)])
    cells = [
        [_fmt(float(r["precision"])), _fmt(float(r["recall"])), _fmt(float(r["f1"])), str(int(r["support"]))]
        for _, r in table.iterrows()
    ]
    widths = [
        max(len(col), *(len(row[i]) for row in cells)) if cells else len(col)
        for i, col in enumerate(PER_CLASS_COLUMNS)
    ]
    lines = [header, ""]
    lines.append(
        "  ".join(
            ["class".ljust(name_width), *(c.rjust(w) for c, w in zip(PER_CLASS_COLUMNS, widths, strict=True))]
        )
    )
    lines.append("  ".join(["-" * name_width, *("-" * w for w in widths)]))
    for name, row in zip(names, cells, strict=True):
        lines.append(
            "  ".join([name.ljust(name_width), *(v.rjust(w) for v, w in zip(row, widths, strict=True))])
        )
    return "\n".join(lines)
