"""Hardest examples and confusions of a run, with evidence: why did the model get this one wrong?

From a saved evaluation (core.analysis.evaluation_runs): per class the images with the highest loss (-log p of the
given label, fastai's top losses), and the most confused (true, predicted) pairs (fastai's `most_confused`). For an
image, the evidence is its nearest training images in the model's embedding space (the representation the head
reads, as the Evaluate page's PCA uses) and a Grad-CAM of the predicted class: a mistake whose neighbours all carry
the predicted label often means the image, or its neighbours, are mislabelled.

The training images' embeddings are computed once per (model file, training files) and kept in the run folder
(`improve/train_embeddings.npz`); a fix to the dataset or a retrained model changes the key.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.analysis import evaluation, evaluation_runs
from core.analysis.prediction import batched_outputs
from core.atomic import atomic_path
from core.data import datasets
from core.errors import UserError
from core.training import runs

EPSILON = 1e-7
MAX_TRAIN_EMBED = 5000  # training images embedded for the neighbour search (a seeded sample beyond that)
FOLDER = "improve"
EMBED_FILE = "train_embeddings.npz"


def losses(result: evaluation.EvaluationResult) -> np.ndarray:
    """Per-image cross-entropy of the given label: high for confident mistakes and for doubtful labels alike."""
    n = result.num_samples
    picked = result.probabilities[np.arange(n), result.labels] if n else np.zeros((0,))
    return -np.log(np.clip(picked, EPSILON, 1.0))


def hardest(result: evaluation.EvaluationResult, per_class: int = 8) -> dict[int, np.ndarray]:
    """Class index -> evaluation indices of its highest-loss images, worst first (a class with none is left out)."""
    loss = losses(result)
    out: dict[int, np.ndarray] = {}
    for c in range(len(result.class_names)):
        idx = np.flatnonzero(result.labels == c)
        if len(idx):
            out[c] = idx[np.argsort(-loss[idx], kind="stable")][: max(0, int(per_class))].astype(np.int64)
    return out


@dataclass(frozen=True)
class Confusion:
    true: str
    predicted: str
    count: int
    true_index: int
    predicted_index: int


def most_confused(result: evaluation.EvaluationResult, min_count: int = 1) -> list[Confusion]:
    """Off-diagonal cells of the confusion matrix with at least `min_count` images, most frequent first."""
    cm = np.asarray(result.confusion)
    names = result.class_names
    cells = [
        Confusion(names[t], names[p], int(cm[t, p]), t, p)
        for t in range(cm.shape[0])
        for p in range(cm.shape[1])
        if t != p and cm[t, p] >= max(1, min_count)
    ]
    return sorted(cells, key=lambda c: (-c.count, c.true_index, c.predicted_index))


def confused_indices(result: evaluation.EvaluationResult, pair: Confusion) -> np.ndarray:
    """The images behind one confused pair, highest loss first."""
    idx = evaluation.cell_indices(result, pair.true_index, pair.predicted_index)
    return idx[np.argsort(-losses(result)[idx], kind="stable")]


# --------------------------------------------------------------------------------------------- embeddings

_sub_models: dict[
    int, tuple[Any, Any]
] = {}  # id(model) -> (model, embedding sub-model); a few models at most


def _embedder(model: Any) -> Any:
    """The model up to its embedding layer, built once per model object."""
    import keras

    hit = _sub_models.get(id(model))
    if hit is not None and hit[0] is model:
        return hit[1]
    _, tensor = evaluation.embedding_tensor(model)
    sub = keras.Model(evaluation.model_input(model), tensor)
    if len(_sub_models) >= 4:
        _sub_models.pop(next(iter(_sub_models)))
    _sub_models[id(model)] = (model, sub)
    return sub


def embed(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """L2-normalised embeddings (N, D), so a dot product is the cosine similarity."""
    if len(x) == 0:
        return np.zeros((0, 0), np.float32)
    v = batched_outputs(_embedder(model), np.asarray(x), batch_size).reshape(len(x), -1).astype(np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


@dataclass
class TrainIndex:
    """Embeddings of (a sample of) the run's training images, with their paths and labels."""

    vectors: np.ndarray  # (N, D) float32, unit length
    labels: np.ndarray  # (N,) int64
    paths: list[str]


def _train_items(run: runs.Run) -> list[tuple[Path, int]]:
    cfg = run.config
    info = datasets.get_dataset(cfg.dataset)
    if info.kind != "folder":
        raise UserError(f"{cfg.dataset} has no image files: nearest training images need a folder dataset")
    return datasets.split_file_lists(info, cfg.val_split, cfg.seed)["train"]


