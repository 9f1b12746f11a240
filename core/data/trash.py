"""A trash for folders the app created (runs, datasets): a removal a person asks for is a rename they can undo.

root/.trash/<entry>        the folder itself, moved with one os.replace (same filesystem, nothing copied)
root/.trash/<entry>.json   its original name and when it was moved, so `restore` puts it back where it was

Entries are the original name, or `name~2`, `name~3`, ... when that is taken. Links are never followed or moved:
the app only moves what it made.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from core import atomic
from core.errors import UserError

TRASH_DIR = ".trash"
_ENTRY_RE = re.compile(r"^[^./\\][^/\\]{0,200}$")


@dataclass
class TrashEntry:
    entry: str  # the name inside root/.trash
    original: str  # the name it had (and gets back) in root
    deleted_at: float


def trash_dir(root: Path) -> Path:
    return Path(root) / TRASH_DIR


def _safe_name(name: str) -> bool:
    return bool(_ENTRY_RE.match(name or "")) and name not in (".", "..")


def _reserve(trash: Path, name: str, meta: dict) -> str:
    """Claim `name`, `name~2`, ... by creating its .json exclusively, so two deletes never pick the same entry."""
    for n in range(1, 10_000):
        entry = name if n == 1 else f"{name}~{n}"
        if os.path.lexists(trash / entry):
            continue
        try:
            with open(trash / f"{entry}.json", "x") as fh:
                json.dump({**meta, "entry": entry}, fh)
                fh.flush()
                os.fsync(fh.fileno())
        except FileExistsError:
            continue
        return entry
    raise UserError(f"the trash already holds too many folders named {name}; empty {trash}")


def move_to_trash(path: Path, root: Path) -> str:
    """Move root/<name> into root/.trash; returns the trash entry that `restore` takes."""
    path, root = Path(path), Path(root)
    name = path.name
    if path.parent != root or not _safe_name(name):
        raise UserError(f"{path} is not something this app keeps in {root}")
    if path.is_symlink():
        raise UserError(f"{name} is a link; the app only moves folders it created")
    if not path.is_dir():
        raise UserError(f"{name} does not exist (already deleted?)")
    trash = trash_dir(root)
    if trash.is_symlink():
        raise UserError(f"{trash} is a link; refusing to move anything into it")
    trash.mkdir(exist_ok=True)
    entry = _reserve(trash, name, {"original": name, "deleted_at": time.time()})
    try:
        if os.path.lexists(trash / entry):  # appeared since the reservation: never replace it
            raise FileExistsError(entry)
        os.replace(path, trash / entry)
    except OSError as exc:
        (trash / f"{entry}.json").unlink(missing_ok=True)
        raise UserError(f"could not move {name} to the trash: {exc.strerror or exc}") from None
    return entry


def _original(trash: Path, entry: str) -> tuple[str, float]:
    meta = atomic.read_json(trash / f"{entry}.json", {})
    meta = meta if isinstance(meta, dict) else {}
    original = meta.get("original")
    if not isinstance(original, str) or not _safe_name(original):
        original = re.sub(r"~\d+$", "", entry)  # the record was lost: the entry name still says it
    deleted = meta.get("deleted_at")
    if not isinstance(deleted, int | float):
        try:
            deleted = (trash / entry).lstat().st_mtime
        except OSError:
            deleted = 0.0
    return original, float(deleted)


def restore(root: Path, entry: str) -> Path:
    """Move a trash entry back to root/<original name>; refuses to replace anything that took its place."""
    root = Path(root)
    trash = trash_dir(root)
    src = trash / (entry or "")
    if not _safe_name(entry) or src.is_symlink() or not src.is_dir():
        raise UserError(f"nothing called {entry!r} in the trash")
    original, _ = _original(trash, entry)
    target = root / original
    if os.path.lexists(target):
        raise UserError(f"{original} exists again; rename or delete it before restoring {entry}")
    try:
        os.replace(src, target)
    except OSError as exc:
        raise UserError(f"could not restore {entry}: {exc.strerror or exc}") from None
    (trash / f"{entry}.json").unlink(missing_ok=True)
    return target


def list_trash(root: Path) -> list[TrashEntry]:
    """What `restore` can bring back, newest first."""
    trash = trash_dir(root)
    if trash.is_symlink() or not trash.is_dir():
        return []
    out = []
    for p in trash.iterdir():
        if p.is_symlink() or not p.is_dir() or not _safe_name(p.name):
            continue
        original, deleted = _original(trash, p.name)
        out.append(TrashEntry(p.name, original, deleted))
    return sorted(out, key=lambda e: e.deleted_at, reverse=True)
