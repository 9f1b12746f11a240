"""Progress of a training run from its run directory: fraction done, ETA, and curve figures (plotly)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core import figures
from core.data import fingerprint, renames
from core.training import runs


@dataclass
class ProgressView:
    fraction: float
    eta_s: float | None
    text: str


def summarize(run: runs.Run, epochs: list[dict], last_batch: dict | None) -> ProgressView:
    total = int(run.config.epochs or 1)
    done = len(epochs)
    if run.state not in runs.ACTIVE_STATES:
        return ProgressView(1.0 if run.state == "completed" else done / total, None, run.state)
    if last_batch and last_batch.get("steps"):
        step, steps = last_batch["step"], last_batch["steps"]
        frac_epoch = step / steps
        per_epoch = last_batch["epoch_elapsed"] / max(frac_epoch, 1e-6)
        if epochs:
            per_epoch = sum(e["seconds"] for e in epochs[-3:]) / len(epochs[-3:])
        eta = (1 - frac_epoch) * per_epoch + (total - done - 1) * per_epoch
        return ProgressView(min((done + frac_epoch) / total, 1.0), max(eta, 0.0),
                            f"epoch {done + 1}/{total} · batch {step}/{steps}")  # fmt: skip
    if done:
        per_epoch = sum(e["seconds"] for e in epochs) / done
        return ProgressView(done / total, (total - done) * per_epoch, f"epoch {done}/{total} done")
    preparing = run.status.get("preparing")
    if isinstance(preparing, int | float) and preparing < 1:
        # the first training on a folder decodes every image once (later runs read the decode cache); a run
        # handed to a warm spare that is decoding the same settings waits for it, still queued
        return ProgressView(float(preparing), None, f"preparing data: {preparing:.0%} of the images decoded")
    return ProgressView(
        0.0, None, "loading data and building the model…" if run.state == "running" else "starting…"
    )


def curves_figure(series: dict[str, list[dict]]) -> go.Figure:
    """Loss and accuracy, train (solid) vs validation (dashed), for one run or several overlaid."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    for i, (name, epochs) in enumerate(series.items()):
        color = palette[i % len(palette)]
        x = [e["epoch"] for e in epochs]
        for col, metric in ((1, "loss"), (2, "accuracy")):
            for prefix, dash in (("", "solid"), ("val_", "dash")):
                y = [e.get(prefix + metric) for e in epochs]
                if not any(v is not None for v in y):
                    continue
                label = (
                    f"{name} {'validation' if prefix else 'train'}"
                    if len(series) > 1
                    else ("validation" if prefix else "train")
                )
                fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=label, legendgroup=name,
                                         showlegend=col == 1, line=dict(color=color, dash=dash)), row=1, col=col)  # fmt: skip
    fig.update_xaxes(
        title_text="epoch", dtick=1 if max((len(e) for e in series.values()), default=0) < 15 else None
    )
    # Room for the toolbar above the subplot titles, the legend under the axis titles (it grows the bottom
    # margin, so the figure grows with it rather than squeezing the plots).
    rows = 2 * math.ceil(len(series) / 2) if len(series) > 1 else 2
    fig.update_layout(height=300 + 20 * rows, margin=dict(l=0, r=0, b=0))
    return figures.clear_toolbar(fig, legend="below")


WARNING_MARK = "⚠"


def warning_marker(run: runs.Run) -> str:
    """A visible marker in front of a label, so a run that finished with warnings never looks like a clean one."""
    return f"{WARNING_MARK} " if run.warnings else ""


def runs_table(all_runs: list[runs.Run]) -> list[dict]:
    """One row per run: a short readable label first (name · preset · dataset · val acc · state), the run id last.

    "data" says whether the run's dataset still holds what the run saw (its fingerprint; "dataset changed" when
    not); each dataset is fingerprinted once per table from the per-file hash cache."""
    data = fingerprint.data_states(
        (r.run_id, r.config.dataset, r.config.dataset_fingerprint) for r in all_runs
    )
    rows = []
    for r in all_runs:
        acc = r.status.get("best_val_accuracy")
        rows.append({
            "run": warning_marker(r) + r.short_label(),
            "status": r.state + (f": {r.status['error']}" if r.status.get("error") else ""),
            "warnings": "; ".join(r.warnings),
            "data": data[r.run_id][0] + (f", renamed to {moved}" if (moved := renames.renamed_to(r.config.dataset)) else ""),
            "epochs": f"{r.status.get('epochs_done', 0)}/{r.config.epochs}",
            "best val acc": round(acc, 4) if isinstance(acc, int | float) else None,
            "duration s": round(d) if (d := runs.duration(r.status)) else None,
            "note": r.note,
            "tags": ", ".join(r.tags),
            "id": r.run_id,
        })  # fmt: skip
    return rows
