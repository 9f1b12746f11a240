"""Comparing runs, as TensorBoard does but from the run folders: filters, any logged metric smoothed, and the
hyperparameters of a selection side by side (its HParams table). Reads JSON only, so it never waits on TensorFlow."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from core import figures
from core.training import runs

if TYPE_CHECKING:
    import plotly.graph_objects as go

FIRST_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
NOT_METRICS = frozenset({"type", "epoch", "epochs", "t", "step", "steps", "epoch_elapsed"})
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def filter_runs(all_runs: Iterable[runs.Run], *, datasets: Iterable[str] = (), presets: Iterable[str] = (),
                tags: Iterable[str] = (), sweeps: Iterable[str] = ()) -> list[runs.Run]:  # fmt: skip
    """Runs matching every filter given; within one filter any value matches (a run with any of the tags)."""
    ds, ps, ts, ss = set(datasets), set(presets), set(tags), set(sweeps)
    return [r for r in all_runs
            if (not ds or r.config.dataset in ds) and (not ps or r.config.preset in ps)
            and (not ts or ts & set(r.tags)) and (not ss or r.config.sweep in ss)]  # fmt: skip


def filter_choices(all_runs: Iterable[runs.Run]) -> dict[str, list[str]]:
    """What each filter can offer: the values the runs actually have."""
    out: dict[str, set[str]] = {"datasets": set(), "presets": set(), "tags": set(), "sweeps": set()}
    for r in all_runs:
        out["datasets"].add(r.config.dataset)
        out["presets"].add(r.config.preset)
        out["tags"].update(r.tags)
        if r.config.sweep:
            out["sweeps"].add(r.config.sweep)
    return {k: sorted(v) for k, v in out.items()}


def metric_names(histories: Iterable[list[dict]]) -> list[str]:
    """Every numeric value logged per epoch (progress.jsonl), loss and accuracy first."""
    found: set[str] = set()
    for epochs in histories:
        for rec in epochs:
            found.update(k for k, v in rec.items() if k not in NOT_METRICS and _number(v) is not None)
    first = [m for m in FIRST_METRICS if m in found]
    return first + sorted(found - set(first))


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def ema(values: list[float | None], weight: float) -> list[float | None]:
    """TensorBoard's smoothing: an exponential moving average, debiased so the first points are not pulled to 0.
    `weight` 0 leaves the values as they are; gaps (None, NaN) stay gaps and do not reset the average."""
    if not 0.0 <= weight < 1.0:
        raise ValueError("smoothing weight must be in [0, 1)")
    out: list[float | None] = []
    last, n = 0.0, 0
    for v in values:
        x = _number(v)
        if x is None:
            out.append(None)
            continue
        last = last * weight + (1 - weight) * x
        n += 1
        out.append(last / (1 - weight**n) if weight else x)
    return out


def compare_figure(series: dict[str, list[dict]], metric: str, weight: float = 0.0) -> go.Figure:
    """One line per run for `metric` by epoch; when smoothed, the raw values stay as a faint line behind."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (name, epochs) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        x = [e.get("epoch") for e in epochs]
        y = [_number(e.get(metric)) for e in epochs]
        if not any(v is not None for v in y):
            continue
        if weight > 0:
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line=dict(color=color, width=1), opacity=0.3,
                                     name=f"{name} (raw)", legendgroup=name, showlegend=False, hoverinfo="skip"))  # fmt: skip
        fig.add_trace(go.Scatter(x=x, y=ema(y, weight), mode="lines+markers", line=dict(color=color),
                                 name=name, legendgroup=name))  # fmt: skip
    longest = max((len(e) for e in series.values()), default=0)
    fig.update_xaxes(title_text="epoch", dtick=1 if longest < 15 else None)
    fig.update_yaxes(title_text=metric + (f" (smoothed {weight:g})" if weight > 0 else ""))
    fig.update_layout(height=300 + 20 * len(series), margin=dict(l=0, r=0, b=0))
    return figures.clear_toolbar(fig, legend="below")


HPARAMS = (("preset", "preset"), ("dataset", "dataset"), ("epochs", "epochs"), ("batch_size", "batch"),
           ("optimizer", "optimizer"), ("learning_rate", "lr"), ("seed", "seed"), ("val_split", "val split"),
           ("class_weights", "class weights"), ("early_stopping", "early stop"), ("restore_best", "restore best"),
           ("target_accuracy", "target acc"), ("weights", "weights"), ("limit", "limit"),
           ("strategy", "strategy"))  # fmt: skip


def hparams_rows(selection: list[runs.Run], only_differing: bool = False) -> list[dict[str, Any]]:
    """One row per run: its label, every hyperparameter (the builder's flattened in), then its results.

    `only_differing` keeps the hyperparameters that differ within the selection, which is what a comparison is
    about; the results columns always stay."""
    settings: list[dict[str, Any]] = []
    for r in selection:
        cfg = r.config
        row: dict[str, Any] = {label: getattr(cfg, key) for key, label in HPARAMS}
        row["image size"] = "×".join(map(str, cfg.input_shape))
        for k, v in sorted((cfg.builder or {}).items()):
            row[f"builder {k}"] = v
        row["sweep"] = r.sweep_label
        row["tags"] = ", ".join(r.tags)
        settings.append(row)
    keys = list(dict.fromkeys(k for row in settings for k in row))
    if only_differing and len(selection) > 1:
        keys = [k for k in keys if len({repr(row.get(k)) for row in settings}) > 1]
    out = []
    for r, row in zip(selection, settings, strict=True):
        epochs, _ = runs.read_progress(r.path)
        last = epochs[-1] if epochs else {}
        acc = r.status.get("best_val_accuracy")
        out.append({"run": r.short_label(), **{k: _cell(row.get(k)) for k in keys},
                    "best val acc": round(acc, 4) if isinstance(acc, int | float) else None,
                    "final loss": _round(last.get("loss")), "final val loss": _round(last.get("val_loss")),
                    "epochs done": r.status.get("epochs_done", 0), "state": r.state, "id": r.run_id})  # fmt: skip
    return out


def _cell(v: Any) -> Any:
    """Streamlit's table wants one type per column: None stays empty, everything else as it is or as text."""
    if v is None or isinstance(v, int | float | str):
        return v
    return str(v)


def _round(v: Any) -> float | None:
    x = _number(v)
    return round(x, 4) if x is not None else None
