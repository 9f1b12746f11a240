"""Distributed training for real: MirroredStrategy over two logical CPU devices, and two MultiWorkerMirroredStrategy
workers on 127.0.0.1 (each its own process, as on two machines), the chief alone writing the run directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.data import datasets
from core.errors import UserError
from core.models import loading
from core.training import distribute, runs, trainer
from tests.helpers import make_dataset

REPO = Path(__file__).resolve().parents[1]


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _tf_config(ports: list[int], index: int) -> str:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def _cli(args: list[str], env: dict, out: Path) -> subprocess.Popen:
    """`python -m core ...` with stdout and stderr in files (pipes could fill while we wait on the other worker)."""
    with open(out.with_suffix(".out"), "w") as stdout, open(out.with_suffix(".err"), "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "core", *args], cwd=REPO, env=env, stdout=stdout, stderr=stderr
        )


def _finish(
    procs: dict[str, subprocess.Popen], logs: Path, timeout: float = 240
) -> dict[str, tuple[int, str, str]]:
    """Wait for every process; on a timeout kill them all (a hung collective must not hang the suite)."""
    deadline = time.time() + timeout
    try:
        for p in procs.values():
            p.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        for p in procs.values():
            p.kill()
            p.wait()
        pytest.fail(
            "workers did not finish: " + " | ".join((logs / f"{n}.err").read_text()[-500:] for n in procs)
        )
    return {
        n: (p.returncode, (logs / f"{n}.out").read_text(), (logs / f"{n}.err").read_text())
        for n, p in procs.items()
    }


def _predicts(run: runs.Run) -> None:
    """The run's model loads and gives class probabilities for the dataset's own images."""
    lm = loading.load_run_model(run)
    h, w, c = run.input_shape
    x = datasets.load_splits(run.config.dataset, (h, w), c, splits=("val",))["val"].x.astype(np.float32)
    p = np.asarray(lm.model(x, training=False))
    assert len(x) >= 3 and p.shape == (len(x), len(run.class_names)) and np.all(np.isfinite(p))
    assert np.allclose(p.sum(axis=1), 1, atol=1e-4)


def test_tf_config_is_checked_before_anything_is_written(isolated_dirs, monkeypatch, tmp_path):
    make_dataset("tiny", per_class=4)
    run = trainer.start_run(trainer.TrainRequest(dataset="tiny", epochs=1, strategy="multiworker"))
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    rc, out, err = _finish(
        {"missing": _cli(["train", "--run", run.run_id], env, tmp_path / "missing")}, tmp_path
    )["missing"]
    assert (
        rc == 2 and err.strip().count("\n") == 0 and err.startswith("error: ") and "needs TF_CONFIG" in err
    ), err
    assert "Traceback" not in err
    monkeypatch.setenv("TF_CONFIG", "{cluster:")
    with pytest.raises(UserError, match="not valid JSON"):  # what the CLI prints as `error: ...`, exit 2
        trainer.train_run(run.path)
    assert runs.get_run(run.run_id).state == "queued"
    assert {p.name for p in run.path.iterdir()} == {"config.json", "status.json"}
    cluster = {"worker": ["a:1", "b:2"]}
    for bad, msg in [({"cluster": cluster, "task": {"type": "worker", "index": 2}}, "not in the cluster"),
                     ({"cluster": cluster, "task": {"type": "ps", "index": 0}}, "not supported"),
                     ({"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}, "host:port"),
                     ({"cluster": cluster}, "not valid JSON")]:  # fmt: skip
        monkeypatch.setenv("TF_CONFIG", json.dumps(bad))
        with pytest.raises(UserError, match=msg):
            distribute.is_chief("multiworker")
    with_chief = {**cluster, "chief": ["c:3"]}
    for hosts, kind, index, chief in [(cluster, "worker", 0, True), (cluster, "worker", 1, False),
                                      (with_chief, "worker", 0, False), (with_chief, "chief", 0, True)]:  # fmt: skip
        monkeypatch.setenv(
            "TF_CONFIG", json.dumps({"cluster": hosts, "task": {"type": kind, "index": index}})
        )
        assert distribute.is_chief("multiworker") is chief
    assert distribute.is_chief("mirrored") and distribute.is_chief("default")


def test_mirrored_over_two_logical_cpu_devices(isolated_dirs, tmp_path):
    make_dataset("mir", per_class=6)
    env = {**os.environ, distribute.LOGICAL_CPUS_ENV: "2"}
    args = ["train", "--dataset", "mir", "--strategy", "mirrored", "--epochs", "1", "--batch-size", "8"]
    rc, out, err = _finish({"mirrored": _cli(args, env, tmp_path / "mirrored")}, tmp_path)["mirrored"]
    assert rc == 0, err[-2000:]
    run = runs.get_run(out.strip().splitlines()[-1])
    assert run.state == "completed" and run.status["strategy"] == "mirrored"
    assert run.status["replicas"] == 2, "the batch was not split over two devices"
    assert run.status["epochs_done"] == 1 and run.config.batch_size == 8  # global: 4 images per device
    _predicts(run)


def _two_workers(run: runs.Run, tmp_path: Path, worker_runs: Path) -> dict[str, subprocess.Popen]:
    """Worker 0 (the chief) uses the shared runs dir; worker 1 acts as another machine: its own runs dir holding
    only a copy of config.json, so we can see it leaves nothing behind."""
    (worker_runs / run.run_id).mkdir(parents=True)
    (worker_runs / run.run_id / "config.json").write_bytes((run.path / "config.json").read_bytes())
    ports = _free_ports(2)
    chief_env = {**os.environ, "TF_CONFIG": _tf_config(ports, 0)}
    worker_env = {**os.environ, "TF_CONFIG": _tf_config(ports, 1), "CONVNET_RUNS_DIR": str(worker_runs)}
    return {"chief": _cli(["train", "--run", run.run_id], chief_env, tmp_path / "chief"),
            "worker": _cli(["train", "--run", run.run_id], worker_env, tmp_path / "worker")}  # fmt: skip


def test_two_workers_train_one_epoch_and_only_the_chief_writes_the_run(isolated_dirs, tmp_path):
    make_dataset("duo", per_class=8)
    run = trainer.start_run(
        trainer.TrainRequest(dataset="duo", epochs=1, batch_size=8, strategy="multiworker")
    )
    worker_runs = tmp_path / "worker-runs"
    done = _finish(_two_workers(run, tmp_path, worker_runs), tmp_path)
    for name, (rc, out, err) in done.items():
        assert rc == 0, (name, err[-2000:])
        assert out.strip().splitlines()[-1] == run.run_id
    assert sum(line.startswith("epoch ") for line in done["chief"][1].splitlines()) == 1
    assert not any(line.startswith("epoch ") for line in done["worker"][1].splitlines())
    final = runs.get_run(run.run_id)
    assert final.state == "completed" and final.status["epochs_done"] == 1, final.status
    assert (
        final.status["replicas"] == 2 and final.status["workers"] == 2 and final.status["task"] == "worker 0"
    )
    epochs, _ = runs.read_progress(final.path)
    assert [e["epoch"] for e in epochs] == [1], "someone besides the chief wrote progress"
    _predicts(final)
    # the non-chief saved its model too (TF's rule) but only into a scratch dir it removed
    assert [p.name for p in (worker_runs / run.run_id).iterdir()] == ["config.json"]
    # .cache holds decoded images kept for the next run (core.data.decode_cache); anything else would be a leftover
    assert [p.name for p in worker_runs.iterdir() if p.name != ".cache"] == [run.run_id], (
        "the worker's scratch dir was left behind"
    )
    assert [p.name for p in isolated_dirs[1].iterdir() if p.name != ".cache"] == [run.run_id]


def test_stop_file_on_the_chief_stops_every_worker(isolated_dirs, tmp_path):
    make_dataset("halt", per_class=8)
    run = trainer.start_run(
        trainer.TrainRequest(dataset="halt", epochs=300, batch_size=4, strategy="multiworker")
    )
    procs = _two_workers(run, tmp_path, tmp_path / "worker-runs")
    deadline = time.time() + 180
    while not runs.read_progress(run.path)[0] and time.time() < deadline and procs["chief"].poll() is None:
        time.sleep(0.2)
    runs.request_stop(run.run_id)
    done = _finish(procs, tmp_path, timeout=120)  # a worker left in an all-reduce would time out here
    assert done["chief"][0] == 0 and done["worker"][0] == 0, (
        done["chief"][2][-1500:],
        done["worker"][2][-1500:],
    )
    final = runs.get_run(run.run_id)
    assert final.state == "stopped" and 1 <= final.status["epochs_done"] < 300, final.status
    _predicts(final)
