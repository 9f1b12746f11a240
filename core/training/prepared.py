"""A warm spare's head start on the Train form's current settings, so a click reaches its first batch in ~2 s.

After the spare has started TensorFlow (core.training.spare) the Train page tells it, in `<runs>/.spare/prepare.json`,
what the form would train. The spare then does everything a job does before its first batch that does not depend on
the run itself: loads the images, seeds, builds and compiles the model and its batches (`fit_parts.build_parts`, the
job's own code), and runs one training and one validation step on throwaway copies of the batches, so Keras traces
its train and test functions and TensorFlow optimises their graphs. Every variable the step changed (weights,
batch-norm statistics, optimizer slots and step count, dropout and augmentation seed states) is then put back, so
the model is bit for bit the one a fresh job would build (tests/test_spare.py trains both and compares).

The job takes the prepared parts only when every setting that shaped them is the run's and the dataset's
fingerprint still equals the one taken *before* the images were loaded; otherwise it builds its own, as ever.
"""

from __future__ import annotations

import gc
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.training.fit_parts import FitParts
from core.training.run_config import RunConfig

# settings a run may change without changing what was prepared (they act through callbacks or after fit)
NOT_SHAPING = frozenset({"epochs", "early_stopping", "restore_best", "target_accuracy", "pinned", "lr_schedule",
                         "dataset_title", "preset_title", "dataset_fingerprint", "run_id", "sweep",
                         "sweep_trial"})  # fmt: skip


class Abandon(Exception):
    """A run for other settings arrived while images were being decoded: stop preparing, it needs the process."""


@dataclass
class Prepared:
    shape: dict[str, Any]  # shaping_settings() of the config it was prepared for
    fingerprint: str | None  # the dataset's, taken before its images were loaded
    train: Any
    val: Any
    parts: FitParts
    seconds: float  # what preparing took (the job's head start)


_slot: Prepared | None = None
_last_request: dict[str, Any] | None = None


def shaping_settings(cfg: RunConfig | dict[str, Any]) -> dict[str, Any]:
    """The settings that shape the data, model and batches; any new config field counts unless listed above."""
    data = cfg.to_dict() if isinstance(cfg, RunConfig) else dict(cfg)
    return {k: v for k, v in data.items() if k not in NOT_SHAPING}


def take(cfg: RunConfig) -> Prepared | None:
    """The prepared parts when they fit this run exactly (then they are the run's: taken once), else None."""
    global _slot
    ready, _slot = _slot, None
    if ready is None:
        return None
    fits = ready.fingerprint is not None and ready.fingerprint == cfg.dataset_fingerprint
    if fits and ready.shape == shaping_settings(cfg):
        return ready
    del ready
    _reset()
    return None


def _reset() -> None:
    """Free a dropped model and reset Keras' global state, so a model built next in this process gets the same
    layer names as in a fresh process."""
    import keras

    keras.backend.clear_session()
    gc.collect()


def prepare(
    cfg: RunConfig, scratch: Path, progress: Callable[[float], None] | None = None
) -> Prepared | None:
    """Build what a job would for `cfg` (None when it is not worth it or not possible: streamed data, an
    empty split, another strategy, any error, which goes to the spare's log). `progress(fraction)` follows the
    decoding of images the decode cache does not hold yet, and may raise Abandon to stop it."""
    from core.data import fingerprint, streaming
    from core.training import distribute
    from core.training.fit_parts import batches, build_parts

    if cfg.strategy != "default":
        return None
    t0 = time.perf_counter()
    try:
        fp = fingerprint.dataset_fingerprint(cfg.dataset)
        train, val, streamed = streaming.training_splits(cfg, scratch, progress)
        if streamed or not len(train):  # streamed data cannot be held; an empty split fails in the job
            return None
        parts = build_parts(cfg, train, val, distribute.get_strategy(cfg.strategy))
        warm_val = batches(cfg, val, shuffle=False) if parts.val_ds is not None else None
        warm_step(parts, batches(cfg, train, shuffle=False), warm_val)
    except Abandon:
        print(
            f"stopped preparing {cfg.preset} on {cfg.dataset}: a run for other settings is waiting",
            flush=True,
        )
        _reset()
        return None
    except Exception:  # a spare never dies of a bad form; the job reports the problem itself
        traceback.print_exc()
        _reset()
        return None
    return Prepared(
        shaping_settings(cfg), fp.digest if fp else None, train, val, parts, time.perf_counter() - t0
    )


def warm_step(parts: FitParts, warm_train: Any, warm_val: Any) -> None:
    """One train and one validation step on throwaway batches with the run's element spec (the run's own
    datasets are never iterated: that would move their shuffle on), then every variable it changed put back."""
    if warm_train.element_spec != parts.train_ds.element_spec:
        raise ValueError("throwaway batches differ from the run's; not warming")
    model = parts.model
    model.optimizer.build(model.trainable_variables)  # its slots exist now, so they can be put back too
    state = [*model.variables, *model.optimizer.variables]
    saved = [v.numpy() for v in state]
    model.fit(warm_train, validation_data=warm_val, epochs=1, steps_per_epoch=1,
              validation_steps=1 if warm_val is not None else None, class_weight=parts.class_weight,
              shuffle=False, verbose=0)  # fmt: skip
    for var, value in zip(state, saved, strict=True):
        var.assign(value)


def on_request(data: Any, scratch: Path, progress: Callable[[float], None] | None = None) -> bool:
    """Prepare what the Train page asked for, unless it is what is prepared already; True when parts are ready."""
    global _slot, _last_request
    if data == _last_request:
        return _slot is not None
    _last_request = data
    if _slot is not None and _slot.shape == shaping_settings(data):
        return True  # e.g. only the epochs changed: what is prepared still fits
    if _slot is not None:
        _slot = None
        _reset()
    try:
        cfg = RunConfig.from_dict(data)
    except (ValueError, TypeError):
        return False
    _slot = prepare(cfg, scratch, progress)
    if _slot is not None:
        print(f"prepared {cfg.preset} on {cfg.dataset} in {_slot.seconds:.1f} s", flush=True)
    return _slot is not None
