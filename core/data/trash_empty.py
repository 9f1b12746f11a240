"""Emptying the trash, only when a person asks: the app's trashes otherwise keep everything forever.

Trashes are runs/.trash, data/.trash (deleted datasets) and data/<dataset>/.trash (deleted classes and images).
Only entries the app itself put there go: a folder (never a link) with the .json record `trash` wrote beside it,
naming that entry. Anything else a person left in a trash folder stays.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from core import atomic
from core.data import trash
from core.errors import UserError
from core.paths import data_dir, runs_dir

DAY_S = 86_400.0
MAX_WALK_FILES = 1_000_000  # sizes stop counting past this many files in one entry (a hostile tree)


@dataclass
class PurgeItem:
    where: str  # "runs", "datasets" or "dataset NAME"
    root: Path  # the folder whose .trash holds it
    entry: trash.TrashEntry
    size: int  # bytes on disk, links not followed


def trash_roots() -> list[tuple[str, Path]]:
    """Every folder whose .trash the app fills: runs, data and each dataset folder in data/."""
    out = [("runs", runs_dir()), ("datasets", data_dir())]
    d = data_dir()
    if d.is_dir():
        for sub in sorted(d.iterdir()):
            if sub.is_dir() and not sub.is_symlink() and not sub.name.startswith("."):
                if trash.trash_dir(sub).is_dir():
                    out.append((f"dataset {sub.name}", sub))
    return out


def _made_by_app(root: Path, entry: str) -> bool:
    meta = atomic.read_json(trash.trash_dir(root) / f"{entry}.json", None)
    return isinstance(meta, dict) and meta.get("entry") == entry


def tree_size(path: Path) -> int:
    """Bytes under `path` by lstat: links count as themselves and are never followed."""
    total, seen, stack = 0, 0, [path]
    while stack and seen < MAX_WALK_FILES:
        p = stack.pop()
        try:
            with os.scandir(p) as it:
                for e in it:
                    seen += 1
                    total += e.stat(follow_symlinks=False).st_size
                    if e.is_dir(follow_symlinks=False):
                        stack.append(Path(e.path))
        except OSError:
            continue
    return total


def plan(older_than_days: float | None = None, now: float | None = None) -> list[PurgeItem]:
    """What emptying would remove: app-made entries, deleted more than `older_than_days` ago when given."""
    if older_than_days is not None and not (0 <= older_than_days <= 36_500):
        raise UserError(f"--older-than must be 0..36500 days, not {older_than_days}")
    now = time.time() if now is None else now
    cutoff = None if older_than_days is None else now - older_than_days * DAY_S
    out = []
    for where, root in trash_roots():
        if trash.trash_dir(root).is_symlink():
            continue
        for e in trash.list_trash(root):
            if (cutoff is None or e.deleted_at <= cutoff) and _made_by_app(root, e.entry):
                out.append(PurgeItem(where, root, e, tree_size(trash.trash_dir(root) / e.entry)))
    return out


def describe(items: list[PurgeItem]) -> str:
    from core.validation import human_bytes

    n = len(items)
    return f"{n} trash entr{'y' if n == 1 else 'ies'}, {human_bytes(sum(i.size for i in items))}"


def empty(items: list[PurgeItem]) -> tuple[int, int]:
    """Remove the planned entries for good; returns (entries removed, bytes freed). Rechecks each before removal."""
    done, freed = 0, 0
    for it in items:
        folder = trash.trash_dir(it.root)
        target = folder / it.entry.entry
        if folder.is_symlink() or target.is_symlink() or not target.is_dir():
            continue
        if not _made_by_app(it.root, it.entry.entry):
            continue
        try:
            shutil.rmtree(target)
        except OSError as exc:
            raise UserError(
                f"could not remove {it.entry.entry} from the trash: {exc.strerror or exc}"
            ) from None
        (folder / f"{it.entry.entry}.json").unlink(missing_ok=True)
        done, freed = done + 1, freed + it.size
    return done, freed
