"""A run is a directory; everything in it but the model reads without TensorFlow, so listing runs is instant.

runs/<run_id>/config.json     what was asked for, resolved (class names, input shape, head, hyperparameters)
runs/<run_id>/status.json     queued | running | completed | stopped | failed, pid, timings, one-line error
runs/<run_id>/progress.jsonl  one JSON line per epoch, batch lines throttled to ~2 a second
runs/<run_id>/model.keras     written atomically after every epoch and at the end
runs/<run_id>/stop            present when someone asked the job to stop
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import atomic
from core.errors import UserError
from core.paths import runs_dir

ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("completed", "stopped", "failed")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


@dataclass
class Run:
    run_id: str
    path: Path
    config: dict[str, Any]
    status: dict[str, Any]

    @property
    def state(self) -> str:
        return self.status.get("state", "unknown")

    @property
    def model_path(self) -> Path:
        return self.path / "model.keras"

    @property
    def has_model(self) -> bool:
        return self.model_path.is_file()

    @property
    def class_names(self) -> list[str]:
        return list(self.config.get("class_names", []))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.config["input_shape"])  # type: ignore[return-value]

    @property
    def output_kind(self) -> str:
        return self.config.get("output_kind", "softmax")

    def label(self) -> str:
        acc = self.status.get("best_val_accuracy")
        acc_s = f", val acc {acc:.1%}" if isinstance(acc, int | float) else ""
        return f"{self.run_id} ({self.config.get('preset')} on {self.config.get('dataset')}, {self.state}{acc_s})"


def new_run_id(preset: str, dataset: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    clean = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{preset}-{dataset}")[:60]
    return f"{stamp}-{clean}-{secrets.token_hex(2)}"


def run_path(run_id: str) -> Path:
    if not RUN_ID_RE.match(run_id or ""):
        raise UserError(f"not a run id: {run_id!r}")
    return runs_dir() / run_id


def create_run(config: dict[str, Any]) -> Run:
    """Write config.json and a queued status; the job fills in the rest."""
    run_id = config.get("run_id") or new_run_id(config.get("preset", "run"), config.get("dataset", "data"))
    config = {**config, "run_id": run_id}
    path = run_path(run_id)
    path.mkdir(parents=True, exist_ok=False)
    atomic.write_json(path / "config.json", config)
    status = {"state": "queued", "created": time.time()}
    atomic.write_json(path / "status.json", status)
    return Run(run_id, path, config, status)


def update_status(path: Path, **fields: Any) -> dict[str, Any]:
    """Merge fields into status.json (only the job and the liveness check write it)."""
    status = atomic.read_json(path / "status.json", {}) or {}
    status.update(fields)
    atomic.write_json(path / "status.json", status)
    return status


def load_run(path: Path) -> Run | None:
    config = atomic.read_json(path / "config.json")
    if not isinstance(config, dict):
        return None
    status = atomic.read_json(path / "status.json", {}) or {}
    return Run(path.name, path, config, status)


def get_run(run_id: str) -> Run:
    run = load_run(run_path(run_id))
    if run is None:
        raise UserError(f"no run {run_id!r}; `python -m core runs` lists them")
    return run


def list_runs() -> list[Run]:
    """Newest first; directories without a readable config.json are skipped."""
    root = runs_dir()
    if not root.is_dir():
        return []
    runs = [r for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") if (r := load_run(p))]
    return sorted(runs, key=lambda r: r.status.get("created", 0), reverse=True)


def read_progress(path: Path) -> tuple[list[dict], dict | None]:
    """(epoch records, latest batch record); a half-written last line is ignored."""
    epochs: list[dict] = []
    last_batch = None
    try:
        text = (path / "progress.jsonl").read_text()
    except OSError:
        return epochs, None
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("type") == "epoch":
            epochs.append(rec)
        elif rec.get("type") == "batch":
            last_batch = rec
    if last_batch and epochs and epochs[-1]["t"] > last_batch["t"]:
        last_batch = None
    return epochs, last_batch


def append_progress(path: Path, record: dict) -> None:
    with open(path / "progress.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()


def request_stop(run_id: str) -> None:
    path = run_path(run_id)
    atomic.write_bytes(path / "stop", b"stop\n")


def stop_requested(path: Path) -> bool:
    return (path / "stop").exists()


def delete_run(run_id: str) -> None:
    run = get_run(run_id)
    if run.state in ACTIVE_STATES:
        raise UserError(f"run {run_id} is still {run.state}; stop it first")
    # rename first so a half-deleted run never shows up in the list
    trash = run.path.with_name(f".deleted-{run.path.name}-{secrets.token_hex(2)}")
    os.replace(run.path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def best_val_accuracy(epochs: list[dict]) -> float | None:
    vals = [e["val_accuracy"] for e in epochs if isinstance(e.get("val_accuracy"), int | float)]
    return max(vals) if vals else None


def duration(status: dict) -> float | None:
    start = status.get("started")
    if not start:
        return None
    return (status.get("ended") or time.time()) - start
