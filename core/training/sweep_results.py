"""A sweep's results: the table sorted by validation accuracy, parallel coordinates, and parameter importance.

Importance is a random forest (scikit-learn, 200 trees, seed 0) that predicts a trial's validation accuracy from
its swept settings (learning rate and batch size on a log scale, a choice such as the optimizer as its position in
the list); a setting's importance is the forest's mean decrease in impurity for it, normalised to sum to 1. It
needs at least MIN_TRIALS completed trials, and with a handful of trials it is a hint, not a measurement; the
correlation column (Pearson, numbers only) says in which direction a setting pushed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.training import runs
from core.training.sweeps import NUMERIC, SHORT, Sweep, TrialRow, trial_rows

if TYPE_CHECKING:
    import plotly.graph_objects as go

MIN_TRIALS = 3
LOG_AXES = ("learning_rate", "batch_size", "filters")


def table(sweep: Sweep, rows: list[TrialRow] | None = None) -> list[dict[str, Any]]:
    """One row per trial, best validation accuracy first, then the ones without (pending, failed) in order."""
    rows = trial_rows(sweep) if rows is None else rows
    out = []
    for r in sorted(rows, key=lambda r: (r.val_accuracy is None, -(r.val_accuracy or 0.0), r.trial.index)):
        run = r.run
        row: dict[str, Any] = {"trial": r.trial.index + 1}
        row.update({SHORT[n]: r.trial.params.get(n) for n in sweep.space})
        row["state"] = r.state + (f": {r.trial.error}" if r.trial.error else "")
        if run is not None and run.status.get("error"):
            row["state"] += f": {run.status['error']}"
        row["val acc"] = round(r.val_accuracy, 4) if r.val_accuracy is not None else None
        row["epochs"] = f"{run.status.get('epochs_done', 0)}/{run.config.epochs}" if run else ""
        row["duration s"] = round(d) if run is not None and (d := runs.duration(run.status)) else None
        row["id"] = r.trial.run_id or ""
        out.append(row)
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    """The table as aligned text for the CLI."""
    if not rows:
        return "(no trials)"
    cols = list(rows[0])

    def cell(col: str, v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4f}" if col == "val acc" else f"{v:g}"
        return str(v)

    cells = [[cell(c, r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _encode(sweep: Sweep, name: str, value: Any) -> float:
    """A setting as a number: log10 for the log-scaled ones, a choice's position in the sweep's list."""
    if name in NUMERIC:
        v = float(value)
        return math.log10(v) if name in LOG_AXES and v > 0 else v
    values = sweep.space.get(name)
    choices = values if isinstance(values, list) else []
    return float(choices.index(value)) if value in choices else float(len(choices))


def _varying(sweep: Sweep, rows: list[TrialRow]) -> list[str]:
    return [n for n in sweep.space if len({repr(r.trial.params.get(n)) for r in rows}) > 1]


def completed(rows: list[TrialRow]) -> list[TrialRow]:
    return [r for r in rows if r.state == "completed" and r.val_accuracy is not None]


@dataclass
class Importance:
    rows: list[dict[str, Any]]  # parameter, importance (sums to 1), correlation (None for choices)
    trials: int
    message: str = ""  # why there are no rows, when there are none


def importance(sweep: Sweep, rows: list[TrialRow] | None = None) -> Importance:
    done = completed(trial_rows(sweep) if rows is None else rows)
    if len(done) < MIN_TRIALS:
        return Importance([], len(done), f"parameter importance needs at least {MIN_TRIALS} completed trials; "
                                         f"{len(done)} so far")  # fmt: skip
    names = _varying(sweep, done)
    if not names:
        return Importance([], len(done), "every completed trial used the same settings")
    import numpy as np

    x = np.array([[_encode(sweep, n, r.trial.params.get(n)) for n in names] for r in done])
    y = np.array([r.val_accuracy for r in done], dtype=float)
    if float(y.std()) == 0.0:
        return Importance([], len(done), "every completed trial reached the same validation accuracy")
    importances = _forest(tuple(map(tuple, x.tolist())), tuple(y.tolist()))
    out: list[dict[str, Any]] = []
    for i, n in enumerate(names):
        corr = None
        if n in NUMERIC and float(x[:, i].std()) > 0:
            corr = round(float(np.corrcoef(x[:, i], y)[0, 1]), 3)
        out.append({"parameter": SHORT[n], "importance": round(importances[i], 3), "correlation": corr})
    out.sort(key=lambda r: -float(r["importance"]))
    return Importance(out, len(done))


@functools.lru_cache(maxsize=32)
def _forest(x: tuple[tuple[float, ...], ...], y: tuple[float, ...]) -> tuple[float, ...]:
    """The forest's importances, fitted once per set of results (about 1 s): the Sweeps tab redraws every 2 s
    while a sweep runs, and the results change only when a trial ends."""
    import numpy as np
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(n_estimators=200, random_state=0).fit(np.array(x), np.array(y))
    return tuple(float(v) for v in forest.feature_importances_)


def parallel_figure(sweep: Sweep, rows: list[TrialRow] | None = None) -> go.Figure | None:
    """One line per trial with a validation accuracy, through one axis per swept setting and ending on val acc."""
    import plotly.graph_objects as go

    done = [r for r in (trial_rows(sweep) if rows is None else rows) if r.val_accuracy is not None]
    if len(done) < 2:
        return None
    dims = []
    for n in sweep.space:
        vals = [_encode(sweep, n, r.trial.params.get(n)) for r in done]
        dim: dict[str, Any] = {"label": SHORT[n] + (" (log10)" if n in LOG_AXES else ""), "values": vals}
        if n not in NUMERIC:
            choices = sweep.space[n]
            dim.update(tickvals=list(range(len(choices))), ticktext=[str(c) for c in choices])
        elif n in LOG_AXES:
            ticks = sorted(set(vals))
            if len(ticks) <= 8:
                dim.update(tickvals=ticks, ticktext=[f"{10**t:.3g}" for t in ticks])
        dims.append(dim)
    accs = [float(r.val_accuracy or 0.0) for r in done]
    dims.append({"label": "val acc", "values": accs, "tickformat": ".1%",
                 "range": [min(accs), max(accs)] if min(accs) < max(accs) else [0.0, 1.0]})  # fmt: skip
    fig = go.Figure(go.Parcoords(line=dict(color=accs, colorscale="Viridis", showscale=True,
                                           colorbar=dict(title="val acc", tickformat=".1%", x=1.08)),
                                 dimensions=dims))  # fmt: skip
    fig.update_layout(height=360, margin=dict(l=60, r=110, t=50, b=20))
    return fig
