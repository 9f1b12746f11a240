"""Progress maths and figures from run directories (no TensorFlow): fraction, ETA, curves, runs table."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core import figures
from core.training import progress, runs


def _run(state: str, epochs: int = 4, **status) -> runs.Run:
    return runs.Run("r1", Path("not-on-disk") / "r1", {"epochs": epochs, "dataset": "d", "preset": "fast"},
                    {"state": state, **status})  # fmt: skip


def test_fraction_and_eta_from_batches_and_epochs():
    now = time.time()
    epochs = [{"epoch": 1, "seconds": 10.0, "t": now - 5}]
    batch = {"epoch": 2, "step": 25, "steps": 100, "epoch_elapsed": 2.5, "t": now}
    view = progress.summarize(_run("running"), epochs, batch)
    assert view.fraction == pytest.approx((1 + 0.25) / 4)
    assert view.eta_s == pytest.approx(0.75 * 10 + 2 * 10)
    assert "epoch 2/4" in view.text and "batch 25/100" in view.text
    first = progress.summarize(_run("running"), [], {**batch, "epoch": 1})
    assert first.eta_s == pytest.approx(0.75 * 10 + 3 * 10)  # 2.5 s for a quarter epoch: 10 s per epoch
    assert progress.summarize(_run("completed"), epochs, None).fraction == 1.0
    assert progress.summarize(_run("stopped"), epochs, None).fraction == 0.25
    assert progress.summarize(_run("queued"), [], None).eta_s is None


def test_curves_overlay_train_solid_validation_dashed():
    a = [{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4},
         {"epoch": 2, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.7, "val_accuracy": 0.7}]  # fmt: skip
    b = [{"epoch": 1, "loss": 0.9, "accuracy": 0.6}]
    fig = progress.curves_figure({"run-a": a, "run-b": b})
    names = [t.name for t in fig.data]
    assert names == [
        "run-a train",
        "run-a validation",
        "run-a train",
        "run-a validation",
        "run-b train",
        "run-b train",
    ]
    dashes = {t.name: t.line.dash for t in fig.data}
    assert dashes["run-a validation"] == "dash" and dashes["run-a train"] == "solid"
    assert list(fig.data[0].y) == [1.0, 0.5] and list(fig.data[2].y) == [0.5, 0.8]
    single = progress.curves_figure({"only": a})
    assert [t.name for t in single.data][:2] == ["train", "validation"]


def test_runs_table_rows():
    r = _run("failed", error="training process ended unexpectedly", epochs_done=2, best_val_accuracy=0.81234,
             started=100.0, ended=160.4)  # fmt: skip
    (row,) = progress.runs_table([r])
    assert row["status"] == "failed: training process ended unexpectedly"
    assert row["epochs"] == "2/4" and row["best val acc"] == 0.8123 and row["duration s"] == 60
    assert list(row)[:2] == ["run", "status"]


@pytest.mark.parametrize("n", [1, 2, 5])
def test_curves_leave_the_toolbar_its_own_band_and_put_the_legend_below(n):
    """Plotly's toolbar sits in the top margin: it covered the "accuracy" subplot title at t=30."""
    epochs = [{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4}]
    fig = progress.curves_figure({f"run-{i}": epochs for i in range(n)})
    assert figures.toolbar_problems(fig) == []
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["loss", "accuracy"]  # the subplot titles are still there, now under the toolbar
    assert fig.layout.margin.t >= figures.MODEBAR_ROOM + figures.TITLE_ROOM
    legend = fig.layout.legend
    assert (legend.orientation, legend.yref, legend.y, legend.yanchor) == ("h", "container", 0, "bottom")
    assert fig.layout.height >= 340


def test_preparing_data_is_shown_before_the_first_batch():
    """The first training on a folder decodes it once; the bar says so instead of a bare "loading"."""
    view = progress.summarize(_run("running", preparing=0.4), [], None)
    assert view.text == "preparing data: 40% of the images decoded" and view.fraction == pytest.approx(0.4)
    done = progress.summarize(_run("running", preparing=1.0), [], None)
    assert done.text.startswith("loading data")
