"""Evaluate a run on its dataset's test split (or validation) and keep the result, with the images it scored,
in the run directory, so reopening the Evaluate page is instant and survives a restart.

runs/<id>/evaluation/metrics.json + arrays.npz   the result (core.analysis.evaluation.save; a shared token pairs them)
runs/<id>/evaluation/images.npy                  the uint8 images scored, when they fit under ARRAY_IMAGE_CAP
runs/<id>/evaluation/source.json                 written last: the model file it scored and the same token, so a
                                                 reader never pairs a result with a model or images it did not see
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.analysis import evaluation
from core.atomic import atomic_path, read_json, write_json
from core.data import datasets
from core.errors import UserError
from core.models import loading
from core.training import runs

SOURCE_FILE = "source.json"
IMAGES_FILE = "images.npy"
ARRAY_IMAGE_CAP = 60_000_000  # bytes of uint8 pixels kept beside the result (galleries never re-decode files)


def _model_stamp(run: runs.Run) -> dict[str, Any]:
    """mtime_ns and size: a re-save within the same second (coarse mtimes) still changes one of them."""
    st = run.model_path.stat()
    return {"model_mtime": st.st_mtime, "model_mtime_ns": st.st_mtime_ns, "model_size": st.st_size}


def _folder(run: runs.Run) -> Path:
    return run.path / evaluation.EVALUATION_DIR


def validation_split(run: runs.Run) -> datasets.SplitData:
    """The run's own validation images, exactly as training drew them (its seed, val_split and limit)."""
    h, w, c = run.input_shape
    cfg = run.config
    data = datasets.load_splits(cfg.dataset, (h, w), c, val_split=cfg.val_split,
                                seed=cfg.seed, splits=("val",),
                                limit=cfg.limit)["val"]  # fmt: skip
    if not len(data):
        raise UserError(f"run {run.run_id} was trained without validation images")
    return data


def held_out(run: runs.Run, split: str | None, limit: int | None) -> tuple[str, datasets.SplitData]:
    """The split to score: test, or the run's own validation images (also when the dataset has no test)."""
    if split not in (None, "test", "val"):
        raise UserError(f"split must be test or val, not {split!r}")
    if split != "val":
        h, w, c = run.input_shape
        cfg = run.config
        test = datasets.load_splits(cfg.dataset, (h, w), c, val_split=cfg.val_split,
                                    seed=cfg.seed, splits=("test",),
                                    limit=limit or None)["test"]  # fmt: skip
        if len(test):
            return "test", test
        if split == "test":
            raise UserError(
                f"dataset {cfg.dataset} has no test split; use the validation split (--split val)"
            )
    data = validation_split(run)
    if limit and limit < len(data):  # the first `limit` of the run's own split, not a new draw
        data = datasets.SplitData(data.x[:limit], data.y[:limit], data.paths[:limit] if data.paths else None)
    return "val", data


def evaluate_run(run_id: str, *, limit: int | None = None, embed_samples: int = 2000,
                 progress: Callable[[float], None] | None = None,
                 loaded: loading.LoadedModel | None = None, split: str | None = None) -> evaluation.EvaluationResult:  # fmt: skip
    """Score the run's model on its held-out split and save everything the Evaluate page draws.

    `split`: "test", "val" (the run's own validation images, drawn as training drew them, so its accuracy is
    the best_val_accuracy training recorded for the saved model), or None for test, else validation.
    `loaded` lets the UI pass the model it already holds; the stamp is taken before, so a model re-saved by a
    still-running job during the evaluation leaves this result marked stale rather than current.
    """
    if limit is not None and limit < 0:
        raise UserError(f"limit must be a positive number of images, got {limit}")
    run = runs.get_run(run_id)
    if not run.has_model:
        raise UserError(f"run {run.run_id} has no saved model yet")
    stamp = _model_stamp(run)
    lm = loaded or loading.load_run_model(run)
    split, data = held_out(run, split, limit)
    if progress is not None:
        progress(0.0)
    result = evaluation.evaluate(lm.model, data.x, data.y, lm.class_names, lm.output_kind, paths=data.paths,
                                 embed_samples=embed_samples, progress=progress, split=split)  # fmt: skip
    folder = _folder(run)
    folder.mkdir(parents=True, exist_ok=True)
    # Withdraw the old pairing first: until source.json is back, cached_result sees nothing.
    (folder / SOURCE_FILE).unlink(missing_ok=True)
    keep_images = data.x.nbytes <= ARRAY_IMAGE_CAP
    if keep_images:
        with atomic_path(folder / IMAGES_FILE, suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(data.x, dtype=np.uint8))
    else:
        (folder / IMAGES_FILE).unlink(missing_ok=True)
    evaluation.save(result, run.path)
    token = (read_json(folder / evaluation.METRICS_FILE, {}) or {}).get("token")
    write_json(folder / SOURCE_FILE, {**stamp, "limit": limit or None, "split": split, "token": token,
                                      "num_samples": result.num_samples, "images": keep_images,
                                      "evaluated_at": time.time()})  # fmt: skip
    return result


def source(run: runs.Run) -> dict[str, Any]:
    """What the saved evaluation scored (split, limit, model stamp, when); {} when there is none."""
    src = read_json(_folder(run) / SOURCE_FILE, {})
    return src if isinstance(src, dict) else {}


def stamp(run: runs.Run) -> tuple[int, ...]:
    """Changes whenever the saved evaluation or the model changes: a cheap cache key for the UI."""
    out = []
    for p in (_folder(run) / SOURCE_FILE, _folder(run) / evaluation.METRICS_FILE, run.model_path):
        try:
            st = p.stat()
            out += [st.st_mtime_ns, st.st_size]
        except OSError:
            out += [0, 0]
    return tuple(out)


def cached_result(run: runs.Run) -> evaluation.EvaluationResult | None:
    """The saved evaluation, unless the model changed since it was made (or the save is incomplete)."""
    src = source(run)
    if not src or not run.has_model:
        return None
    now = _model_stamp(run)
    if any(src.get(k) != now[k] for k in ("model_mtime_ns", "model_size")):
        return None
    result = evaluation.load(run.path)
    metrics = read_json(_folder(run) / evaluation.METRICS_FILE, {}) or {}
    if result is None or metrics.get("token") != src.get("token"):
        return None
    return result


def _decode(path: str, size: tuple[int, int], channels: int) -> np.ndarray:
    """Exactly what core.data.datasets fed the model (same decode, same rounding); black if the file is gone."""
    arr = datasets.decode_file(Path(path), size, channels)
    return np.zeros((*size, channels), np.uint8) if arr is None else arr


def sample_images(
    run: runs.Run, result: evaluation.EvaluationResult, indices: np.ndarray
) -> list[np.ndarray]:
    """uint8 images (as the model saw them) of the given evaluation samples, for galleries and drill-downs."""
    h, w, c = run.input_shape
    idx = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
    n = result.num_samples
    if any(i < 0 or i >= n for i in idx):
        raise UserError(f"sample index out of range: this evaluation has {n} images")
    path = _folder(run) / IMAGES_FILE
    if path.is_file():
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            arr = None
        if arr is not None and arr.ndim == 4 and arr.shape[0] == n:
            return [np.array(arr[i]) for i in idx]
    if result.paths:
        return [_decode(result.paths[i], (h, w), c) for i in idx]
    raise UserError("the evaluated images were not kept; evaluate again with a smaller limit")
