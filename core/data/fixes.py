"""Fix a dataset in place, with nothing lost: relabel an image, set it aside, or keep it, and undo any of it.

relabel     moves <split>/<class>/<file> to <split>/<other class>/<file> (the class is the folder, so that is all)
set aside   moves it to <dataset>/.quarantine/<its path>: the catalog skips dot-folders, so training no longer
            sees it, yet the file is still there and undo puts it back
keep        moves nothing; the decision is remembered so the audit view stops showing the image

Every action is a line in a journal kept beside the app's own state (`<runs>/.cache/fixes/<dataset>.json`, written
atomically under a file lock), never inside the person's folder. `undo` reverses the last action (or a chosen one;
a bulk action is one group and is undone as one). A move never replaces a file: a name taken at the target gets
`-2`, `-3`, ... Moving a file changes the dataset's fingerprint (relative path, size, mtime), so the decode cache,
the quality report and the catalog counts all follow by themselves.

The embedded sample ships with the app and is read-only: fixes on it are refused with one line (keep decisions,
which touch no file, are still stored).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from core import atomic
from core.data import datasets, file_moves
from core.errors import UserError
from core.paths import EMBEDDED_DATASET, runs_dir

QUARANTINE_DIR = ".quarantine"
KINDS = ("relabel", "set_aside", "keep")
KIND_LABELS = {"relabel": "Relabel", "set_aside": "Set aside", "keep": "Keep"}
MAX_JOURNAL = 20_000  # actions remembered per dataset; the oldest undone ones go first
MAX_BULK = 5_000  # images one bulk action may touch
LOCK_TIMEOUT_S = 10.0
JOURNAL_EVERY_S = (
    1.0  # during a bulk action the journal is rewritten at most this often (each write is fsynced)
)


@dataclass
class Action:
    """One fix. `path` is where the image was (relative to the dataset folder), `new_path` where it went."""

    id: int
    group: int  # actions done together (a bulk selection) share a group and are undone together
    kind: str
    path: str
    new_path: str
    from_class: str
    to_class: str
    at: float
    undone: bool = False

    def describe(self) -> str:
        if self.kind == "relabel":
            return f"relabelled {self.path}: {self.from_class} → {self.to_class}"
        if self.kind == "set_aside":
            return f"set aside {self.path}"
        return f"kept {self.path} as {self.from_class}"

    @classmethod
    def from_json(cls, raw: Any) -> Action | None:
        try:
            a = cls(int(raw["id"]), int(raw["group"]), str(raw["kind"]), str(raw["path"]), str(raw["new_path"]),
                    str(raw["from_class"]), str(raw["to_class"]), float(raw["at"]), bool(raw.get("undone", False)))  # fmt: skip
        except (KeyError, TypeError, ValueError):
            return None
        return a if a.kind in KINDS else None


# --------------------------------------------------------------------------------------------- the journal


def fixes_dir() -> Path:
    return runs_dir() / ".cache" / "fixes"


def _journal_path(dataset: str) -> Path:
    if not dataset or "/" in dataset or "\\" in dataset or dataset.startswith("."):
        raise UserError(f"unknown dataset {dataset!r}")
    return fixes_dir() / f"{dataset}.json"


def _lock(dataset: str):
    from filelock import FileLock

    path = _journal_path(dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_suffix(".lock")), timeout=LOCK_TIMEOUT_S)


def _read(dataset: str) -> list[Action]:
    raw = atomic.read_json(_journal_path(dataset), {})
    items = raw.get("actions", []) if isinstance(raw, dict) else []
    out = [a for a in (Action.from_json(r) for r in items if isinstance(r, dict)) if a is not None]
    return sorted(out, key=lambda a: a.id)


def _write(dataset: str, actions: list[Action]) -> None:
    if len(actions) > MAX_JOURNAL:  # forget the oldest undone actions first, then the oldest of all
        undone = [a.id for a in actions if a.undone][: len(actions) - MAX_JOURNAL]
        drop = set(undone)
        actions = [a for a in actions if a.id not in drop][-MAX_JOURNAL:]
    atomic.write_json(_journal_path(dataset), {"dataset": dataset, "actions": [asdict(a) for a in actions]})


def journal(dataset: str) -> list[Action]:
    """Every action on the dataset, newest first (undone ones included, marked)."""
    return list(reversed(_read(dataset)))


def kept(dataset: str) -> set[str]:
    """Paths the person looked at and decided to keep as labelled."""
    return {a.path for a in _read(dataset) if a.kind == "keep" and not a.undone}


def handled(dataset: str) -> set[str]:
    """Paths the audit view should no longer show: kept, relabelled or set aside (their old paths)."""
    return {a.path for a in _read(dataset) if not a.undone}


def set_aside_paths(dataset: str) -> list[str]:
    """Where the images set aside now lie, relative to the dataset folder."""
    return [a.new_path for a in journal(dataset) if a.kind == "set_aside" and not a.undone]


# --------------------------------------------------------------------------------------------- checks and moves


def _folder(dataset: str, what: str) -> tuple[datasets.DatasetInfo, Path]:
    """The dataset's folder, or a one-line refusal for the read-only embedded sample and array sets."""
    if dataset == EMBEDDED_DATASET:
        raise UserError(
            f"{dataset} is the embedded sample and is read-only; import a copy as a folder dataset to {what} its images"
        )
    info = datasets.get_dataset(dataset)
    if info.kind != "folder" or info.path is None:
        raise UserError(f"{dataset} is a built-in array dataset with no image files to {what}")
    return info, info.path


