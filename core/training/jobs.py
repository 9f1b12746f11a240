"""Training jobs as separate processes: the UI starts them, polls their run directory, and asks them to stop.

A process owns TensorFlow's memory, survives a Streamlit rerun or restart, and can be stopped or killed cleanly;
liveness comes from the pid plus its start time (psutil, so macOS and Windows work too), so a dead job is never
shown as running forever and a reused pid is never taken for ours.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from core import atomic
from core.errors import UserError
from core.paths import REPO_ROOT
from core.training import runs, spare
from core.training.runs import process_start_time

if TYPE_CHECKING:  # core.training.trainer imports Keras; listing and stopping runs must not wait for it
    from core.training.trainer import TrainRequest


def launch(run: runs.Run, env_extra: dict[str, str] | None = None, **status: Any) -> runs.Run:
    """Start `python -m core train --run ID` in its own session, output to the run's job.log (`env_extra`: e.g. a
    sweep trial's CUDA_VISIBLE_DEVICES, so trials on a several-GPU machine each get one GPU; `status`: recorded
    with the pid in the same write).

    The run stays queued: the job itself takes the run's lock and marks it running (core.training.trainer.train_run).
    A ready warm spare (core.training.spare) takes the run when there is one: TensorFlow is already started there.
    """
    current = runs.get_run(run.run_id)
    if current.state != "queued" or is_alive(current.status):
        raise UserError(f"run {run.run_id} is already {current.state}; start a new run")
    if not env_extra and run.config.strategy == "default":
        marked: dict[str, Any] = {}

        def mark(**proc: Any) -> None:
            marked.update(
                runs.update_status(run.path, launched=time.time(), warm_start=True, **proc, **status)
            )

        if spare.claim(run.run_id, mark):
            return runs.Run(run.run_id, run.path, run.config, marked)
    log = open(run.path / "job.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "train", "--run", run.run_id],
        cwd=REPO_ROOT, env={**spare.job_env(), **(env_extra or {})}, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    log.close()
    status = runs.update_status(
        run.path, pid=proc.pid, pid_start=process_start_time(proc.pid), launched=time.time(), **status
    )
    _children[run.run_id] = proc
    return runs.Run(run.run_id, run.path, run.config, status)


_children: dict[str, subprocess.Popen] = {}


def start(req: TrainRequest) -> runs.Run:
    """Resolve the request (UserError on bad input), create the run, start its process."""
    from core.training.trainer import start_run

    return launch(start_run(req))


def is_alive(status: dict) -> bool:
    """The job's process exists, is not a zombie, and started when the job recorded (not a reused pid)."""
    pid = status.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    for child in list(_children.values()):
        if child.pid == pid:
            child.poll()  # reap our own finished children
    return runs.process_matches(pid, status.get("pid_start"), strict=False)


def refresh(run: runs.Run, grace_s: float = 20.0) -> runs.Run:
    """Mark a queued/running run whose process is gone as failed (or stopped, if a stop was asked for)."""
    if run.state not in runs.ACTIVE_STATES:
        return run
    if is_alive(run.status):
        return run
    launched = run.status.get("launched") or run.status.get("created") or 0
    if not run.status.get("pid") and time.time() - launched < grace_s:
        return run  # being launched right now
    if run.status.get("pid") and run.state == "queued" and time.time() - launched < 2:
        return run
    state = "stopped" if runs.stop_requested(run.path) else "failed"
    try:
        status = runs.update_status(run.path, state=state, ended=time.time(),
                                    error=None if state == "stopped" else "training process ended unexpectedly")  # fmt: skip
    except FileNotFoundError:  # deleted meanwhile: leave it deleted
        return run
    return runs.Run(run.run_id, run.path, run.config, status)


def list_runs() -> list[runs.Run]:
    """Every run, liveness checked; a finished run's leftovers from a killed save are swept on the way."""
    out = []
    for r in runs.list_runs():
        r = refresh(r)
        if r.state not in runs.ACTIVE_STATES:
            atomic.sweep_temp_files(r.path)
        out.append(r)
    return out


def get(run_id: str) -> runs.Run:
    return refresh(runs.get_run(run_id))


def stop(run_id: str) -> None:
    """Ask politely: the job checks the stop file every batch and saves its model before ending."""
    run = runs.get_run(run_id)  # an unknown id is a one-line error and creates nothing
    runs.request_stop(run_id)
    if is_alive(run.status):
        try:
            os.kill(int(run.status["pid"]), signal.SIGINT)
        except OSError:
            pass


def kill(run_id: str) -> None:
    run = runs.get_run(run_id)
    if is_alive(run.status):
        os.kill(int(run.status["pid"]), signal.SIGKILL)


def wait(run_id: str, timeout_s: float = 600, poll_s: float = 0.5) -> runs.Run:
    """Block until the run leaves queued/running (tests, CLI)."""
    deadline = time.time() + timeout_s
    while True:
        run = get(run_id)
        if run.state not in runs.ACTIVE_STATES or time.time() > deadline:
            return run
        time.sleep(poll_s)
