"""A run is a directory; everything in it but the model reads without TensorFlow, so listing runs is instant.

runs/<run_id>/config.json     what was asked for, resolved (class names, input shape, head, hyperparameters)
runs/<run_id>/status.json     queued | running | completed | stopped | failed, pid, timings, one-line error
runs/<run_id>/progress.jsonl  one JSON line per epoch, batch lines throttled to ~2 a second
runs/<run_id>/model.keras     written atomically after every epoch and at the end
runs/<run_id>/stop            present when someone asked the job to stop
runs/<run_id>/label.json      the person's name, note and tags for the run (status.json is the job's alone)
runs/<run_id>/train.lock      held by the one process training the run
runs/.trash/<run_id>          deleted runs, until restored (core.data.trash)
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from core import atomic
from core.data import trash
from core.errors import UserError
from core.paths import runs_dir
from core.training.run_config import RunConfig

ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("completed", "stopped", "failed")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
LABEL_FILE = "label.json"
MAX_NAME = 80
MAX_NOTE = 2000
MAX_TAG = 40
MAX_TAGS = 20


@dataclass
class Run:
    run_id: str
    path: Path
    config: RunConfig
    status: dict[str, Any]
    _label: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.config = RunConfig.from_dict(self.config)  # a plain dict (tests, old callers) becomes typed

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
        return list(self.config.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.config.input_shape

    @property
    def output_kind(self) -> str:
        return self.config.output_kind

    def _labels(self) -> dict[str, Any]:
        if self._label is None:
            raw = atomic.read_json(self.path / LABEL_FILE, {})
            self._label = raw if isinstance(raw, dict) else {}
        return self._label

    @property
    def name(self) -> str:
        """The person's name for the run, or "" (short_label then uses the start time)."""
        value = self._labels().get("name")
        return value if isinstance(value, str) else ""

    @property
    def note(self) -> str:
        value = self._labels().get("note")
        return value if isinstance(value, str) else ""

    @property
    def tags(self) -> list[str]:
        value = self._labels().get("tags")
        return [t for t in value if isinstance(t, str)] if isinstance(value, list) else []

    @property
    def sweep_label(self) -> str:
        """ "sweep sw-1a2b3c #2" for a sweep's trial, "" for an ordinary run."""
        cfg = self.config
        if not cfg.sweep:
            return ""
        return f"sweep {cfg.sweep}" + (f" #{cfg.sweep_trial + 1}" if cfg.sweep_trial is not None else "")

    @property
    def warnings(self) -> list[str]:
        """Training-health warnings the job left in status.json (NaN loss, chance-level accuracy, ...)."""
        value = self.status.get("warnings")
        return [str(w) for w in value] if isinstance(value, list) else []

    def short_label(self) -> str:
        """name · preset · dataset · (sweep) · val acc · state, short enough for a sidebar."""
        acc = self.status.get("best_val_accuracy")
        parts = [self.name or default_name(self.run_id), str(self.config.preset),
                 str(self.config.dataset)]  # fmt: skip
        if self.sweep_label:
            parts.append(self.sweep_label)
        if isinstance(acc, int | float):
            parts.append(f"val {acc:.1%}")
        parts.append(self.state)
        return " · ".join(parts)

    def label(self) -> str:
        return self.short_label()


def default_name(run_id: str) -> str:
    """`20251123-140512-...-a1b2` -> "Nov 23 14:05 a1b2": readable, and still unique enough to tell runs apart."""
    m = re.match(r"^(\d{8}-\d{6})-.*-([0-9a-f]{4})$", run_id)
    if not m:
        return run_id
    try:
        t = datetime.strptime(m.group(1), "%Y%m%d-%H%M%S")
    except ValueError:
        return run_id
    return f"{t:%b} {t.day} {t:%H:%M} {m.group(2)}"


