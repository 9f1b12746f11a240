"""Fit a preset on a dataset inside a run directory. The CLI and the UI's job process run exactly this code."""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core import atomic, options, validation
from core.data import datasets
from core.errors import UserError, first_line
from core.models import architectures
from core.training import runs
from core.training.pinned import check_pinned
from core.training.run_config import RunConfig
from core.training.runs import process_start_time  # noqa: F401  (kept here too: tests and pages import it from training)

LOCK_FILE = "train.lock"

OPTIMIZERS = options.OPTIMIZERS
CLASS_WEIGHT_METHODS = options.CLASS_WEIGHT_METHODS


@dataclass
class TrainRequest:
    """What a person asks for; `None` means "the preset's (or the dataset's) default"."""

    dataset: str
    preset: str = options.DEFAULT_PRESET
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    learning_rate: float | None = None
    seed: int = datasets.DEFAULT_SEED
    val_split: float = datasets.DEFAULT_VAL_SPLIT
    image_size: tuple[int, int] | None = None
    channels: int | None = None
    class_weights: str | None = None
    early_stopping: int = 0  # patience in epochs; 0 = off
    restore_best: bool = True
    target_accuracy: float | None = None
    weights: str | None = "imagenet"  # transfer presets: "imagenet", "random" or a path to a weights file
    builder: dict[str, Any] | None = None
    limit: int | None = None  # cap on images per split (quick experiments, tests)
    strategy: str = "default"
    pinned: list[str] | None = None  # time-lapse images of the validation split; None: one per class
    lr_schedule: str | None = None  # options.LR_SCHEDULES; None: the preset's recipe
    label_smoothing: float | None = None  # 0..options.MAX_LABEL_SMOOTHING; None: the preset's recipe


def _image_size(req: TrainRequest, preset, dataset_hw: tuple[int, int]) -> tuple[int, int]:
    if req.image_size is None:
        return tuple(preset.image_size) if preset.image_size else dataset_hw  # type: ignore[return-value]
    if not isinstance(req.image_size, (tuple, list)) or len(req.image_size) != 2:
        raise UserError(f"image size must be two numbers, height and width; got {req.image_size!r}")
    h, w = (validation.check_int(v, "image size", 1, validation.MAX_IMAGE_SIDE) for v in req.image_size)
    return h, w


def _builder_spec(builder: dict[str, Any] | None) -> architectures.BuilderSpec | None:
    """The small builder's numbers, bounded so a typo cannot ask for a model that does not fit in memory."""
    if builder is None:
        return None
    fields = architectures.BuilderSpec.__dataclass_fields__
    unknown = set(builder) - set(fields)
    if unknown:
        raise UserError(f"unknown builder settings: {', '.join(sorted(unknown))}")
    spec = architectures.BuilderSpec(**builder)
    validation.check_int(spec.conv_blocks, "conv blocks", 0, 8)
    validation.check_int(spec.filters, "filters", 1, 1024)
    validation.check_float(spec.filter_growth, "filter growth", 0.25, 4.0, lo_open=False, hi_open=False)
    validation.check_int(spec.kernel_size, "kernel size", 1, 15)
    validation.check_float(spec.dropout, "dropout", 0.0, 1.0, lo_open=False, hi_open=True)
    validation.check_int(spec.dense_units, "dense units", 0, 8192)
    return spec


