"""Every labelled image of a dataset in one array, with a stable id and its split: what the audit checks.

Folder datasets: ids are paths relative to the dataset folder (`cat/img1.png`, `train/cat/img1.png`), decoded by
`core.data.datasets.load_splits` (its decode cache makes a second audit start without decoding). Array datasets
(Keras, scikit-learn): ids are `train/<index>` (the index in the dataset's own training array, also for images the
run's validation split takes from it) and `test/<index>`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data import datasets, keras_datasets
from core.data.images import load_image, to_mode
from core.errors import UserError

MAX_AUDIT_SIDE = (
    64  # images are audited at most this big a side: enough to see labels and twins, cheap to train
)


@dataclass
class Pool:
    x: np.ndarray  # uint8 (N, H, W, C)
    y: np.ndarray  # int64 (N,)
    ids: list[str]
    splits: np.ndarray  # str (N,): train | val | test
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.y)


def audit_shape(info: datasets.DatasetInfo) -> tuple[int, int, int]:
    """The dataset's own size and channels, capped at MAX_AUDIT_SIDE a side."""
    h, w, c = datasets.default_input_shape(info)
    return min(h, MAX_AUDIT_SIDE), min(w, MAX_AUDIT_SIDE), c


def relative_id(root: str, path: str) -> str:
    prefix = root.rstrip(os.sep) + os.sep
    return (path[len(prefix) :] if path.startswith(prefix) else path).replace(os.sep, "/")


def load_pool(info: datasets.DatasetInfo, shape: tuple[int, int, int], *, val_split: float, seed: int,
              progress: Callable[[float], None] | None = None) -> Pool:  # fmt: skip
    """All splits, decoded at `shape`; unreadable files are left out (the quality report lists them)."""
    h, w, c = shape
    if info.kind == "folder":
        assert info.path is not None
        parts = datasets.load_splits(info.name, (h, w), c, val_split=val_split, seed=seed, progress=progress)
        xs, ys, ids, splits = [], [], [], []
        root = str(info.path)
        for s in datasets.SPLITS:
            d = parts[s]
            if not len(d):
                continue
            xs.append(d.x)
            ys.append(d.y)
            ids += [relative_id(root, p) for p in d.paths or []]
            splits += [s] * len(d)
        if not xs:
            raise UserError(f"dataset {info.name} has no readable images")
        return Pool(np.concatenate(xs), np.concatenate(ys).astype(np.int64), ids, np.array(splits),
                    list(info.class_names))  # fmt: skip
    if not info.available:
        raise UserError(keras_datasets.missing_message(info.name))
    arrays = keras_datasets.load_arrays(info.name)
    xtr, ytr = arrays["train"]
    _, va_idx = datasets.stratified_indices(np.asarray(ytr), val_split, seed)  # the split training draws
    split_tr = np.full(len(ytr), "train", dtype=object)
    split_tr[va_idx] = "val"
    xs, ys = [xtr], [np.asarray(ytr)]
    ids = [f"train/{i}" for i in range(len(ytr))]
    splits = list(split_tr)
    if "test" in arrays:
        xte, yte = arrays["test"]
        xs.append(xte)
        ys.append(np.asarray(yte))
        ids += [f"test/{i}" for i in range(len(yte))]
        splits += ["test"] * len(yte)
    x = datasets.resize_arrays(np.concatenate(xs), (h, w), c)
    if progress is not None:
        progress(1.0)
    return Pool(x, np.concatenate(ys).astype(np.int64), ids, np.array(splits), list(info.class_names))


def item_path(info: datasets.DatasetInfo, item_id: str) -> Path | None:
    """The file behind an audit id of a folder dataset (checked to stay inside it); None for array datasets."""
    if info.kind != "folder" or info.path is None:
        return None
    root = info.path.resolve()
    p = (root / item_id).resolve()
    if root not in p.parents:
        raise UserError(f"{item_id!r} is not inside dataset {info.name}")
    return p


def item_image(info: datasets.DatasetInfo, item_id: str) -> np.ndarray:
    """The image behind an audit id, for display: a folder file decoded safely, or a row of a built-in array."""
    p = item_path(info, item_id)
    if p is not None:
        img = load_image(p, name=p.name)
        return np.asarray(to_mode(img, 1 if img.mode in datasets.GRAY_MODES else 3))
    split, _, index = item_id.partition("/")
    arrays = keras_datasets.load_arrays(info.name)
    if split not in arrays or not index.isdigit() or int(index) >= len(arrays[split][1]):
        raise UserError(f"no image {item_id!r} in dataset {info.name}")
    a = arrays[split][0][int(index)]
    return a[..., 0] if a.shape[-1] == 1 else a