def new_run_id(preset: str, dataset: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    clean = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{preset}-{dataset}")[:60]
    return f"{stamp}-{clean}-{secrets.token_hex(2)}"


def run_path(run_id: str) -> Path:
    if not RUN_ID_RE.match(run_id or ""):
        raise UserError(f"not a run id: {run_id!r}")
    return runs_dir() / run_id


def create_run(config: RunConfig | Mapping[str, Any]) -> Run:
    """Write config.json and a queued status; the job fills in the rest.

    The dataset's fingerprint is taken here, once per run (not in `trainer.resolve`, which the Train page calls
    for every preview), so every run's config.json says which data it saw."""
    from core.data import fingerprint

    config = RunConfig.from_dict(config)
    if config.dataset_fingerprint is None and config.dataset:
        fp = fingerprint.dataset_fingerprint(config.dataset)
        config = config.replace(dataset_fingerprint=fp.digest if fp else None)
    config = config.replace(
        run_id=config.run_id or new_run_id(config.preset or "run", config.dataset or "data")
    )
    path = run_path(config.run_id)
    path.mkdir(parents=True, exist_ok=False)
    atomic.write_json(path / "config.json", config.to_dict())
    status = {"state": "queued", "created": time.time()}
    atomic.write_json(path / "status.json", status)
    return Run(config.run_id, path, config, status)


def update_status(path: Path, **fields: Any) -> dict[str, Any]:
    """Merge fields into status.json (only the job and the liveness check write it).

    Raises FileNotFoundError when the run folder is gone: a deleted run must not come back holding a status.
    """
    status = atomic.read_json(path / "status.json", {}) or {}
    status.update(fields)
    atomic.write_json(path / "status.json", status, make_parents=False)
    return status


def load_run(path: Path) -> Run | None:
    raw = atomic.read_json(path / "config.json")
    try:
        config = RunConfig.from_dict(raw)
    except (ValueError, TypeError):
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
    path = get_run(run_id).path  # an unknown id is an error, never a new folder
    try:
        atomic.write_bytes(path / "stop", b"stop\n", make_parents=False)
    except FileNotFoundError:
        raise UserError(f"run {run_id} was deleted") from None


def stop_requested(path: Path) -> bool:
    return (path / "stop").exists()


def delete_run(run_id: str) -> str:
    """Move the run to runs/.trash (one rename, so it never half-shows); returns the entry `restore_run` takes."""
    run = get_run(run_id)
    if run.state in ACTIVE_STATES:
        raise UserError(f"run {run_id} is still {run.state}; stop it first")
    return trash.move_to_trash(run.path, runs_dir())


def restore_run(entry: str) -> Run:
    path = trash.restore(runs_dir(), entry)
    run = load_run(path)
    if run is None:
        raise UserError(f"restored {path.name}, but it has no readable config.json")
    return run


def trashed_runs() -> list[trash.TrashEntry]:
    return trash.list_trash(runs_dir())


def _one_line(value: str, what: str, cap: int, multiline: bool) -> str:
    if not isinstance(value, str):
        raise UserError(f"{what} must be text")
    value = value.strip()
    if not multiline and ("\n" in value or "\r" in value):
        raise UserError(f"{what} must be one line")
    if len(value) > cap:
        raise UserError(f"{what} is {len(value)} characters; at most {cap}")
    return value


def clean_tags(tags: list[str] | str) -> list[str]:
    """Tags as a person types them ("baseline, lr test" or a list): trimmed, one line each, no duplicates."""
    items = tags.split(",") if isinstance(tags, str) else tags
    if not isinstance(items, list):
        raise UserError("tags must be a list of words")
    out: list[str] = []
    for raw in items:
        tag = _one_line(raw, "a tag", MAX_TAG, multiline=False)
        if "," in tag:
            raise UserError(f"a tag cannot hold a comma: {tag!r}")
        if tag and tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise UserError(f"{len(out)} tags; at most {MAX_TAGS}")
    return out


def set_label(run_id: str, *, name: str | None = None, note: str | None = None,
              tags: list[str] | str | None = None) -> Run:  # fmt: skip
    """Rename a run, give it a note or tags ("" / [] clears, None keeps); label.json, never status.json (the job's)."""
    run = get_run(run_id)
    label = dict(run._labels())
    if name is not None:
        label["name"] = _one_line(name, "a run name", MAX_NAME, multiline=False)
    if note is not None:
        label["note"] = _one_line(note, "a note", MAX_NOTE, multiline=True)
    if tags is not None:
        label["tags"] = clean_tags(tags)
    try:
        atomic.write_json(run.path / LABEL_FILE, label, make_parents=False)
    except FileNotFoundError:
        raise UserError(f"run {run_id} was deleted") from None
    return Run(run.run_id, run.path, run.config, run.status, label)


def best_val_accuracy(epochs: list[dict]) -> float | None:
    vals = [e["val_accuracy"] for e in epochs if isinstance(e.get("val_accuracy"), int | float)]
    return max(vals) if vals else None


def process_start_time(pid: int) -> float | None:
    """When a process started (psutil's create_time, seconds since the epoch, on any OS), so a reused pid is not
    taken for our job; None when there is no such process."""
    import psutil

    try:
        return psutil.Process(int(pid)).create_time()
    except (psutil.Error, OSError, ValueError, OverflowError):
        return None


START_TOLERANCE_S = 0.05  # create_time is recomputed from the same clock each call; a reused pid starts later


def process_matches(pid: int, pid_start: float | None, *, strict: bool = True) -> bool:
    """The process exists, is not a zombie, and started at `pid_start` (never a reused pid). Without a recorded
    start, `strict` says no; otherwise the pid alone decides."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        started = proc.create_time()
    except (psutil.Error, OSError, ValueError, OverflowError):
        return False
    if pid_start is None:
        return not strict
    return isinstance(pid_start, int | float) and abs(float(pid_start) - started) < START_TOLERANCE_S


def duration(status: dict) -> float | None:
    start = status.get("started")
    if not start:
        return None
    return (status.get("ended") or time.time()) - start
