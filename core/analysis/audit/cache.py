"""Audit results kept on disk per (dataset state, run), so reopening the Improve page or re-running the CLI is
instant and any change to the files (a relabel, a set-aside image) makes the old result disappear.

The dataset state is the decode cache's fingerprint (each file's relative path, size and mtime: a stat, no reading)
for folders, the dataset's name and size for built-in arrays; a run adds its id, split settings and the model
file's size and mtime. Results are JSON under `<runs>/.cache/audit/`, written atomically; the oldest go first.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from core import atomic
from core.analysis.audit.report import AuditReport
from core.data import datasets, decode_cache, renames
from core.errors import UserError
from core.paths import runs_dir
from core.training import runs

VERSION = 1  # bump when the audit computes something differently, so old results are never served
KEEP = 32


def cache_dir() -> Path:
    return runs_dir() / ".cache" / "audit"


def dataset_state(info: datasets.DatasetInfo) -> str | None:
    """A string that changes whenever the dataset's files do; None when a file vanished while we looked."""
    if info.kind != "folder" or info.path is None:
        return f"{info.kind}:{info.name}:{info.total}:{info.available}"
    files = info.all_files()
    return decode_cache.fingerprint(info.path, decode_cache.relative_paths(info.path, files))


def run_state(run: runs.Run | None) -> dict:
    if run is None:
        return {}
    try:
        st = run.model_path.stat()
        model = [st.st_mtime_ns, st.st_size]
    except OSError:
        model = None
    return {"run": run.run_id, "val_split": run.config.val_split, "seed": run.config.seed, "model": model}


def key(info: datasets.DatasetInfo, run: runs.Run | None) -> str | None:
    state = dataset_state(info)
    if state is None:
        return None
    raw = json.dumps([VERSION, info.name, state, run_state(run)], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def load(k: str | None) -> AuditReport | None:
    if k is None:
        return None
    saved = atomic.read_json(cache_dir() / f"{k}.json")
    if not isinstance(saved, dict) or saved.get("key") != k:
        return None
    try:
        return AuditReport.from_json(saved["report"])
    except (KeyError, TypeError, ValueError):
        return None


def store(k: str | None, report: AuditReport) -> None:
    if k is None:
        return
    try:
        atomic.write_json(cache_dir() / f"{k}.json", {"key": k, "report": report.to_json()})
        atomic.keep_newest(cache_dir(), "*.json", KEEP)
    except OSError:  # a read-only runs folder: the result is still right, just not remembered
        pass


def resolve_run(dataset: str, run_id: str | None) -> runs.Run | None:
    """The run, checked to belong to the dataset (UserError otherwise)."""
    if run_id is None:
        return None
    run = runs.get_run(run_id)
    if not renames.same_dataset(run.config.dataset, dataset):
        raise UserError(f"run {run.run_id} was trained on {run.config.dataset}, not {dataset}")
    return run


def cached_audit(dataset: str, run_id: str | None = None) -> AuditReport | None:
    """The stored audit of the dataset as it is now (and the run); None when there is none or the files changed."""
    try:
        info = datasets.get_dataset(dataset)
        return load(key(info, resolve_run(dataset, run_id)))
    except UserError:
        return None
