"""Train again with the settings of an earlier run, e.g. after fixing its dataset on the Improve page.

The new run re-reads the dataset (its classes, files and splits as they are now) and keeps every number the earlier
run was given; its note says which run it repeats, so the two are easy to compare.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.data import renames
from core.errors import UserError
from core.training import jobs, runs

if TYPE_CHECKING:  # importing the trainer pulls in the model code; listing runs must not wait for it
    from core.training.trainer import TrainRequest

NOTE_PREFIX = "Retrained with the same settings as "


def same_settings(run: runs.Run) -> TrainRequest:
    """A request that repeats `run`: same dataset, preset, size, hyperparameters, seed and split."""
    from core.training.trainer import TrainRequest, resolve

    cfg = run.config
    h, w, c = cfg.input_shape
    req = TrainRequest(
        dataset=renames.current_name(cfg.dataset) or cfg.dataset, preset=cfg.preset, epochs=cfg.epochs, batch_size=cfg.batch_size,
        optimizer=cfg.optimizer, learning_rate=cfg.learning_rate, seed=cfg.seed, val_split=cfg.val_split,
        image_size=(h, w) if h and w else None, channels=c or None, class_weights=cfg.class_weights,
        early_stopping=cfg.early_stopping, restore_best=cfg.restore_best, target_accuracy=cfg.target_accuracy,
        weights=cfg.weights or "random", builder=cfg.builder, limit=cfg.limit, strategy=cfg.strategy,
        pinned=cfg.pinned,
    )  # fmt: skip
    if req.pinned:
        try:
            resolve(req)
        except UserError:  # a pinned image was relabelled or set aside: fall back to the default pins
            req.pinned = None
    return req


def retrain(run_id: str) -> runs.Run:
    """Start a job that repeats run `run_id` on the dataset as it is now; returns the new (queued) run."""
    old = runs.get_run(run_id)
    new = jobs.start(same_settings(old))
    try:
        runs.set_label(new.run_id, note=f"{NOTE_PREFIX}{old.run_id}")
    except UserError:
        pass
    return new


def source_of(run: runs.Run) -> str | None:
    """The run a retrain repeated, from its note; None for any other run."""
    note = run.note
    return note[len(NOTE_PREFIX) :].strip() if note.startswith(NOTE_PREFIX) else None
