"""Evaluate a run on its dataset's test split (or validation) and keep the result, with the images it scored,
in the run directory, so reopening the Evaluate page is instant and survives a restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from core import datasets, evaluation, models, runs
from core.atomic import atomic_path, read_json, write_json
from core.errors import UserError
from core.images import load_image, to_mode, to_model_input

SOURCE_FILE = "source.json"
IMAGES_FILE = "images.npy"
ARRAY_IMAGE_CAP = 60_000_000  # bytes of uint8 pixels kept for datasets without files (MNIST & co.)


def evaluate_run(run_id: str, *, limit: int | None = None, embed_samples: int = 2000,
                 progress: Callable[[float], None] | None = None) -> evaluation.EvaluationResult:  # fmt: skip
    run = runs.get_run(run_id)
    lm = models.load_run_model(run)
    h, w, c = run.input_shape
    cfg = run.config
    split, data = datasets.evaluation_split(cfg["dataset"], (h, w), c, val_split=cfg.get("val_split", 0.2),
                                            seed=cfg.get("seed", datasets.DEFAULT_SEED), limit=limit)  # fmt: skip
    result = evaluation.evaluate(lm.model, data.x.astype(np.float32), data.y, lm.class_names, lm.output_kind,
                                 paths=data.paths, embed_samples=embed_samples, progress=progress, split=split)  # fmt: skip
    out = evaluation.save(result, run.path)
    if data.paths is None and data.x.nbytes <= ARRAY_IMAGE_CAP:
        with atomic_path(out / IMAGES_FILE, suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, data.x)
    write_json(
        out / SOURCE_FILE, {"limit": limit, "split": split, "model_mtime": run.model_path.stat().st_mtime}
    )
    return result


def cached_result(run: runs.Run) -> evaluation.EvaluationResult | None:
    """The saved evaluation, unless the model changed since it was made."""
    result = evaluation.load(run.path)
    src = read_json(run.path / evaluation.EVALUATION_DIR / SOURCE_FILE, {}) or {}
    if result is None or not run.has_model or src.get("model_mtime") != run.model_path.stat().st_mtime:
        return None
    return result


def sample_images(
    run: runs.Run, result: evaluation.EvaluationResult, indices: np.ndarray
) -> list[np.ndarray]:
    """uint8 images (as the model saw them) of the given evaluation samples, for galleries and drill-downs."""
    h, w, c = run.input_shape
    if result.paths:
        out = []
        for i in indices:
            try:
                img = to_mode(load_image(Path(result.paths[i])), c)
                out.append(np.clip(to_model_input(img, (h, w), c), 0, 255).astype(np.uint8))
            except UserError:
                out.append(np.zeros((h, w, c), np.uint8))
        return out
    path = run.path / evaluation.EVALUATION_DIR / IMAGES_FILE
    if not path.is_file():
        raise UserError("the evaluated images were not kept; evaluate again with a smaller limit")
    arr = np.load(path, mmap_mode="r")
    return [np.asarray(arr[i]) for i in indices]
