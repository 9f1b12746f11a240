"""`run_audit`: load every image once, then duplicates, cross-validated label issues and outliers, and the
leak-adjusted accuracy; the result is cached per (dataset state, run)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from core import options, validation
from core.analysis.audit import cache, crossval, duplicates, label_issues, outliers
from core.analysis.audit.pool import Pool, audit_shape, load_pool, relative_id
from core.analysis.audit.report import AuditReport
from core.data import datasets
from core.errors import UserError
from core.training import runs

Progress = Callable[[str, float], None]
MAX_FOLDS = 10
# share of the whole audit each stage takes (measured on the embedded sample, roughly)
STAGES = {"load": (0.0, 0.1), "duplicates": (0.1, 0.2), "crossval": (0.2, 0.95), "rank": (0.95, 1.0)}


def _stage(progress: Progress | None, name: str, label: str) -> Callable[[float], None] | None:
    if progress is None:
        return None
    lo, hi = STAGES[name]
    return lambda f: progress(label, lo + (hi - lo) * max(0.0, min(1.0, f)))


def check_request(
    dataset: str, run_id: str | None, folds: int
) -> tuple[datasets.DatasetInfo, runs.Run | None]:
    """Everything that can be refused before an image is decoded or TensorFlow is imported."""
    validation.check_int(folds, "folds", 2, MAX_FOLDS)
    info = datasets.get_dataset(dataset)
    if not info.available:
        from core.data.keras_datasets import missing_message

        raise UserError(missing_message(dataset))
    if len(info.class_names) < 2:
        raise UserError(f"dataset {dataset} needs at least two classes with images to audit")
    return info, cache.resolve_run(dataset, run_id)


def _unreadable(info: datasets.DatasetInfo) -> list[tuple[str, str]]:
    if info.kind != "folder" or info.path is None:
        return []
    rep = datasets.cached_quality_report(info)
    root = str(info.path)
    return [(relative_id(root, p), why) for p, why in rep.problems]


def _held_out_split(pool: Pool) -> str | None:
    for s in ("test", "val"):
        if (pool.splits == s).any():
            return s
    return None


def _run_predictions(run: runs.Run, pool: Pool) -> tuple[str, list[str], np.ndarray] | None:
    """(split, ids, correct?) of the run's saved or fresh evaluation on its held-out split."""
    if not run.has_model:
        return None
    from core.analysis import evaluation_runs

    result = evaluation_runs.cached_result(run)
    if result is None or evaluation_runs.source(run).get("limit"):
        result = evaluation_runs.evaluate_run(run.run_id, embed_samples=0)
    correct = np.asarray(result.predictions) == np.asarray(result.labels)
    if result.paths:
        info = datasets.get_dataset(run.config.dataset)
        ids = [relative_id(str(info.path), p) for p in result.paths]
    else:
        ids = [pool.ids[i] for i in np.flatnonzero(pool.splits == result.split)]
        if len(ids) != len(correct):
            return None
    return result.split, ids, correct


def _accuracies(pool: Pool, probs: np.ndarray, leaked: set[str], run: runs.Run | None
                ) -> tuple[float | None, float | None, str]:  # fmt: skip
    """(accuracy, leak-adjusted accuracy, what they were measured with)."""
    got = _run_predictions(run, pool) if run is not None else None
    if got is not None:
        split, ids, correct = got
        source = f"run {run.run_id} on its {split} split" if run else ""
    else:
        split_name = _held_out_split(pool)
        if split_name is None:
            return None, None, ""
        idx = np.flatnonzero(pool.splits == split_name)
        ids = [pool.ids[i] for i in idx]
        correct = probs[idx].argmax(axis=1) == pool.y[idx]
        source = f"cross-validated models on the {split_name} split"
    if not len(correct):
        return None, None, source
    keep = np.array([i not in leaked for i in ids], bool)
    adjusted = float(correct[keep].mean()) if keep.any() else None
    return float(correct.mean()), adjusted, source


def run_audit(dataset: str, run_id: str | None = None, *, folds: int = options.DEFAULT_AUDIT_FOLDS,
              progress: Progress | None = None, epochs: int | None = None,
              use_cache: bool = True) -> AuditReport:  # fmt: skip
    """Audit a dataset (and, with a run, measure that run's held-out accuracy with and without leaked images).

    `progress(stage, fraction)` is called as the work goes; `epochs` overrides the cross-validation budget (tests);
    a stored result for the same dataset state, run and folds is returned at once unless `use_cache` is False.
    """
    info, run = check_request(dataset, run_id, folds)
    key = cache.key(info, run)
    if use_cache:
        hit = cache.load(key)
        if hit is not None and hit.meta.get("folds") == folds and epochs in (None, hit.meta.get("epochs")):
            if progress is not None:
                progress("done (the stored result for these files)", 1.0)
            return hit
    t0 = time.monotonic()
    from core.training.trainer import import_in_background

    importing = import_in_background("keras")  # 5-25 s on 2 busy cores, overlapped with decoding and hashing
    val_split = run.config.val_split if run else datasets.DEFAULT_VAL_SPLIT
    seed = run.config.seed if run else datasets.DEFAULT_SEED
    shape = audit_shape(info)
    pool = load_pool(
        info, shape, val_split=val_split, seed=seed, progress=_stage(progress, "load", "loading images")
    )
    t_load = time.monotonic()
    groups, leaks = duplicates.find(pool, _stage(progress, "duplicates", "finding duplicates"))
    t_dup = time.monotonic()
    cv_progress = None
    if progress is not None:
        lo, hi = STAGES["crossval"]
        cv_progress = lambda label, f: progress(label, lo + (hi - lo) * f)  # noqa: E731
    importing.join()
    cv = crossval.run(pool, dataset, folds, epochs=epochs, progress=cv_progress)
    t_cv = time.monotonic()
    if progress is not None:
        progress("ranking label issues", STAGES["rank"][0])
    issues, _ = label_issues.find(pool, cv.probs)
    found_outliers = outliers.listed(pool, np.fmax(cv.outlier_scores, outliers.appearance_scores(pool.x)))
    leaked = {lk.test_path for lk in leaks}
    acc, adjusted, source = _accuracies(pool, cv.probs, leaked, run)
    report = AuditReport(
        dataset=dataset, run_id=run.run_id if run else None, label_issues=issues, duplicates=groups, leaks=leaks,
        outliers=found_outliers, unreadable=_unreadable(info), leak_adjusted_accuracy=adjusted, test_accuracy=acc,
        meta={
            "folds": folds, "epochs": cv.epochs, "images": len(pool), "image_shape": list(shape),
            "preset": crossval.AUDIT_PRESET, "accuracy_source": source,
            "cv_accuracy": float((cv.probs.argmax(axis=1) == pool.y).mean()),
            "seconds": {"load": round(t_load - t0, 2), "duplicates": round(t_dup - t_load, 2),
                        "crossval": round(t_cv - t_dup, 2), "total": round(time.monotonic() - t0, 2)},
            "made_at": time.time(),
        },
    )  # fmt: skip
    cache.store(key, report)
    if progress is not None:
        progress("done", 1.0)
    return report
