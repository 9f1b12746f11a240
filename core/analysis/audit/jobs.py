"""An audit as a background process (`python -m core audit ... --status-dir DIR`), so the Improve page never waits
on minutes of work in its script thread and a page refresh finds the job again from disk.

DIR (`<runs>/.cache/audit/jobs/<dataset+run hash>/`) holds `status.json` (state, stage, fraction, error, pid and
its start time) and `job.log`. A job whose process is gone is reported failed, never "running" forever; liveness is
`core.training.jobs.is_alive` (pid + start time, so a reused pid is never taken for ours).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from core import atomic, options
from core.analysis.audit import cache
from core.errors import UserError
from core.paths import REPO_ROOT
from core.training import jobs
from core.training.runs import process_start_time

STATUS_FILE = "status.json"
LAUNCH_GRACE_S = 20.0  # a job just started may not have its pid written yet
WRITE_EVERY_S = 0.5


def status_dir(dataset: str, run_id: str | None = None) -> Path:
    tag = hashlib.sha256(f"{dataset}\0{run_id or ''}".encode()).hexdigest()[:16]
    return cache.cache_dir() / "jobs" / tag


def _read(d: Path) -> dict[str, Any]:
    saved = atomic.read_json(d / STATUS_FILE, {})
    return saved if isinstance(saved, dict) else {}


def write_status(d: Path, **fields: Any) -> None:
    """Merge fields into the job's status.json (the job process calls this as it goes)."""
    atomic.write_json(d / STATUS_FILE, {**_read(d), **fields, "updated": time.time()})


def _running(saved: dict[str, Any]) -> bool:
    if saved.get("state") != "running":
        return False
    if jobs.is_alive(saved):
        return True
    return not saved.get("pid") and time.time() - float(saved.get("launched") or 0) < LAUNCH_GRACE_S


def start_audit_job(
    dataset: str, run_id: str | None = None, *, folds: int = options.DEFAULT_AUDIT_FOLDS
) -> Path:
    """Start the audit in its own process (unless one for the same dataset and run is running); its status dir."""
    from core.analysis.audit.runner import check_request

    check_request(dataset, run_id, folds)  # an unknown dataset or run is refused before anything is written
    d = status_dir(dataset, run_id)
    if _running(_read(d)):
        return d
    d.mkdir(parents=True, exist_ok=True)
    atomic.write_json(d / STATUS_FILE, {"state": "running", "stage": "starting", "fraction": 0.0, "error": None,
                                        "dataset": dataset, "run_id": run_id, "launched": time.time()})  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "core",
        "audit",
        "--dataset",
        dataset,
        "--folds",
        str(folds),
        "--status-dir",
        str(d),
    ]
    if run_id:
        cmd += ["--run", run_id]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(d / "job.log", "ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    write_status(d, pid=proc.pid, pid_start=process_start_time(proc.pid))
    _children.append(proc)
    return d


_children: list[subprocess.Popen] = []


def _reap() -> None:
    for p in list(_children):
        if p.poll() is not None:
            _children.remove(p)


def audit_status(dataset: str, run_id: str | None = None) -> dict[str, Any]:
    """{"state": running|done|failed|none, "stage", "fraction", "error"}; "done" only while the stored result
    still matches the dataset's files (a relabel since makes it "none" again)."""
    _reap()
    saved = _read(status_dir(dataset, run_id))
    state = saved.get("state")
    out = {"state": "none", "stage": "", "fraction": 0.0, "error": None}
    if state == "running":
        if _running(saved):
            return {**out, "state": "running", "stage": str(saved.get("stage", "")),
                    "fraction": float(saved.get("fraction") or 0.0)}  # fmt: skip
        return {**out, "state": "failed", "error": "the audit process ended unexpectedly (see its job.log)"}
    if state == "failed":
        return {**out, "state": "failed", "stage": str(saved.get("stage", "")), "error": saved.get("error")}
    if cache.cached_audit(dataset, run_id) is not None:
        return {**out, "state": "done", "stage": "done", "fraction": 1.0}
    return out


class StatusWriter:
    """The job's progress callback: status.json at most every WRITE_EVERY_S, and at every new stage."""

    def __init__(self, d: Path) -> None:
        self.d = d
        self.last = 0.0
        self.stage = ""

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        if stage == self.stage and now - self.last < WRITE_EVERY_S:
            return
        self.stage, self.last = stage, now
        try:
            write_status(self.d, stage=stage, fraction=round(float(fraction), 4))
        except OSError:
            pass

    def finish(self, error: str | None) -> None:
        try:
            if error is None:
                write_status(self.d, state="done", stage="done", fraction=1.0, error=None, ended=time.time())
            else:
                write_status(self.d, state="failed", error=error, ended=time.time())
        except OSError:
            pass


def check_status_dir(path: str) -> Path:
    """`--status-dir` must be one of ours (under the audit cache), never an arbitrary folder to write into."""
    d = Path(path).resolve()
    root = (cache.cache_dir() / "jobs").resolve()
    if d.parent != root:
        raise UserError(f"--status-dir must be a folder in {root}")
    return d
