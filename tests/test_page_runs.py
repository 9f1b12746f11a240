"""AppTest of the Runs page: filters, tags, compare with smoothing and the HParams table, and the Sweeps tab."""

from __future__ import annotations

import time

from core.training import jobs, run_compare, runs, sweeps
from core.training.trainer import TrainRequest
from tests.apptest_support import open_page, texts
from tests.helpers import make_dataset, wait_for


def _run(dataset: str, preset: str = "fast", lr: float = 1e-3, losses=(1.0, 0.6, 0.5), tags=(), sweep: str = "",
         trial: int | None = None) -> runs.Run:  # fmt: skip
    """A finished run as a job leaves it (config, progress.jsonl, status), without training."""
    run = runs.create_run({"preset": preset, "dataset": dataset, "epochs": len(losses), "class_names": ["a", "b"],
                           "input_shape": [16, 16, 1], "learning_rate": lr, "sweep": sweep, "sweep_trial": trial})  # fmt: skip
    for i, loss in enumerate(losses):
        runs.append_progress(run.path, {"type": "epoch", "epoch": i + 1, "t": time.time(), "seconds": 1.0,
                                        "loss": loss, "val_loss": loss + 0.1, "accuracy": 1 - loss / 2,
                                        "val_accuracy": 0.9 - loss / 2, "learning_rate": lr})  # fmt: skip
    runs.update_status(run.path, state="completed", best_val_accuracy=0.9 - losses[-1] / 2,
                       epochs_done=len(losses), created=time.time())  # fmt: skip
    if tags:
        runs.set_label(run.run_id, tags=list(tags))
    time.sleep(0.01)  # distinct creation times keep the table's order stable
    return runs.get_run(run.run_id)


def _table(at):
    return next(d for d in at.dataframe if (d.key or "").startswith("runs_table"))


