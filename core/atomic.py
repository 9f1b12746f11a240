"""Atomic writes: a reader (the UI polling a run, a crash mid-write) never sees half a file.

Temp files are named `.<name>.tmp-<random><suffix>` beside their target so a killed writer's leftovers are easy to find
and sweep (`sweep_temp_files`); finished files get the normal permissions of the user's umask (0644 usually),
not mkstemp's private 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK
TEMP_MARK = ".tmp-"  # every temp name is `.<target name>.tmp-<random><suffix>`


def normal_permissions(path: Path) -> None:
    """Give a file or a whole tree (e.g. one made by mkdtemp, 0700) the umask's usual modes."""
    path = Path(path)
    if path.is_symlink():
        return
    if path.is_dir():
        os.chmod(path, DIR_MODE)
        for child in path.rglob("*"):
            if not child.is_symlink():
                os.chmod(child, DIR_MODE if child.is_dir() else FILE_MODE)
    elif path.exists():
        os.chmod(path, FILE_MODE)


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "", make_parents: bool = True) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it replaces `path` in one rename, on error it vanishes.

    `make_parents=False` refuses to recreate a missing folder (a run deleted under a writer must stay deleted).
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent} no longer exists")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARK}", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, FILE_MODE)
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes, make_parents: bool = True) -> None:
    with atomic_path(path, make_parents=make_parents) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path, obj: Any, make_parents: bool = True) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), make_parents=make_parents)


def read_json(path: Path, default: Any = None) -> Any:
    """Read JSON, returning `default` when the file is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def sweep_temp_files(folder: Path, older_than_s: float = 60.0) -> list[Path]:
    """Remove the temp files a killed writer left in `folder` (only our own `.name.tmp-XXXX` pattern)."""
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    now = time.time()
    for p in entries:
        if not (p.name.startswith(".") and TEMP_MARK in p.name) or p.is_symlink() or not p.is_file():
            continue
        try:
            if now - p.stat().st_mtime >= older_than_s:
                p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed


def keep_newest(folder: Path, pattern: str, keep: int) -> None:
    """Delete all but the `keep` newest files matching `pattern` in a cache folder of ours (never a link, never a
    folder), so a cache of small reports cannot grow without bound."""
    found = []
    for p in Path(folder).glob(pattern):
        try:
            if p.is_file() and not p.is_symlink():
                found.append((p.stat().st_mtime, p))
        except OSError:
            continue
    for _, p in sorted(found, reverse=True)[keep:]:
        p.unlink(missing_ok=True)
