"""What a run's `model.fit` is given: the seeded, compiled model and its train/validation batches.

One function builds them for a job and for a warm spare that prepares the Train form's settings before the click
(`core.training.prepared`), so a prepared run cannot drift from a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.data import datasets
from core.training.run_config import RunConfig


@dataclass
class FitParts:
    model: Any
    train_ds: Any
    val_ds: Any  # None without a validation split
    class_weight: dict[int, float] | None
    val_counts: list[int]  # validation images per class


def build_parts(cfg: RunConfig, train: Any, val: Any, strategy: Any) -> FitParts:
    """Seed, build and compile in the strategy's scope, then the batches (the shuffle's seed is the run's)."""
    import keras

    from core.models import architectures
    from core.training.trainer import build_for_config

    keras.utils.set_random_seed(cfg.seed)
    k = len(cfg.class_names)
    counts = [int((train.y == i).sum()) for i in range(k)]
    val_counts = [int((val.y == i).sum()) for i in range(k)]
    with strategy.scope():
        model = build_for_config(cfg)
        architectures.compile_model(model, cfg.output_kind, cfg.label_mode, cfg.optimizer,
                                    cfg.learning_rate, cfg.label_smoothing)  # fmt: skip
    train_ds = batches(cfg, train, shuffle=True)
    val_ds = batches(cfg, val, shuffle=False) if len(val) else None
    return FitParts(model, train_ds, val_ds, datasets.class_weights(counts, cfg.class_weights), val_counts)


def batches(cfg: RunConfig, split: Any, *, shuffle: bool) -> Any:
    """A split's float batches as the run's settings make them (shuffled with the run's seed)."""
    from core.data import streaming

    return streaming.make_dataset(split, cfg.batch_size, shuffle=shuffle, seed=cfg.seed if shuffle else 0,
                                  num_classes=len(cfg.class_names), label_mode=cfg.label_mode)  # fmt: skip