_PART = re.compile(r"^[^/\\\0]{1,255}$")


def _clean_rel(rel_path: str) -> str:
    rel = str(rel_path or "").replace("\\", "/")
    parts = PurePosixPath(rel).parts
    if (
        not parts
        or rel.startswith("/")
        or ":" in parts[0]
        or any(p in (".", "..") or p.startswith(".") or not _PART.match(p) for p in parts)
    ):
        raise UserError(f"not an image path inside the dataset: {rel_path!r}")
    return "/".join(parts)


def _split_and_class(info: datasets.DatasetInfo, rel: str) -> tuple[str, str]:
    """(split folder prefix, class) of an image path: ("", "cat") for cat/a.png, ("train", "cat") for train/cat/a.png."""
    parts = rel.split("/")
    if info.layout == "split":
        if len(parts) != 3:
            raise UserError(f"{rel}: expected <split>/<class>/<file> in this dataset")
        return parts[0], parts[1]
    if len(parts) != 2:
        raise UserError(f"{rel}: expected <class>/<file> in this dataset")
    return "", parts[0]


def _check_image(info: datasets.DatasetInfo, root: Path, rel: str) -> None:
    p = root / rel
    if p.is_symlink() or not p.is_file():
        raise UserError(f"{rel} is not an image in {info.name} (moved or deleted already?)")
    if p.suffix.lower() not in datasets.ALLOWED_EXTENSIONS:
        raise UserError(f"{rel} is not an image file")


def _move_file(root: Path, src_rel: str, dst_rel: str) -> str:
    """The one place a fix moves a file, by `core.data.file_moves` (never replaces; a taken name becomes
    `stem-2.ext`, `stem-3.ext`, ...). Returns the path actually used."""
    src = root / src_rel
    dst_dir = (root / dst_rel).parent
    if dst_dir.is_symlink():
        raise UserError(f"{dst_dir.relative_to(root)} is a link; the app does not move images into links")
    dst_dir.mkdir(parents=True, exist_ok=True)
    try:
        name = file_moves.move_no_replace(src, dst_dir, PurePosixPath(dst_rel).name, first_suffix=2)
    except OSError as exc:
        raise UserError(f"could not move {src_rel}: {exc.strerror or exc}") from None
    if name is None:
        raise UserError(f"could not find a free name for {dst_rel}")
    return (dst_dir / name).relative_to(root).as_posix()


def _touch(root: Path) -> None:
    """Mark the dataset folder changed: views keyed by its mtime (the Datasets page's samples and quality report, the
    probed input shape) would miss a move between two class folders, which changes only those folders' times."""
    try:
        os.utime(root)
    except OSError:
        pass


def _remove_empty_dirs(root: Path, rel_dir: str) -> None:
    """Tidy the quarantine folders the app made once they hold nothing (never the person's class folders)."""
    d = root / rel_dir
    top = root / QUARANTINE_DIR
    while d != top and top in d.parents:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent
    try:
        top.rmdir()
    except OSError:
        pass


# --------------------------------------------------------------------------------------------- actions


def _do(info: datasets.DatasetInfo | None, root: Path | None, kind: str, rel: str,
        to_class: str | None, ident: int, group: int) -> Action:  # fmt: skip
    if kind == "keep":
        cls = rel.split("/")[-2] if "/" in rel else ""
        return Action(ident, group, "keep", rel, rel, cls, "", time.time())
    assert info is not None and root is not None
    _check_image(info, root, rel)
    split, cls = _split_and_class(info, rel)
    name = rel.rsplit("/", 1)[-1]
    if kind == "relabel":
        if not to_class or to_class not in info.class_names:
            raise UserError(
                f"{to_class!r} is not a class of {info.name}; pick one of {', '.join(info.class_names)}"
            )
        if to_class == cls:
            raise UserError(f"{rel} is already in {to_class}")
        target = "/".join(p for p in (split, to_class, name) if p)
        new = _move_file(root, rel, target)
        return Action(ident, group, "relabel", rel, new, cls, to_class, time.time())
    new = _move_file(root, rel, f"{QUARANTINE_DIR}/{rel}")
    return Action(ident, group, "set_aside", rel, new, cls, "", time.time())


