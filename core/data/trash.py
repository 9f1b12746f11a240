"""A trash for folders the app created (runs, datasets): a removal a person asks for is a rename they can undo.

root/.trash/<entry>        the folder itself, moved with one os.replace (same filesystem, nothing copied)
root/.trash/<entry>.json   its original name and when it was moved, so `restore` puts it back where it was

Entries are the original name, or `name~2`, `name~3`, ... when that is taken. Links are never followed or moved:
the app only moves what it made.

An entry can also hold several things from inside root (one class in every split folder, a single image): the
folder root/.trash/<entry>/ then keeps each under its relative path and the .json lists those paths ("paths"), so
`restore` puts every one back where it was, or none of them.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
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
    paths: list[str] = field(default_factory=list)  # for an entry of items: their paths relative to root


def trash_dir(root: Path) -> Path:
    return Path(root) / TRASH_DIR


def _open_trash(root: Path) -> Path:
    """root/.trash, created when missing; never a link (the app moves nothing into a place it did not make)."""
    trash = trash_dir(root)
    if trash.is_symlink():
        raise UserError(f"{trash} is a link; refusing to move anything into it")
    trash.mkdir(exist_ok=True)
    return trash


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
    trash = _open_trash(root)
    entry = _reserve(trash, name, {"original": name, "deleted_at": time.time()})
    try:
        if os.path.lexists(trash / entry):  # appeared since the reservation: never replace it
            raise FileExistsError(entry)
        os.replace(path, trash / entry)
    except OSError as exc:
        (trash / f"{entry}.json").unlink(missing_ok=True)
        raise UserError(f"could not move {name} to the trash: {exc.strerror or exc}") from None
    return entry


def _safe_rel(rel: object) -> bool:
    """A plain relative path inside root: no '..', no hidden or empty parts, no backslashes."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        return False
    return all(_safe_name(p) for p in rel.split("/"))


def _remove_empty_tree(folder: Path) -> None:
    """Remove folders the trash made that are now empty, deepest first; a file anywhere keeps its folders."""
    if folder.is_symlink() or not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            _remove_empty_tree(child)
    try:
        folder.rmdir()
    except OSError:
        pass


def _move_all(pairs: list[tuple[Path, Path]]) -> None:
    """Rename each (src, dst); when one fails, the ones already moved go back and the error is raised."""
    done: list[tuple[Path, Path]] = []
    try:
        for src, dst in pairs:
            if os.path.lexists(dst):
                raise FileExistsError(dst.name)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.rename(src, dst)
            done.append((src, dst))
    except OSError:
        for src, dst in reversed(done):
            try:
                os.rename(dst, src)
            except OSError:
                pass
        raise


def move_items_to_trash(root: Path, rel_paths: list[str], label: str) -> str:
    """Move several files or folders inside root into one trash entry named after `label`; returns the entry.

    All are checked first (each must exist and be no link); then they move together or, on an error, not at all."""
    root = Path(root)
    if not rel_paths or not all(_safe_rel(r) for r in rel_paths) or not _safe_name(label):
        raise UserError(f"nothing this app can move to the trash: {', '.join(map(str, rel_paths))}")
    for rel in rel_paths:
        p = root / rel
        if p.is_symlink():
            raise UserError(f"{rel} is a link; the app only moves files it keeps")
        if not p.exists():
            raise UserError(f"{rel} does not exist (already deleted?)")
    trash = _open_trash(root)
    entry = _reserve(trash, label, {"original": label, "deleted_at": time.time(), "paths": list(rel_paths)})
    holder = trash / entry
    try:
        holder.mkdir()  # reserved just now: an existing folder of that name is never reused
        _move_all([(root / rel, holder / rel) for rel in rel_paths])
    except OSError as exc:
        _remove_empty_tree(holder)
        (trash / f"{entry}.json").unlink(missing_ok=True)
        raise UserError(f"could not move {label} to the trash: {exc.strerror or exc}") from None
    return entry


def _restore_items(root: Path, trash: Path, entry: str, rel_paths: list) -> Path:
    if not all(_safe_rel(r) for r in rel_paths):
        raise UserError(f"the trash record of {entry} is damaged; its files are in {trash / entry}")
    for rel in rel_paths:
        if os.path.lexists(root / rel):
            raise UserError(f"{rel} exists again; rename or remove it before restoring {entry}")
        if not os.path.lexists(trash / entry / rel):
            raise UserError(f"{rel} is missing from the trash entry {entry}")
    try:
        _move_all([(trash / entry / rel, root / rel) for rel in rel_paths])
    except OSError as exc:
        raise UserError(f"could not restore {entry}: {exc.strerror or exc}") from None
    _remove_empty_tree(trash / entry)
    (trash / f"{entry}.json").unlink(missing_ok=True)
    return root


def _paths(trash: Path, entry: str) -> list | None:
    meta = atomic.read_json(trash / f"{entry}.json", {})
    paths = meta.get("paths") if isinstance(meta, dict) else None
    return paths if isinstance(paths, list) else None


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
    if trash.is_symlink():
        raise UserError(f"{trash} is a link; refusing to restore anything from it")
    if not _safe_name(entry) or src.is_symlink() or not src.is_dir():
        raise UserError(f"nothing called {entry!r} in the trash")
    items = _paths(trash, entry)
    if items is not None:
        return _restore_items(root, trash, entry, items)
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
        items = _paths(trash, p.name)
        out.append(TrashEntry(p.name, original, deleted, [str(i) for i in items or []]))
    return sorted(out, key=lambda e: e.deleted_at, reverse=True)