def _key(run: runs.Run, items: list[tuple[Path, int]]) -> str:
    """Model file (mtime, size) and every training file (path, label, mtime, size): a fix or a retrain misses."""
    st = run.model_path.stat()
    h = hashlib.sha256(f"{st.st_mtime_ns}:{st.st_size}\n".encode())
    for p, y in items:
        try:
            s = os.stat(p)
            h.update(f"{p}\0{y}\0{s.st_mtime_ns}\0{s.st_size}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()


def train_index(run: runs.Run, model: Any) -> TrainIndex:
    """The training images' embeddings, from the run folder when current, else computed and stored."""
    items = _train_items(run)
    if not items:
        raise UserError(f"run {run.run_id} has no training images to compare with")
    key = _key(run, items)
    path = run.path / FOLDER / EMBED_FILE
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return TrainIndex(np.array(z["vectors"]), np.array(z["labels"]), [str(p) for p in z["paths"]])
    except (OSError, ValueError, KeyError):
        pass
    h, w, c = run.input_shape
    cfg = run.config
    # through the decode cache (training filled it), so the 7,000-image sample costs a slice, not 7,000 decodes
    data = datasets.load_splits(
        cfg.dataset, (h, w), c, val_split=cfg.val_split, seed=cfg.seed, splits=("train",)
    )
    train = data["train"]
    pick = np.arange(len(train))
    if len(pick) > MAX_TRAIN_EMBED:
        pick = np.sort(np.random.default_rng(0).choice(len(pick), MAX_TRAIN_EMBED, replace=False))
    paths = [train.paths[i] for i in pick] if train.paths else [f"#{i}" for i in pick]
    index = TrainIndex(embed(model, train.x[pick]), train.y[pick].astype(np.int64), paths)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh, key=np.array(key), vectors=index.vectors, labels=index.labels, paths=np.array(index.paths)
            )
    except OSError:  # a read-only runs folder: the answer is still right, just not remembered
        pass
    return index


@dataclass
class Neighbour:
    path: str
    label: int
    similarity: float  # cosine similarity of the embeddings, 1.0 = the same representation


def nearest(index: TrainIndex, vectors: np.ndarray, k: int = 3) -> list[list[Neighbour]]:
    """For each query embedding, its k most similar training images, most similar first."""
    if len(index.paths) == 0 or len(vectors) == 0:
        return [[] for _ in range(len(vectors))]
    sims = vectors @ index.vectors.T
    k = min(int(k), sims.shape[1])
    part = (
        np.argpartition(-sims, k - 1, axis=1)[:, :k]
        if k < sims.shape[1]
        else np.tile(np.arange(k), (len(sims), 1))
    )
    order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    return [
        [Neighbour(index.paths[j], int(index.labels[j]), float(sims[i, j])) for j in row]
        for i, row in enumerate(top)
    ]


@dataclass
class Evidence:
    """Why an evaluation image went wrong: the image, its Grad-CAM and its nearest training images."""

    index: int
    path: str | None
    image: np.ndarray  # uint8 as the model saw it
    true: int
    predicted: int
    loss: float
    cam: np.ndarray | None  # uint8 (H, W, 3) overlay of the predicted class, None without evidence
    cam_note: str
    neighbours: list[Neighbour]
    neighbour_images: list[np.ndarray]


def explain(run: runs.Run, loaded: Any, result: evaluation.EvaluationResult, indices: np.ndarray, k: int = 3) -> list[Evidence]:  # fmt: skip
    """Evidence for a few evaluation images (a page shows a handful; each costs one Grad-CAM pass)."""
    from core.analysis import inspection

    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if not len(idx):
        return []
    model = loaded.model
    images = evaluation_runs.sample_images(run, result, idx)
    x = np.stack(images)
    neighbours = nearest(train_index(run, model), embed(model, x), k)
    h, w, c = run.input_shape
    loss = losses(result)
    out: list[Evidence] = []
    for i, img, near in zip(idx, images, neighbours, strict=True):
        pred = int(result.predictions[i])
        try:
            cam = inspection.grad_cam_result(model, img, class_index=pred, output_kind=loaded.output_kind)
            overlay = inspection.overlay(img, cam.heatmap, alpha=0.45) if cam.evidence else None
            note = cam.note
        except UserError as exc:
            overlay, note = None, str(exc)
        shown = [evaluation_runs._decode(nb.path, (h, w), c) for nb in near]
        out.append(Evidence(int(i), result.paths[i] if result.paths else None, img, int(result.labels[i]), pred,
                            float(loss[i]), overlay, note, near, shown))  # fmt: skip
    return out