def _frame(at, column: str):
    """The table that has this column (a dataframe without on_select keeps no key in AppTest)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _select(at, rows: list[int]) -> None:
    at.session_state[_table(at).key] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    at.run()
    assert not at.exception, at.exception


def test_filter_tag_compare_with_smoothing_and_hparams():
    make_dataset("tiny", per_class=3)
    a = _run("tiny", lr=1e-3, tags=["baseline"])
    b = _run("tiny", lr=3e-3, losses=(1.2, 0.4, 0.3))
    c = _run("other", preset="custom", sweep="sw-0000aa", trial=0)
    at = open_page("pages/runs.py", active_dataset="tiny")
    assert not at.exception, at.exception
    assert "Runs" in [p for p in texts(at).splitlines()]
    assert list(_table(at).value["id"]) == [c.run_id, b.run_id, a.run_id]
    at.multiselect(key="runs_filter_datasets").set_value(["tiny"]).run()
    assert list(_table(at).value["id"]) == [b.run_id, a.run_id] and "2 of 3 runs match" in texts(at)
    at.multiselect(key="runs_filter_tags").set_value(["baseline"]).run()
    assert list(_table(at).value["id"]) == [a.run_id]
    at.multiselect(key="runs_filter_tags").set_value([]).run()
    at.multiselect(key="runs_filter_datasets").set_value([]).run()
    at.multiselect(key="runs_filter_sweeps").set_value(["sw-0000aa"]).run()
    assert list(_table(at).value["id"]) == [c.run_id] and "sweep sw-0000aa #1" in _table(at).value["run"][0]
    at.multiselect(key="runs_filter_sweeps").set_value([]).run()

    _select(at, [0])  # one run: its name, note and tags can be edited
    at.text_input(key=f"tags_{c.run_id}").input("sweep-best, keep")
    at.button(key=f"save_label_{c.run_id}").click().run()
    assert not at.exception and runs.get_run(c.run_id).tags == ["sweep-best", "keep"]
    assert _table(at).value["tags"][0] == "sweep-best, keep"

    _select(at, [1, 2])  # a and b: curves of any logged metric, smoothed, and their hyperparameters
    metric = at.selectbox(key="compare_metric")
    assert (
        metric.value == "val_accuracy" and "learning_rate" in metric.options and "seconds" in metric.options
    )
    metric.set_value("loss").run()
    at.slider(key="compare_smoothing").set_value(0.6).run()
    assert not at.exception
    fig = at.get("plotly_chart")[-1].proto.spec
    assert '"(smoothed 0.6)' in fig or "smoothed 0.6" in fig
    hp = _frame(at, "final loss")
    assert list(hp["id"]) == [b.run_id, a.run_id] and list(hp["lr"]) == [3e-3, 1e-3]
    assert "optimizer" not in hp.columns  # only what differs, by default
    at.toggle(key="hparams_differing").set_value(False).run()
    hp = _frame(at, "final loss")
    assert "optimizer" in hp.columns and list(hp["final loss"]) == [0.3, 0.5]


def test_ema_matches_tensorboard_and_keeps_gaps():
    assert run_compare.ema([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    out = run_compare.ema([1.0, None, 3.0], 0.5)
    assert out[0] == 1.0 and out[1] is None
    assert abs(out[2] - (0.5 * 0.5 + 0.5 * 3.0) / (1 - 0.25)) < 1e-12  # debiased: (0.25 + 1.5) / 0.75


def test_sweeps_tab_shows_results_of_a_finished_sweep():
    make_dataset("tiny", per_class=4)
    space = {"learning_rate": [1e-4, 1e-3, 1e-2], "batch_size": [8]}
    sweep = sweeps.create_sweep(TrainRequest(dataset="tiny", epochs=1), space)
    for t, acc in zip(sweep.trials, (0.5, 0.8, 0.6), strict=True):
        run = sweeps._create_trial_run(sweep, t)
        t.state, t.run_id = "started", run.run_id
        runs.update_status(run.path, state="completed", best_val_accuracy=acc, epochs_done=1)
    sweeps._save(sweep)
    at = open_page("pages/runs.py", active_dataset="tiny")
    assert not at.exception, at.exception
    assert at.selectbox(key="sw_pick").value == sweep.sweep_id
    table = _frame(at, "val acc")
    assert list(table["val acc"]) == [0.8, 0.6, 0.5] and list(table["lr"]) == [1e-3, 1e-2, 1e-4]
    imp = _frame(at, "importance")
    assert list(imp["parameter"]) == ["lr"]  # batch did not vary
    assert any('"parcoords"' in c.proto.spec for c in at.get("plotly_chart"))
    assert "mean decrease in impurity" in texts(at)


def test_the_form_queues_a_sweep_that_trains_and_cancel_stops_it():
    make_dataset("long", per_class=30, size=32)
    at = open_page("pages/runs.py", active_dataset="long")
    at.number_input(key="sw_epochs").set_value(500).run()
    at.text_input(key="sw_p_learning_rate").input("1e-3,2e-3").run()
    at.text_input(key="sw_p_batch_size").input("4").run()
    assert "2 trials: lr=0.001 batch=4; lr=0.002 batch=4" in texts(at)
    at.text_input(key="sw_p_dropout").input("0.1").run()
    assert any("builder" in e.value for e in at.error)  # dropout needs the custom preset: said at once
    at.text_input(key="sw_p_dropout").input("").run()
    at.button(key="sw_start").click().run()
    assert not at.exception, at.exception
    (sweep,) = sweeps.list_sweeps()
    assert at.session_state["sw_pick"] == sweep.sweep_id and sweeps.runner_alive()
    first = lambda: sweeps.trial_run(sweeps.get_sweep(sweep.sweep_id).trials[0])  # noqa: E731
    assert wait_for(lambda: (r := first()) is not None and r.state == "running", timeout=120)
    at.run()
    at.button(key=f"sw_cancel_{sweep.sweep_id}").click().run()
    assert not at.exception
    assert "1 pending trial(s) dropped, the running one asked to stop" in texts(at)
    assert wait_for(lambda: jobs.get(first().run_id).state == "stopped", timeout=90)
    assert wait_for(lambda: not sweeps.runner_alive(), timeout=30)
    assert len(runs.list_runs()) == 1


def test_any_page_load_resumes_a_queue_that_has_no_runner():
    """After a Streamlit restart nothing drains the queue until a page loads; the sidebar starts a runner."""
    make_dataset("tiny", per_class=4)
    sweep = sweeps.create_sweep(
        TrainRequest(dataset="tiny", epochs=1, batch_size=4), {"learning_rate": [1e-3, 2e-3]}
    )
    assert not sweeps.runner_alive()
    at = open_page(active_dataset="tiny")  # the Datasets page, not Runs
    assert not at.exception
    assert sweeps.runner_alive()
    assert wait_for(lambda: sweeps.get_sweep(sweep.sweep_id).trials[0].state == "started", timeout=60)
    sweeps.cancel(sweep.sweep_id)
    assert wait_for(lambda: not sweeps.runner_alive(), timeout=120)
    assert [t.state for t in sweeps.get_sweep(sweep.sweep_id).trials] == ["started", "cancelled"]
