"""The learning-rate range test: the suggestion rule on hand-made curves, a real test on a tiny dataset, the CLI
and the Train page's button, plot and "Use it"."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import paths
from core.errors import UserError
from core.training import lr_finder, runs
from core.training.trainer import TrainRequest
from tests.apptest_support import open_page, texts
from tests.helpers import make_dataset

REPO = Path(__file__).resolve().parents[1]


def _curve(lr: np.ndarray) -> np.ndarray:
    """Flat at 2.3, falls fastest at lr = 1e-2 (a logistic step in log10 LR), then blows up after 1e-1."""
    t = np.log10(lr)
    fall = 2.3 - 2.0 / (1.0 + np.exp(-3.0 * (t + 2.0)))
    return fall + np.where(t > -1.0, 20.0 * (t + 1.0) ** 2, 0.0)


def test_suggestion_is_the_steepest_point_of_the_smoothed_curve():
    lr = lr_finder.lr_schedule(121, 1e-6, 1.0)
    suggestion, minimum = lr_finder.suggest(lr, _curve(lr))
    assert suggestion is not None and minimum is not None
    assert abs(math.log10(suggestion) - (-2.0)) <= 0.06  # the logistic's steepest point, 1e-2
    assert 10**-1.3 < minimum <= 10**-0.9  # just before the quadratic blow-up


def test_no_suggestion_when_the_loss_never_falls():
    lr = lr_finder.lr_schedule(50, 1e-6, 1.0)
    suggestion, minimum = lr_finder.suggest(lr, np.linspace(1.0, 5.0, 50))
    assert suggestion is None and minimum == pytest.approx(1e-6)


def test_smoothing_is_bias_corrected_and_the_schedule_exponential():
    assert np.allclose(lr_finder.smooth([2.0] * 10, 0.9), 2.0)  # no drag toward zero at the start
    rates = lr_finder.lr_schedule(5, 1e-4, 1.0)
    assert np.allclose(rates, [1e-4, 1e-3, 1e-2, 1e-1, 1.0])


def test_bad_numbers_are_refused_before_any_work():
    with pytest.raises(UserError, match="steps"):
        lr_finder.find_lr(TrainRequest(dataset="whatever"), steps=3)
    with pytest.raises(UserError, match="above the start"):
        lr_finder.find_lr(TrainRequest(dataset="whatever"), start_lr=1e-2, end_lr=1e-3)


@pytest.mark.slow
def test_range_test_on_a_tiny_dataset_suggests_a_sane_rate_and_leaves_no_run():
    make_dataset("tiny", per_class=16)
    seen: list[float] = []
    result = lr_finder.find_lr(TrainRequest(dataset="tiny", preset="fast", batch_size=8), steps=60,
                               progress=seen.append)  # fmt: skip
    assert result.suggestion is not None and 1e-5 <= result.suggestion <= 0.5, lr_finder.describe(result)
    assert np.all(np.diff(result.learning_rates) > 0) and result.learning_rates[0] == pytest.approx(1e-7)
    assert 10 <= result.steps_run <= 60 and len(result.smoothed) == result.steps_run
    assert seen and seen[-1] == pytest.approx(result.steps_run / 60)
    assert result.diverged or result.steps_run == 60
    assert min(result.smoothed) < 0.8 * result.smoothed[0]  # the loss fell somewhere in the range
    assert not runs.list_runs()  # only the shared decode cache (runs/.cache) may have appeared
    assert not [p for p in paths.runs_dir().iterdir() if not p.name.startswith(".")]
    text = lr_finder.describe(result)
    assert "steepest descent of the smoothed loss" in text and f"{result.suggestion:.2g}" in text
    assert lr_finder.plot_png(result).startswith(b"\x89PNG")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env={**os.environ},
                          capture_output=True, text=True, timeout=240)  # fmt: skip


@pytest.mark.slow
def test_cli_prints_the_suggestion_last_and_writes_a_new_plot(tmp_path):
    make_dataset("tiny", per_class=16)
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"mine")
    out = cli("lr-find", "--dataset", "tiny", "--plot", str(taken))
    assert out.returncode == 2 and "Traceback" not in out.stderr and "exists" in out.stderr
    assert taken.read_bytes() == b"mine"
    out = cli("lr-find", "--dataset", "tiny", "--steps", "3")
    assert out.returncode == 2 and out.stderr.strip().startswith("error: steps")
    plot = tmp_path / "lr.png"
    out = cli("lr-find", "--dataset", "tiny", "--batch-size", "8", "--steps", "60", "--plot", str(plot))
    assert out.returncode == 0, out.stderr
    suggestion = float(out.stdout.strip().splitlines()[-1])
    assert 1e-5 <= suggestion <= 0.5
    assert "steepest descent" in out.stderr and plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_train_page_finds_a_rate_plots_it_and_use_it_sets_the_field():
    make_dataset("tiny", per_class=16)
    at = open_page("pages/train.py", active_dataset="tiny")
    assert not at.exception
    at.number_input(key="batch_fast").set_value(8).run()
    at.number_input(key="lrf_steps").set_value(60).run()
    at.button(key="lr_find").click().run()
    assert not at.exception, at.exception
    assert "suggested learning rate" in texts(at)
    found = at.session_state["lr_found"][1]
    assert at.get("plotly_chart")
    at.button(key="lr_use").click().run()
    assert not at.exception
    want = float(f"{found.suggestion:.2g}")
    assert at.number_input(key="lr_fast").value == pytest.approx(want)
    at.run()  # stays set on the next rerun, and a run started now would use it
    assert at.number_input(key="lr_fast").value == pytest.approx(want)
    at.number_input(key="batch_fast").set_value(16).run()  # other settings: the old curve is not offered
    assert not at.exception and "lr_use" not in [b.key for b in at.button]
