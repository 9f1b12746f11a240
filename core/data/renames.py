"""A ledger of dataset renames, so runs keep finding the dataset they were trained on after it is renamed.

Runs record the dataset's name (`RunConfig.dataset`) and are never rewritten; instead `rename_dataset` adds
old -> new to data/.renames.json and every lookup by name (`datasets.get_dataset`) follows it. Rules:
a real folder with a name always wins over a ledger entry (a new dataset made under an old name takes it back);
chains old -> mid -> new resolve; a cycle or a chain that ends at no folder resolves to nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from core import atomic
from core.errors import UserError
from core.paths import data_dir

LEDGER = ".renames.json"
MAX_LEDGER_BYTES = 1 << 20  # a hostile or runaway ledger is ignored, not parsed
MAX_HOPS = 64  # longest chain followed
LOCK_TIMEOUT_S = 30.0  # a rename waits this long for another one to finish


def ledger_path() -> Path:
    return data_dir() / LEDGER


def _plain(name: object) -> bool:
    return (
        isinstance(name, str)
        and bool(name)
        and "/" not in name
        and "\\" not in name
        and not name.startswith(".")
    )


def ledger() -> dict[str, str]:
    """old name -> the name it was renamed to; entries that are not two plain names are dropped."""
    path = ledger_path()
    try:
        if path.is_symlink() or path.stat().st_size > MAX_LEDGER_BYTES:
            return {}
    except OSError:
        return {}
    raw = atomic.read_json(path, {})
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if _plain(k) and _plain(v)}


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One writer at a time, so two renames never drop each other's entry (filelock: Windows too, like the
    fixes journal's lock)."""
    from filelock import FileLock, Timeout

    data_dir().mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(data_dir() / ".renames.lock"), timeout=LOCK_TIMEOUT_S):
            yield
    except Timeout:
        raise UserError("the dataset renames ledger is busy (another rename?); try again") from None


def record(old: str, new: str) -> str | None:
    """Note that `old` is now called `new`; returns what `old` pointed to before (for `undo_record`)."""
    with _locked():
        book = ledger()
        before = book.get(old)
        book[old] = new
        atomic.write_json(ledger_path(), book)
    return before


def undo_record(old: str, before: str | None) -> None:
    """Put `old`'s entry back as it was (a rename that failed after `record`)."""
    with _locked():
        book = ledger()
        if before is None:
            book.pop(old, None)
        else:
            book[old] = before
        atomic.write_json(ledger_path(), book)


def current_name(name: str) -> str | None:
    """The folder in data/ that `name` refers to now: itself when it exists, else where its renames lead."""
    root = data_dir()
    seen: set[str] = set()
    book: dict[str, str] | None = None
    current: str | None = name
    while current is not None and _plain(current) and current not in seen and len(seen) < MAX_HOPS:
        if (root / current).is_dir():
            return current
        seen.add(current)
        if book is None:
            book = ledger()
        current = book.get(current)
    return None


def renamed_to(name: str) -> str | None:
    """The dataset's current name when it differs from `name` (it was renamed); None otherwise."""
    if not _plain(name) or (data_dir() / name).is_dir():
        return None
    now = current_name(name)
    return now if now != name else None


def same_now(a: str, b: str) -> bool:
    """Two runs' recorded dataset names name one dataset today (equal, or renamed to the same one since)."""
    return a == b or (current_name(a) or a) == (current_name(b) or b)


def same_dataset(run_dataset: str, dataset: str) -> bool:
    """Whether a run's recorded dataset name is `dataset` now (itself, or renamed to it since)."""
    return run_dataset == dataset or (bool(run_dataset) and current_name(run_dataset) == dataset)
