"""Training jobs for real: a complete run on disk, clean stop, SIGKILL safety, target accuracy, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.errors import UserError
from core.models import loading
from core.training import jobs, runs, trainer
from tests.helpers import make_dataset, train_tiny_run, wait_for

REPO = Path(__file__).resolve().parents[1]


def test_one_epoch_run_writes_a_complete_run_directory():
    make_dataset("tiny", per_class=10)
    run = train_tiny_run("tiny", epochs=1)
    files = {p.name for p in run.path.iterdir()}
    assert {"config.json", "status.json", "progress.jsonl", "model.keras"} <= files
    assert not [f for f in files if f.startswith(".")], "temp files left behind"
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["class_names"] == ["circle", "square", "stripes"] and cfg["input_shape"] == [16, 16, 1]
    assert cfg["output_kind"] == "softmax" and cfg["preset"] == "fast"
    epochs, _ = runs.read_progress(run.path)
    assert [e["epoch"] for e in epochs] == [1] and {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(
        epochs[0]
    )
    assert run.status["state"] == "completed" and run.status["epochs_done"] == 1
    lm = loading.load_run_model(run)
    assert lm.class_names == cfg["class_names"] and lm.input_shape == (16, 16, 1)
    assert loading.read_meta(run.model_path)["class_names"] == cfg["class_names"]
    x = np.zeros((2, 16, 16, 1), np.float32)
    np.testing.assert_allclose(
        np.asarray(lm.model(x, training=False)), lm.model.predict(x, verbose=0), atol=1e-5
    )


def test_target_accuracy_and_early_stopping_end_training():
    make_dataset("easy", per_class=16)
    run = train_tiny_run("easy", epochs=30, target_accuracy=0.5, learning_rate=0.01)
    epochs, _ = runs.read_progress(run.path)
    assert len(epochs) < 30 and "reached target accuracy" in run.status["note"]
    assert epochs[-1]["val_accuracy"] >= 0.5
    run2 = train_tiny_run("easy", epochs=30, early_stopping=1, learning_rate=0.5, optimizer="sgd")
    assert run2.status["epochs_done"] < 30


def test_class_weights_recorded_and_bad_requests_rejected():
    make_dataset("w", per_class=6)
    run = train_tiny_run("w", class_weights="balanced")
    assert run.status["class_weight_values"] == {"0": 1.0, "1": 1.0, "2": 1.0}
    for bad, msg in [(dict(epochs=0), "epochs"), (dict(learning_rate=-1.0), "learning rate"),
                     (dict(val_split=1.5), "validation split"), (dict(preset="nope"), "unknown preset"),
                     (dict(optimizer="adagrad"), "optimizer"), (dict(class_weights="x"), "class weights")]:  # fmt: skip
        with pytest.raises(UserError, match=msg):
            trainer.resolve(trainer.TrainRequest(dataset="w", **bad))
    with pytest.raises(UserError, match="unknown dataset"):
        trainer.resolve(trainer.TrainRequest(dataset="missing"))


def test_failure_inside_the_job_is_a_failed_status_not_a_crash(isolated_dirs):
    make_dataset("gone", per_class=4)
    run = trainer.start_run(trainer.TrainRequest(dataset="gone", epochs=1))
    import shutil

    shutil.rmtree(isolated_dirs[0] / "gone")
    status = trainer.train_run(run.path)
    assert status["state"] == "failed" and "unknown dataset" in status["error"]


def _slow_job(name: str) -> runs.Run:
    make_dataset(name, per_class=40, size=32)
    return jobs.start(trainer.TrainRequest(dataset=name, preset="fast", epochs=200, batch_size=4))


def test_stop_request_ends_a_job_as_stopped_with_a_loadable_model():
    run = _slow_job("stopme")
    assert wait_for(lambda: runs.read_progress(run.path)[1] is not None, 120), "job never reported a batch"
    jobs.stop(run.run_id)
    final = jobs.wait(run.run_id, timeout_s=120)
    assert final.state == "stopped", final.status
    assert final.status["epochs_done"] < 200
    loading.load_run_model(final)  # raises if unloadable


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under a run folder (the time-lapse is a sub-folder) with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_sigkill_leaves_no_model_that_fails_to_load_and_is_marked_failed():
    make_dataset("earlier", per_class=6)
    earlier = train_tiny_run("earlier")
    before = _files(earlier.path)
    run = _slow_job("killme")
    assert wait_for(lambda: (run.path / "model.keras").exists(), 180), "no epoch finished"
    time.sleep(0.3)
    jobs.kill(run.run_id)
    assert wait_for(lambda: jobs.get(run.run_id).state == "failed", 30)
    final = jobs.get(run.run_id)
    assert "ended unexpectedly" in final.status["error"]
    loading.load_run_model(final)
    # a half-written temp model, if the kill landed mid-save, is never the model.keras a reader opens
    for tmp in run.path.glob(".model.keras.*"):
        assert tmp.name != "model.keras"
    # every earlier run is intact and loadable
    assert _files(earlier.path) == before
    assert jobs.get(earlier.run_id).state == "completed"
    loading.load_run_model(jobs.get(earlier.run_id))


def test_cli_train_prints_epochs_and_run_id_last(isolated_dirs):
    make_dataset("cli", per_class=6)
    env = {**os.environ}
    out = subprocess.run([sys.executable, "-m", "core", "train", "--dataset", "cli", "--epochs", "2", "--batch-size", "8"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith("2") and runs.get_run(lines[-1]).state == "completed"
    assert sum(line.startswith("epoch ") for line in lines) == 2
    listing = subprocess.run([sys.executable, "-m", "core", "runs"], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
    assert lines[-1] in listing.stdout and "completed" in listing.stdout
    bad = subprocess.run([sys.executable, "-m", "core", "train", "--dataset", "nope"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "unknown dataset" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_dead_job_is_never_running_forever():
    make_dataset("dead", per_class=3)
    run = trainer.start_run(trainer.TrainRequest(dataset="dead", epochs=1))
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    runs.update_status(
        run.path, state="running", pid=proc.pid, pid_start=trainer.process_start_time(proc.pid)
    )
    assert jobs.get(run.run_id).state == "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert jobs.get(run.run_id).state == "failed"
    # a pid reused by some other process is not our job
    runs.update_status(run.path, state="running", pid=os.getpid(), pid_start=1.0)
    assert jobs.get(run.run_id).state == "failed"