def resolve(req: TrainRequest) -> RunConfig:
    """Fill every default so config.json says exactly what was trained; raises UserError for bad combinations.

    Every number is checked here, before a run exists, so the CLI and the Train page refuse the same inputs with
    the same line. `None` means "the default"; 0 is a value (and refused where it makes no sense), never a default.
    """
    v = validation
    preset = architectures.get_preset(req.preset)
    epochs = v.check_int(req.epochs if req.epochs is not None else preset.epochs, "epochs", 1, v.MAX_EPOCHS)
    batch_size = v.check_int(
        req.batch_size if req.batch_size is not None else preset.batch_size, "batch size", 1, v.MAX_BATCH_SIZE
    )
    lr = v.check_float(
        req.learning_rate if req.learning_rate is not None else preset.learning_rate,
        "learning rate", 0.0, v.MAX_LEARNING_RATE, lo_open=True, hi_open=False,
    )  # fmt: skip
    seed = v.check_int(req.seed, "seed", 0, v.MAX_SEED)
    val_split = v.check_float(req.val_split, "validation split", 0.0, 1.0, lo_open=False, hi_open=True)
    limit = v.check_int(req.limit, "limit", 1, 2**31 - 1) if req.limit is not None else None
    early_stopping = v.check_int(req.early_stopping, "early-stopping patience", 0, v.MAX_EPOCHS)
    if req.target_accuracy is not None:
        v.check_float(req.target_accuracy, "target accuracy", 0.0, 1.0, lo_open=True, hi_open=False)
    spec = _builder_spec(req.builder) if req.preset == "custom" else None
    weights = None if req.weights in (None, "random", "none") else req.weights
    if preset.transfer and weights not in (None, "imagenet"):
        weights = v.check_weights_path(str(weights))
    info = datasets.get_dataset(req.dataset)
    if not info.available:
        from core.data.keras_datasets import missing_message

        raise UserError(missing_message(req.dataset))
    if len(info.class_names) < 2:
        raise UserError(f"dataset {req.dataset} needs at least two classes with images")
    sized = req.image_size is not None or bool(preset.image_size)
    coloured = req.channels is not None or preset.channels is not None
    # probing decodes up to 200 of the folder's images (0.33 s for 800x600 JPEGs): only when a default needs it
    if sized and coloured:
        datasets.check_readable(info)
        h, w, c = 0, 0, 0
    else:
        h, w, c = datasets.default_input_shape(info)
    h, w = _image_size(req, preset, (h, w))
    floor = architectures.min_image_side(req.preset, spec)
    if min(h, w) < floor:
        raise UserError(f"images too small for {req.preset}: it needs at least {floor}x{floor}; got {h}x{w}")
    if max(h, w) > v.MAX_IMAGE_SIDE:
        raise UserError(f"image size must be at most {v.MAX_IMAGE_SIDE} pixels a side; got {h}x{w}")
    channels = (
        req.channels if req.channels is not None else (preset.channels if preset.channels is not None else c)
    )
    optimizer = (req.optimizer if req.optimizer is not None else preset.optimizer).lower()
    cw = req.class_weights if req.class_weights is not None else preset.class_weights
    schedule = req.lr_schedule if req.lr_schedule is not None else preset.lr_schedule
    smoothing = v.check_float(
        req.label_smoothing if req.label_smoothing is not None else preset.label_smoothing,
        "label smoothing", 0.0, options.MAX_LABEL_SMOOTHING, lo_open=False, hi_open=False,
    )  # fmt: skip
    checks = [
        (schedule in options.LR_SCHEDULES, f"lr schedule must be one of {', '.join(options.LR_SCHEDULES)}"),
        (channels in options.CHANNELS, "channels must be 1 or 3"),
        (optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
        (cw in CLASS_WEIGHT_METHODS, f"class weights must be one of {', '.join(CLASS_WEIGHT_METHODS)}"),
        (
            req.strategy in options.STRATEGIES,
            f"strategy must be one of {', '.join(options.STRATEGIES)}",
        ),
    ]
    for ok, msg in checks:
        if not ok:
            raise UserError(msg)
    pinned = check_pinned(info, req.pinned, val_split, seed)
    num_classes = len(info.class_names)
    kind = architectures.output_kind(req.preset, num_classes)
    # Keras' sparse loss cannot smooth labels: a softmax/logits run with smoothing trains on one-hot targets
    label_mode = "categorical" if smoothing and kind != "sigmoid" else preset.label_mode
    return RunConfig(
        dataset=req.dataset,
        dataset_title=info.title,
        preset=req.preset,
        preset_title=preset.title,
        class_names=list(info.class_names),
        input_shape=(int(h), int(w), int(channels)),
        output_kind=kind,
        label_mode=label_mode,
        epochs=int(epochs),
        batch_size=int(batch_size),
        optimizer=optimizer,
        learning_rate=float(lr),
        seed=seed,
        val_split=val_split,
        class_weights=cw,
        early_stopping=early_stopping,
        restore_best=bool(req.restore_best),
        target_accuracy=req.target_accuracy,
        weights=weights if preset.transfer else None,
        builder=req.builder,
        limit=limit,
        strategy=req.strategy,
        pinned=pinned,
        lr_schedule=schedule,
        label_smoothing=float(smoothing),
    )


def build_for_config(config: RunConfig):
    builder = architectures.BuilderSpec(**config.builder) if config.builder else None
    return architectures.build_model(
        config.preset, config.input_shape, config.num_classes,
        weights=config.weights, builder=builder,
    )  # fmt: skip


def configure_devices() -> str:
    """Use a GPU when present, growing its memory instead of grabbing it all."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass
    return f"{len(gpus)} GPU(s)" if gpus else "CPU"


def _install_signal_handlers(stop_cb) -> None:
    def handler(signum, frame):
        stop_cb.requested = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def _refuse_unless_queued(run: runs.Run) -> None:
    """Under the run's lock: a run is trained once, so anything but `queued` is refused before a byte is written."""
    status = atomic.read_json(run.path / "status.json", {}) or {}
    state = status.get("state", "unknown") if isinstance(status, dict) else "unknown"
    if state != "queued":
        raise UserError(f"run {run.run_id} is already {state}; start a new run")


def _lock_run(run: runs.Run):
    """The run's exclusive lock (train.lock, held by this process until training ends); refused when taken."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(run.path / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"run {run.run_id} is already being trained by another process") from None
    except OSError as exc:
        raise UserError(f"cannot lock run {run.run_id}: {exc.strerror or exc}") from None
    return lock


def _has_rescaling(model) -> bool:
    import keras

    return any(isinstance(layer, keras.layers.Rescaling) for layer in model.layers)


def _hint(preset: str, rescaled: bool, *more: str) -> str:
    tries = ["a lower learning rate", *more]
    if not rescaled and preset.startswith("cats-dogs"):
        tries.append("cats-dogs-3")
    text = tries[0] if len(tries) == 1 else ", ".join(tries[:-1]) + " or " + tries[-1]
    if rescaled:
        return f"try {text}"
    blog = ", as in the blog" if preset.startswith("cats-dogs") else ""
    return f"{preset} has no rescaling layer{blog}: try {text}"


def health_warnings(epochs: list[dict], preset: str, *, rescaled: bool, val_counts: list[int],
                    first_loss: float | None = None, nonfinite_at: int | None = None, nonfinite_value: str = "NaN",
                    saved_epoch: int | None = None) -> list[str]:  # fmt: skip
    """One-line warnings with a hint: a loss that became NaN/inf or exploded, validation accuracy at chance."""
    out: list[str] = []
    hint = _hint(preset, rescaled)
    if nonfinite_at is not None:
        kept = (
            f"epoch {saved_epoch}'s weights were saved" if saved_epoch else "the untrained weights were saved"
        )
        out.append(f"loss became {nonfinite_value} in epoch {nonfinite_at}, so training stopped there and {kept}: "
                   f"{hint}")  # fmt: skip
        return out
    losses = [float(e["loss"]) for e in epochs if isinstance(e.get("loss"), int | float)]
    if losses:
        first = first_loss if first_loss is not None else losses[0]
        if losses[-1] > 3 * first and losses[-1] > losses[0]:
            out.append(f"loss exploded from {first:.3g} to {losses[-1]:.3g}: {hint}")
    vals = [float(e["val_accuracy"]) for e in epochs if isinstance(e.get("val_accuracy"), int | float)]
    n = sum(val_counts)
    k = len(val_counts)
    if vals and n and k:
        majority = max(val_counts) / n
        if max(vals) <= max(1 / k + 0.05, majority + 0.02):
            out.append(f"validation accuracy stayed at chance level (best {max(vals):.1%}; always guessing the "
                       f"largest class gives {majority:.1%}): {_hint(preset, rescaled, 'more epochs')}")  # fmt: skip
    return out


def train_run(run_dir, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the run whose config.json is in run_dir; always leaves a final status, never raises on failure.

    A run is trained once, by the one process holding its lock: a second trainer, or a run that is not queued
    (completed, stopped, failed, running), is refused with a UserError before anything is written.
    A run folder deleted while training stays deleted: the job stops at the next batch and returns
    `{"state": "deleted"}`.

    Under the multiworker strategy only the chief writes run_dir; any other worker trains in a scratch copy of
    config.json (status, progress and its model.keras go there) and deletes it at the end (docs/SCALING.md).
    """
    from core.training import distribute

    run = runs.load_run(run_dir)
    if run is None:
        raise UserError(f"{run_dir} has no config.json")
    strategy_name = run.config.strategy
    # a missing or bad TF_CONFIG is a UserError here, before anything is written
    is_chief = distribute.is_chief(strategy_name)
    lock = _lock_run(run) if is_chief else None
    try:
        if is_chief:
            _refuse_unless_queued(run)
            atomic.sweep_temp_files(run.path, older_than_s=1.0)  # a killed writer's leftovers
        out = run.path if is_chief else distribute.scratch_run_dir(run.path)
        return _train(run, out, is_chief, echo)
    finally:
        if lock is not None:
            lock.release()


def import_in_background(module: str) -> threading.Thread:
    """Start importing TensorFlow/Keras (5-8 s on 2 cores, mostly one core and the disk) while the dataset is
    decoded or read from the decode cache (numpy and Pillow work outside the GIL), instead of one after the other.

    Nothing here touches TensorFlow's runtime, so the CPU split and multi-worker settings still come first.
    """
    thread = threading.Thread(
        target=importlib.import_module, args=(module,), name=f"import-{module}", daemon=True
    )
    thread.start()
    return thread


def _gone(run: runs.Run) -> dict[str, Any]:
    return {"state": "deleted", "run_id": run.run_id, "error": None}


def _preparing(out: Path) -> Callable[[float], None]:
    """Status field `preparing` (0..1) while a folder dataset is decoded before the first batch."""

    def report(fraction: float) -> None:
        try:
            runs.update_status(out, preparing=round(float(fraction), 3))
        except FileNotFoundError:  # the run was deleted; training notices on its own
            pass

    return report


def _train(run: runs.Run, out, is_chief: bool, echo: Callable[[str], None] | None) -> dict[str, Any]:
    from core.data import streaming
    from core.models.loading import save_model
    from core.training import distribute, prepared
    from core.training.callbacks import ProgressWriter, StopRequest, TargetAccuracy, TrainingHealth
    from core.training.fit_parts import build_parts

    cfg = run.config
    strategy_name = cfg.strategy
    stop_cb = StopRequest(out)
    _install_signal_handlers(stop_cb)
    try:
        runs.update_status(out, state="running", pid=os.getpid(), pid_start=process_start_time(os.getpid()),
                           host=socket.gethostname(), started=time.time(), error=None)  # fmt: skip
    except FileNotFoundError:
        return _gone(run)
    try:
        h, w, c = cfg.input_shape
        if echo:
            echo(f"loading {cfg.dataset} at {h}x{w}x{c} ...")
        # a warm spare may have prepared exactly this run's data, model and batches (core.training.prepared)
        ready = prepared.take(cfg) if is_chief and strategy_name == "default" else None
        if ready is not None:
            train, val, streamed = ready.train, ready.val, False
        else:
            importing = import_in_background("keras")
            train, val, streamed = streaming.training_splits(
                cfg, out / "cache", _preparing(out) if is_chief else None
            )
            importing.join()
        import keras

        device = configure_devices()
        if echo and strategy_name == "multiworker":
            echo(f"run {run.run_id}: {distribute.task_label()}, waiting for the other workers ...")
        # before anything runs on TensorFlow: the CPU split and the multi-worker collectives are start-up settings
        strategy = distribute.get_strategy(strategy_name)
        if not len(train):
            raise UserError(f"dataset {cfg.dataset} has no readable training images")
        distribute.check_batch_size(cfg.batch_size, strategy)
        distribute.check_same_run(strategy, cfg, (len(train), len(val)))
        parts = ready.parts if ready is not None else build_parts(cfg, train, val, strategy)
        model, train_ds, val_ds, cw = parts.model, parts.train_ds, parts.val_ds, parts.class_weight
        val_counts = parts.val_counts
        rescaled = _has_rescaling(model)
        if strategy_name == "multiworker":
            train_ds = distribute.shard_by_data(train_ds)
            val_ds = distribute.shard_by_data(val_ds) if val_ds is not None else None
        distribute.prepare_model(model, strategy, train_ds.element_spec)
        stopper = distribute.synced_stop(stop_cb, strategy) if strategy_name == "multiworker" else stop_cb
        health = TrainingHealth("val_accuracy" if val_ds is not None else None)
        writer = ProgressWriter(
            out, echo=echo if is_chief else None, save_each_epoch=True, meta=cfg.to_dict()
        )
        from core.training.schedules import schedule_callbacks

        callbacks: list = [*schedule_callbacks(cfg.lr_schedule, cfg.learning_rate), health, stopper,
                           *_recorders(cfg, out, train, val, is_chief), writer]  # fmt: skip
        monitor = "val_loss" if val_ds is not None else "loss"
        if cfg.early_stopping:
            # with validation, TrainingHealth keeps the best epoch by val_accuracy, early stopping or not
            own_restore = cfg.restore_best and val_ds is None
            callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=cfg.early_stopping,
                                                           restore_best_weights=own_restore))  # fmt: skip
        target_cb = None
        if cfg.target_accuracy:
            target_cb = TargetAccuracy(
                cfg.target_accuracy, "val_accuracy" if val_ds is not None else "accuracy"
            )
            callbacks.append(target_cb)
        runs.update_status(out, device=device, train_images=len(train), val_images=len(val),
                           params=int(model.count_params()), class_weight_values=cw, streamed=streamed,
                           **({"prepared_s": round(ready.seconds, 2)} if ready is not None else {}),
                           **distribute.describe(strategy, strategy_name))  # fmt: skip
        if distribute.any_worker(strategy, stop_cb.requested or runs.stop_requested(out)):
            stop_cb.requested = True
        else:
            with distribute.cluster_errors(strategy_name):
                model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, class_weight=cw,
                          shuffle=False, callbacks=callbacks, verbose=0)  # fmt: skip
        if writer.gone or not out.is_dir():
            return _gone(run)
        # the weights saved are the ones status.json describes: the best epoch's (restore best) or the last
        # good epoch's (the loss became NaN), else the final ones
        snap = health.weights_to_save(bool(cfg.restore_best))
        if snap is not None:
            model.set_weights(snap.weights)
            saved_epoch, saved_val = snap.epoch, snap.val_accuracy
        else:
            saved_epoch, saved_val = health.last_epoch, health.last_val_accuracy
        # every worker saves (TF's rule for multi-worker); a non-chief's copy is in its scratch dir
        save_model(model, out / "model.keras", cfg.to_dict(), make_parents=False)
        epochs, _ = runs.read_progress(out)
        state = "stopped" if stop_cb.requested else "completed"
        note = None
        if target_cb and target_cb.reached_at:
            note = f"reached target accuracy {cfg.target_accuracy:.0%} at epoch {target_cb.reached_at}"
        warnings = health_warnings(epochs, cfg.preset, rescaled=rescaled, val_counts=val_counts,
                                   first_loss=health.first_loss, nonfinite_at=health.nonfinite_at,
                                   nonfinite_value=health.nonfinite_value, saved_epoch=saved_epoch)  # fmt: skip
        return runs.update_status(out, state=state, ended=time.time(), note=note, best_val_accuracy=saved_val,
                                  saved_epoch=saved_epoch, best_epoch_val_accuracy=runs.best_val_accuracy(epochs),
                                  warnings=warnings)  # fmt: skip
    except UserError as exc:
        if not out.is_dir():
            return _gone(run)
        return _final(run, out, state="failed", ended=time.time(), error=str(exc))
    except Exception as exc:  # the one-line reason goes to status; the full trace to the job log
        if not out.is_dir():
            return _gone(run)
        traceback.print_exc()
        return _final(
            run, out, state="failed", ended=time.time(), error=f"{type(exc).__name__}: {first_line(exc)}"
        )
    finally:
        if not is_chief:
            shutil.rmtree(out, ignore_errors=True)


def _recorders(cfg: RunConfig, out: Path, train, val, is_chief: bool) -> list:
    """The time-lapse and the training dynamics, recorded by the chief alone. Placed before the progress
    writer, so an epoch's `seconds` in progress.jsonl include what recording it cost."""
    if not is_chief:
        return []
    from core.training import pinned
    from core.training.dynamics import Dynamics
    from core.training.timelapse import TimeLapse

    h, w, c = cfg.input_shape
    pins = pinned.choose(cfg, val)
    probe = pinned.probe_images(train, cfg.seed, (h, w), c)
    return [TimeLapse(out, pins, list(cfg.class_names), cfg.output_kind), Dynamics(out, probe)]


def _final(run: runs.Run, out, **fields: Any) -> dict[str, Any]:
    try:
        return runs.update_status(out, **fields)
    except FileNotFoundError:
        return _gone(run)


def start_run(req: TrainRequest) -> runs.Run:
    """Resolve a request and create its run directory (queued); a job process then calls train_run."""
    return runs.create_run(resolve(req))


def request_dict(req: TrainRequest) -> dict[str, Any]:
    return asdict(req)
