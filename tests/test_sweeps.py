"""Sweeps: the space, the on-disk queue (cancel, a killed runner resumed) and real trials trained as tagged runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core import atomic
from core.errors import UserError
from core.training import jobs, runs, sweep_results, sweeps
from core.training.trainer import TrainRequest
from tests.helpers import make_dataset, wait_for

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env={**os.environ},
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_grid_and_random_expand_in_order_and_bad_spaces_are_refused():
    space = sweeps.parse_space(["lr=1e-3,3e-3", "batch=64,128"])
    assert space == {"learning_rate": [1e-3, 3e-3], "batch_size": [64, 128]}
    grid = sweeps.expand(space)
    assert grid == [{"learning_rate": a, "batch_size": b} for a in (1e-3, 3e-3) for b in (64, 128)]
    ranged = sweeps.parse_space(["lr=1e-4:1e-2", "optimizer=adam,sgd"])
    drawn = sweeps.expand(ranged, "random", 5, seed=1)
    assert len(drawn) == 5 and drawn == sweeps.expand(ranged, "random", 5, seed=1)  # seeded
    assert all(1e-4 <= t["learning_rate"] <= 1e-2 and t["optimizer"] in ("adam", "sgd") for t in drawn)
    assert sweeps.expand(space, "random", 99) == grid  # more draws than the grid holds: the grid
    for items, needle in ((["foo=1"], "cannot sweep"), (["lr=abc"], "numbers"), (["batch=1.5"], "whole"),
                          (["lr=1e-3", "lr=1e-2"], "twice"), (["optimizer=adamw"], "optimizer must be"),
                          (["preset=nope"], "unknown preset"), (["lr=1e-2:1e-3"], "low < high")):  # fmt: skip
        with pytest.raises(UserError, match=needle):
            sweeps.parse_space(items)
    with pytest.raises(UserError, match="random search"):
        sweeps.expand(ranged, "grid")
    with pytest.raises(UserError, match="at most"):
        sweeps.expand(sweeps.parse_space(["epochs=" + ",".join(map(str, range(1, 21))), "batch=" + ",".join(
            map(str, range(1, 7)))]))  # fmt: skip


def test_a_trial_that_would_be_refused_refuses_the_whole_sweep_before_anything_exists():
    make_dataset("tiny", per_class=4)
    base = TrainRequest(dataset="tiny", epochs=1)
    with pytest.raises(UserError, match=r"trial 1 \(dropout=0.1\).*builder"):
        sweeps.create_sweep(base, {"dropout": [0.1]})
    with pytest.raises(UserError, match=r"trial 2 \(lr=20\).*learning rate"):
        sweeps.create_sweep(base, {"learning_rate": [1e-3, 20.0]})
    assert sweeps.list_sweeps() == [] and runs.list_runs() == []


def test_cancel_drops_pending_trials_and_no_runner_is_started_for_them():
    make_dataset("tiny", per_class=4)
    sweep = sweeps.create_sweep(TrainRequest(dataset="tiny", epochs=1), {"learning_rate": [1e-3, 2e-3, 3e-3]})
    assert sweeps.pending_work() and sweep.counts()["pending"] == 3
    assert sweeps.get_sweep(sweep.sweep_id).space == {
        "learning_rate": [1e-3, 2e-3, 3e-3]
    }  # survives a reload
    dropped, stopping = sweeps.cancel(sweep.sweep_id)
    assert (dropped, stopping) == (3, [])
    again = sweeps.get_sweep(sweep.sweep_id)
    assert again.cancelled and [t.state for t in again.trials] == ["cancelled"] * 3
    assert not sweeps.pending_work() and sweeps.ensure_runner() is False
    assert sweeps.drain() == 0 and runs.list_runs() == []
    out = cli("sweep", "--status", sweep.sweep_id)
    assert out.returncode == 0 and out.stdout.count("cancelled") == 4, out.stdout
    out = cli("sweep", "--cancel", "sw-zzzzzz")
    assert out.returncode == 2 and out.stderr.startswith("error: not a sweep id")


@pytest.mark.slow
def test_two_trial_grid_trains_two_tagged_runs_and_prints_the_table():
    make_dataset("tiny", per_class=8)
    out = cli("sweep", "--dataset", "tiny", "--grid", "lr=1e-3,3e-3", "batch=8", "--epochs", "1")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    (sweep,) = sweeps.list_sweeps()
    trained = runs.list_runs()
    assert len(trained) == 2 and all(r.state == "completed" for r in trained)
    assert sorted((r.config.sweep_trial, r.config.learning_rate, r.config.batch_size) for r in trained) == [
        (0, 1e-3, 8), (1, 3e-3, 8)]  # fmt: skip
    assert {r.config.sweep for r in trained} == {sweep.sweep_id}
    assert all(f"sweep {sweep.sweep_id} #" in r.short_label() for r in trained)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith(sweep.sweep_id) and "2/2 trials · done" in lines[0]
    assert lines[1].split()[:3] == ["trial", "lr", "batch"]
    rows = sweep_results.table(sweep)
    accs = [r["val acc"] for r in rows]
    assert accs == sorted(accs, reverse=True) and {r["id"] for r in rows} == {r.run_id for r in trained}
    assert all(r["id"] in out.stdout for r in rows)
    assert "needs at least 3 completed trials" in sweep_results.importance(sweep).message
    assert sweep_results.parallel_figure(sweep) is not None


def test_device_slots_are_one_cpu_slot_or_one_per_named_gpu(monkeypatch):
    monkeypatch.setenv("CONVNET_SWEEP_GPUS", "")
    assert sweeps.device_slots() == [None]
    monkeypatch.setenv("CONVNET_SWEEP_GPUS", "0, 1,")
    assert sweeps.device_slots() == ["0", "1"]


@pytest.mark.slow
def test_with_two_gpu_slots_two_trials_train_side_by_side_each_on_its_own_device(monkeypatch):
    """On a CPU machine CUDA_VISIBLE_DEVICES is harmless, so two named slots show the scheduling for real."""
    make_dataset("tiny", per_class=8)
    monkeypatch.setenv("CONVNET_SWEEP_GPUS", "0,1")
    out = cli("sweep", "--dataset", "tiny", "--grid", "lr=1e-3,3e-3", "batch=8", "--epochs", "2")
    assert out.returncode == 0, out.stderr
    trained = sorted(runs.list_runs(), key=lambda r: r.config.sweep_trial or 0)
    assert [r.state for r in trained] == ["completed", "completed"]
    assert [r.status.get("sweep_device") for r in trained] == ["0", "1"]
    first, second = (r.status for r in trained)
    assert second["launched"] < first["ended"], "the second trial waited for the first"
    assert "on GPU 1" in out.stderr + out.stdout


@pytest.mark.slow
def test_a_queue_left_by_a_killed_runner_resumes_and_finishes():
    make_dataset("tiny", per_class=8)
    sweep = sweeps.create_sweep(TrainRequest(dataset="tiny", epochs=1, batch_size=8),
                                {"learning_rate": [1e-3, 2e-3]})  # fmt: skip
    assert sweeps.ensure_runner() is True and sweeps.runner_alive()
    assert sweeps.ensure_runner() is False  # one runner at a time
    assert wait_for(lambda: sweeps.get_sweep(sweep.sweep_id).trials[0].run_id, timeout=60)
    pid = atomic.read_json(sweeps.root() / "runner.json")["pid"]
    os.kill(pid, signal.SIGKILL)  # the runner this test started; its trial's job lives in its own session
    for proc in sweeps._runner_proc:
        proc.wait(timeout=30)
    assert not sweeps.runner_alive()
    assert sweeps.get_sweep(sweep.sweep_id).trials[1].state == "pending"
    assert sweeps.ensure_runner() is True  # what a page does on load
    done = sweeps.wait(sweep.sweep_id, timeout_s=240)
    assert done.done()
    trained = runs.list_runs()
    assert len(trained) == 2, [r.run_id for r in trained]
    assert all(jobs.get(r.run_id).state == "completed" for r in trained)
    assert sorted(r.config.learning_rate for r in trained) == [1e-3, 2e-3]
    assert wait_for(lambda: not sweeps.runner_alive(), timeout=30)  # the runner ends with the queue


@pytest.mark.slow
def test_cancel_stops_the_running_trial_and_drops_the_rest():
    make_dataset("long", per_class=30, size=32)
    sweep = sweeps.create_sweep(TrainRequest(dataset="long", epochs=500, batch_size=4),
                                {"learning_rate": [1e-3, 2e-3, 3e-3]})  # fmt: skip
    assert sweeps.ensure_runner()
    first = lambda: sweeps.trial_run(sweeps.get_sweep(sweep.sweep_id).trials[0])  # noqa: E731
    assert wait_for(lambda: (r := first()) is not None and r.status.get("epochs_done", 0) >= 1, timeout=120)
    dropped, stopping = sweeps.cancel(sweep.sweep_id)
    assert dropped == 2 and stopping == [first().run_id]
    assert wait_for(lambda: first().state == "stopped", timeout=60)
    assert first().has_model  # stopped the polite way: the model was kept
    assert wait_for(lambda: not sweeps.runner_alive(), timeout=30)
    assert len(runs.list_runs()) == 1
    assert [r["state"] for r in sweep_results.table(sweeps.get_sweep(sweep.sweep_id))] == [
        "stopped", "cancelled", "cancelled"]  # fmt: skip


def test_importance_finds_the_setting_that_decides_accuracy():
    """Planted: accuracy rises with the learning rate and ignores the batch size; the forest must say so."""
    make_dataset("tiny", per_class=4)
    space = {"learning_rate": [1e-4, 3e-4, 1e-3, 3e-3], "batch_size": [8, 16]}
    sweep = sweeps.create_sweep(TrainRequest(dataset="tiny", epochs=1), space)
    for t in sweep.trials:  # finished trials written as a job would leave them, without training
        run = sweeps._create_trial_run(sweep, t)
        t.state, t.run_id = "started", run.run_id
        acc = 0.5 + 0.1 * space["learning_rate"].index(t.params["learning_rate"]) + 0.001 * (t.index % 2)
        runs.update_status(run.path, state="completed", best_val_accuracy=acc, epochs_done=1)
    sweeps._save(sweep)
    imp = sweep_results.importance(sweep)
    assert imp.trials == 8 and not imp.message
    assert [r["parameter"] for r in imp.rows] == ["lr", "batch"]
    assert imp.rows[0]["importance"] > 0.8 and imp.rows[0]["correlation"] > 0.9
    table = sweep_results.table(sweep)
    assert [r["lr"] for r in table[:2]] == [3e-3, 3e-3] and table[0]["val acc"] == 0.801
    fig = sweep_results.parallel_figure(sweep)
    dims = fig.data[0].dimensions
    assert [d.label for d in dims] == ["lr (log10)", "batch (log10)", "val acc"] and len(dims[2].values) == 8
    assert all(r.short_label().count(sweep.sweep_id) == 1 for r in runs.list_runs())


def test_listing_sweeps_and_refusing_one_do_not_import_tensorflow():
    code = ("import sys\nfrom core.__main__ import main\nrc = [main(['sweep', '--status']), "
            "main(['sweep', '--dataset', 'fashion-mnist-sample', '--grid', 'lr=20'])]\n"
            "print(rc, [m for m in ('tensorflow', 'keras') if m in sys.modules])")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ}, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == "[0, 2] []", out
    refused = cli("sweep", "--dataset", "fashion-mnist-sample", "--grid", "lr=20")
    assert refused.returncode == 2 and refused.stderr.startswith(
        "error: trial 1 (lr=20): learning rate must be in"
    )
