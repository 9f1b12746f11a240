"""Learning-rate range test (Leslie Smith, "Cyclical Learning Rates", 2015; fastai's `lr_find`): train a fresh
copy of the model for a few hundred batches while the learning rate grows exponentially, and read a good rate off
the loss curve.

It uses training's own pieces, not a second pipeline: `trainer.resolve` (every number checked the same way),
`streaming.training_splits` + `streaming.make_dataset` (the same decoded images, shuffling and batches),
`trainer.build_for_config` + `architectures.compile_model` (the same model, loss and optimizer) and the same class
weights. Nothing is written: no run is created, and a streamed dataset's cache goes to a temporary folder.

The suggestion (SUGGESTION_RULE): the learning rate where the smoothed loss falls fastest per decade of learning
rate (steepest descent of the smoothed loss against log10 LR), searched between the first points and the loss
minimum. `minimum_lr / 10` (the other common rule) is reported beside it for reference.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import options, validation
from core.data import datasets
from core.errors import UserError
from core.training.trainer import TrainRequest

SUGGESTION_RULE = "steepest descent of the smoothed loss"
DEFAULT_STEPS = options.LR_FIND_STEPS
MIN_STEPS, MAX_STEPS = 10, 2000
START_LR = 1e-7
END_LR = 10.0  # = validation.MAX_LEARNING_RATE; the test stops long before for most optimizers
DIVERGE_FACTOR = 4.0  # stop once the smoothed loss exceeds 4x its minimum (fastai's rule)
SMOOTHING_WINDOW = 20  # the EMA averages about steps / 20 batches: enough to calm the noise, little lag

Progress = Callable[[float], None]


@dataclass
class LRFinderResult:
    """The loss curve of one range test and what it suggests."""

    learning_rates: list[float]
    losses: list[float]  # raw per-batch training loss
    smoothed: list[float]  # bias-corrected exponential moving average of `losses`
    suggestion: float | None  # by SUGGESTION_RULE; None when the loss never fell
    minimum_lr: float | None  # the learning rate at the smoothed loss minimum
    diverged: bool  # stopped early because the loss blew up
    steps_planned: int
    seconds: float
    dataset: str
    preset: str
    optimizer: str
    batch_size: int
    rule: str = SUGGESTION_RULE

    @property
    def steps_run(self) -> int:
        return len(self.losses)

    @property
    def min_over_10(self) -> float | None:
        return None if self.minimum_lr is None else self.minimum_lr / 10

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps_run": self.steps_run, "min_over_10": self.min_over_10}


def lr_schedule(steps: int, start_lr: float = START_LR, end_lr: float = END_LR) -> np.ndarray:
    """`steps` learning rates growing exponentially (equal steps in log space) from start_lr to end_lr."""
    return np.geomspace(start_lr, end_lr, int(steps))


def smooth(losses: list[float] | np.ndarray, beta: float) -> np.ndarray:
    """Bias-corrected exponential moving average (as Adam corrects its moments), so the first points are not
    dragged toward zero."""
    out = np.empty(len(losses), dtype=np.float64)
    avg = 0.0
    for i, v in enumerate(losses):
        avg = beta * avg + (1 - beta) * float(v)
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def beta_for(steps: int) -> float:
    """EMA factor averaging about steps / SMOOTHING_WINDOW batches (at least 2)."""
    return 1.0 - 1.0 / max(2.0, steps / SMOOTHING_WINDOW)


def suggest(
    learning_rates: np.ndarray | list[float], smoothed: np.ndarray | list[float]
) -> tuple[float | None, float | None]:
    """(steepest-descent LR, LR at the minimum) of a smoothed loss curve; (None, ...) when it never falls.

    The slope is taken against log10(LR), so each decade weighs the same; the first tenth of the points (where
    the average has seen few batches) and everything after the minimum (where the loss is rising) are left out.
    """
    lr = np.asarray(learning_rates, dtype=np.float64)
    loss = np.asarray(smoothed, dtype=np.float64)
    finite = np.isfinite(loss)
    if finite.sum() < 3:
        return None, None
    lr, loss = lr[finite], loss[finite]
    lowest = int(np.argmin(loss))
    minimum_lr = float(lr[lowest])
    skip = max(1, len(loss) // 10)
    if lowest - skip < 2:
        return None, minimum_lr
    slope = np.gradient(loss, np.log10(lr))
    window = slope[skip : lowest + 1]
    best = int(np.argmin(window))
    if window[best] >= 0:
        return None, minimum_lr
    return float(lr[skip + best]), minimum_lr


def _check(steps: int, start_lr: float, end_lr: float) -> None:
    validation.check_int(steps, "steps", MIN_STEPS, MAX_STEPS)
    v = validation
    v.check_float(start_lr, "start learning rate", 0.0, v.MAX_LEARNING_RATE, lo_open=True, hi_open=False)
    v.check_float(end_lr, "end learning rate", 0.0, v.MAX_LEARNING_RATE, lo_open=True, hi_open=False)
    if end_lr <= start_lr:
        raise UserError(f"the end learning rate ({end_lr:g}) must be above the start ({start_lr:g})")


def find_lr(
    req: TrainRequest,
    *,
    steps: int = DEFAULT_STEPS,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    progress: Progress | None = None,
) -> LRFinderResult:
    """Run the range test for a training request (its dataset, preset, batch size, optimizer, seed, limit...).

    One batch per learning rate, the rate set before each batch; the test stops early once the smoothed loss
    exceeds DIVERGE_FACTOR times its minimum or the loss is not finite. `req.learning_rate` is ignored.
    """
    from core.training import trainer

    _check(steps, start_lr, end_lr)
    cfg = trainer.resolve(req)
    t0 = time.perf_counter()
    importing = trainer.import_in_background("keras")  # overlaps the image reading, as training does
    with tempfile.TemporaryDirectory(prefix="lr-find-") as scratch:
        from core.data import streaming

        train, _val, _streamed = streaming.training_splits(cfg, Path(scratch))
        if not len(train):
            raise UserError(f"dataset {cfg.dataset} has no readable training images")
        importing.join()
        import keras

        from core.models import architectures

        trainer.configure_devices()
        keras.utils.set_random_seed(cfg.seed)
        k = cfg.num_classes
        counts = [int((train.y == i).sum()) for i in range(k)]
        cw = datasets.class_weights(counts, cfg.class_weights)
        model = trainer.build_for_config(cfg)
        architectures.compile_model(model, cfg.output_kind, cfg.label_mode, cfg.optimizer, float(start_lr))
        ds = streaming.make_dataset(train, cfg.batch_size, shuffle=True, seed=cfg.seed, num_classes=k,
                                    label_mode=cfg.label_mode).repeat()  # fmt: skip
        rates = lr_schedule(steps, start_lr, end_lr)
        beta = beta_for(steps)
        used: list[float] = []
        losses: list[float] = []
        best = math.inf
        avg = 0.0
        diverged = False
        for i, (x, y) in enumerate(ds.take(steps)):
            model.optimizer.learning_rate = float(rates[i])
            loss = float(model.train_on_batch(x, y, class_weight=cw, return_dict=True)["loss"])
            used.append(float(rates[i]))
            losses.append(loss)
            if progress is not None:
                progress((i + 1) / steps)
            if not math.isfinite(loss):
                diverged = True
                break
            avg = beta * avg + (1 - beta) * loss
            smoothed = avg / (1 - beta ** (i + 1))
            best = min(best, smoothed)
            if i >= max(3, steps // 20) and smoothed > DIVERGE_FACTOR * best:
                diverged = True
                break
    finite = [v if math.isfinite(v) else math.nan for v in losses]
    curve = smooth([v for v in finite if math.isfinite(v)], beta)
    curve = np.concatenate([curve, np.full(len(finite) - len(curve), np.nan)])  # a last NaN/inf stays NaN
    suggestion, minimum_lr = suggest(used, curve)
    return LRFinderResult(
        learning_rates=used, losses=finite, smoothed=[float(v) for v in curve], suggestion=suggestion,
        minimum_lr=minimum_lr, diverged=diverged, steps_planned=int(steps),
        seconds=time.perf_counter() - t0, dataset=cfg.dataset, preset=cfg.preset, optimizer=cfg.optimizer,
        batch_size=cfg.batch_size,
    )  # fmt: skip


def describe(result: LRFinderResult) -> str:
    """One line for the terminal and the page: the suggestion and the rule that produced it."""
    head = f"{result.preset} on {result.dataset}, {result.optimizer}, batch {result.batch_size}"
    ran = f"{result.steps_run} of {result.steps_planned} batches in {result.seconds:.1f}s"
    ran += ", stopped when the loss diverged" if result.diverged else ""
    if result.suggestion is None:
        tail = "no learning rate made the loss fall; try more steps, a larger --limit or another preset"
    else:
        tail = f"suggested learning rate {result.suggestion:.2g} ({result.rule})"
        if result.min_over_10 is not None:
            tail += f"; loss minimum at {result.minimum_lr:.2g}, minimum/10 = {result.min_over_10:.2g}"
    return f"{head}: {ran}; {tail}"


def plot_png(result: LRFinderResult) -> bytes:
    """The loss-vs-LR plot (log x) with the suggestion marked, as PNG bytes (matplotlib, no display needed)."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    ax.plot(result.learning_rates, result.losses, color="#c0c0c0", linewidth=1, label="loss per batch")
    ax.plot(result.learning_rates, result.smoothed, color="#1f77b4", linewidth=2, label="smoothed loss")
    if result.suggestion is not None:
        ax.axvline(result.suggestion, color="#d62728", linestyle="--",
                   label=f"suggested {result.suggestion:.2g}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    finite = [v for v in result.smoothed if math.isfinite(v)]
    if finite:  # the diverging tail would squash the interesting part
        lo, first = min(finite), finite[0]
        ax.set_ylim(lo - 0.1 * abs(lo), max(first, lo) * 1.5 + 1e-9)
    ax.set_title(f"Learning-rate range test: {result.preset} on {result.dataset}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def figure(result: LRFinderResult) -> Any:
    """The same plot for the Train page (plotly, log x): loss per batch, smoothed loss, the suggestion marked."""
    import plotly.graph_objects as go

    from core import figures

    fig = go.Figure()
    fig.add_scatter(x=result.learning_rates, y=result.losses, mode="lines", name="loss per batch",
                    line={"color": "#c0c0c0", "width": 1})  # fmt: skip
    fig.add_scatter(x=result.learning_rates, y=result.smoothed, mode="lines", name="smoothed loss",
                    line={"color": "#1f77b4", "width": 2})  # fmt: skip
    if result.suggestion is not None:
        fig.add_vline(x=result.suggestion, line={"color": "#d62728", "dash": "dash"})
        fig.add_scatter(x=[result.suggestion], y=[_loss_at(result, result.suggestion)], mode="markers",
                        name=f"suggested {result.suggestion:.2g}",
                        marker={"color": "#d62728", "size": 11, "symbol": "x"})  # fmt: skip
    finite = [v for v in result.smoothed if math.isfinite(v)]
    yrange = None
    if finite:
        lo, first = min(finite), finite[0]
        yrange = [lo - 0.1 * abs(lo), max(first, lo) * 1.5 + 1e-9]
    fig.update_layout(xaxis={"type": "log", "title": "learning rate"},
                      yaxis={"title": "training loss", "range": yrange}, height=360,
                      margin={"l": 10, "r": 10, "b": 10})  # fmt: skip
    return figures.clear_toolbar(fig)


def _loss_at(result: LRFinderResult, lr: float) -> float | None:
    i = int(np.argmin(np.abs(np.log(np.asarray(result.learning_rates)) - math.log(lr))))
    v = result.smoothed[i]
    return v if math.isfinite(v) else None