def apply(
    dataset: str, kind: str, rel_paths: Iterable[str], to_class: str | Mapping[str, str] | None = None
) -> tuple[list[Action], list[str]]:
    """Do one kind of fix to each image of a selection, as one undoable group.

    `to_class` (relabel): one class for all, or a class per path (e.g. each image's suggested label).

    Returns (actions done, one line per image that could not be fixed); the others are still fixed."""
    if kind not in KINDS:
        raise UserError(f"unknown fix {kind!r}; use one of {', '.join(KINDS)}")
    paths = list(dict.fromkeys(rel_paths))
    if not paths:
        raise UserError("select at least one image")
    if len(paths) > MAX_BULK:
        raise UserError(f"at most {MAX_BULK} images at a time; {len(paths)} were selected")
    info: datasets.DatasetInfo | None = None
    root: Path | None = None
    if kind == "keep":
        _journal_path(dataset)
    else:
        info, root = _folder(dataset, "relabel" if kind == "relabel" else "set aside")
    done: list[Action] = []
    failed: list[str] = []
    with _lock(dataset):
        actions = _read(dataset)
        next_id = max((a.id for a in actions), default=0) + 1
        group = max((a.group for a in actions), default=0) + 1
        saved = time.monotonic()
        for raw in paths:
            try:
                rel = _clean_rel(raw)
                target = to_class.get(raw) if isinstance(to_class, Mapping) else to_class
                act = _do(info, root, kind, rel, target, next_id, group)
            except UserError as exc:
                failed.append(str(exc))
                continue
            done.append(act)
            actions.append(act)
            next_id += 1
            if kind != "keep" and time.monotonic() - saved > JOURNAL_EVERY_S:
                # a crash mid-bulk loses at most a second of undo; the files themselves are all in place
                _write(dataset, actions)
                saved = time.monotonic()
        if done:
            _write(dataset, actions)
            if root is not None:
                _touch(root)
    if not done and failed:
        raise UserError(failed[0] if len(failed) == 1 else f"{failed[0]} (and {len(failed) - 1} more)")
    return done, failed


def relabel(dataset: str, rel_path: str, to_class: str) -> Action:
    """Move one image to another class folder of the same split."""
    return apply(dataset, "relabel", [rel_path], to_class)[0][0]


def set_aside(dataset: str, rel_path: str) -> Action:
    """Move one image into the dataset's .quarantine folder: kept, but no longer trained on."""
    return apply(dataset, "set_aside", [rel_path])[0][0]


def keep(dataset: str, rel_path: str) -> Action:
    """Remember that this image is right as labelled."""
    return apply(dataset, "keep", [rel_path])[0][0]


def _reverse(root: Path | None, act: Action) -> None:
    if act.kind == "keep":
        return
    assert root is not None
    src = root / act.new_path
    if src.is_symlink() or not src.is_file():
        raise UserError(
            f"cannot undo: {act.new_path} is no longer there (undo the later fix of this image first)"
        )
    if os.path.lexists(root / act.path):
        raise UserError(f"cannot undo: {act.path} exists again; move that file away first")
    back = _move_file(root, act.new_path, act.path)
    if back != act.path:  # taken between the check and the move: put it where it was and refuse
        _move_file(root, back, act.new_path)
        raise UserError(f"cannot undo: {act.path} exists again; move that file away first")
    if act.kind == "set_aside":
        _remove_empty_dirs(root, str(PurePosixPath(act.new_path).parent))


def undo(dataset: str, action_id: int | None = None) -> list[Action]:
    """Reverse an action and the rest of its group (the newest group still in force when no id is given).

    Returns the actions undone, newest first. A UserError says why when the files no longer allow it (an image
    fixed again later: undo that first); actions undone before the refusal stay undone."""
    with _lock(dataset):
        actions = _read(dataset)
        live = [a for a in actions if not a.undone]
        if action_id is None:
            if not live:
                raise UserError(f"nothing to undo on {dataset}")
            group = live[-1].group
        else:
            match = [a for a in actions if a.id == action_id]
            if not match:
                raise UserError(f"no fix #{action_id} on {dataset}")
            if match[0].undone:
                raise UserError(f"fix #{action_id} is already undone")
            group = match[0].group
        todo = [a for a in reversed(live) if a.group == group]
        root: Path | None = None
        if any(a.kind != "keep" for a in todo):
            _, root = _folder(dataset, "undo fixes of")
        undone: list[Action] = []
        try:
            for act in todo:
                _reverse(root, act)
                act.undone = True
                undone.append(act)
        finally:
            if undone:
                _write(dataset, actions)
                if root is not None:
                    _touch(root)
    return undone


def forget(dataset: str) -> None:
    """Drop the journal (the files stay where they are); for a dataset that was deleted or replaced."""
    with _lock(dataset):
        _journal_path(dataset).unlink(missing_ok=True)
