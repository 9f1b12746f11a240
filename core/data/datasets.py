"""One dataset catalog for the UI and the CLI: the embedded sample, folders in data/, and built-in array sets.

Folder images are decoded once with `core.data.images` (the very function prediction uses), so training sees what
prediction sees; the decoded uint8 arrays then feed tf.data with prefetch.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core import atomic, options
from core.data import decode_cache, keras_datasets, renames, trash
from core.data.images import ALLOWED_EXTENSIONS, load_image, to_mode, to_uint8_input
from core.errors import UserError
from core.paths import EMBEDDED_DATASET, REPO_ROOT, data_dir, embedded_dataset_dir, runs_dir

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "val",
    "val": "val",
    "valid": "val",
    "test": "test",
}
SPLITS = ("train", "val", "test")
SPLIT_FOLDERS = {"train": "train", "val": "validation", "test": "test"}  # the folder a split is written to
DEFAULT_VAL_SPLIT = options.DEFAULT_VAL_SPLIT
DEFAULT_SEED = options.DEFAULT_SEED
PROGRESS_EVERY_S = 0.5  # how often a long decode reports its progress


@dataclass
class DatasetInfo:
    """What the catalog knows without decoding a single image."""

    name: str
    title: str
    kind: str  # folder | keras | sklearn
    class_names: list[str]
    counts: dict[str, dict[str, int]]  # split ("train"/"val"/"test"/"all") -> class -> images
    path: Path | None = None
    layout: str = "arrays"  # flat | split | arrays
    available: bool = True
    note: str = ""
    files: dict[str, dict[str, list[Path]]] = field(default_factory=dict, repr=False)
    stray: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())

    def all_files(self) -> list[Path]:
        """Every image file of a folder dataset, split by split and class by class (empty for array datasets)."""
        return [p for per in self.files.values() for fs in per.values() for p in fs]

    def class_totals(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for per_class in self.counts.values():
            out.update(per_class)
        return {c: out.get(c, 0) for c in self.class_names}


def _is_image(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in ALLOWED_EXTENSIONS


def _flat_class_files(folder: Path, stray: list[tuple[str, str]]) -> list[Path] | None:
    """A class folder holding only files (the usual case), read with one scandir: the directory entry's type
    comes with the listing, so 7,000 images cost no stat each (the embedded sample: 0.25 s -> 0.06 s here).
    None when the folder holds a sub-folder: `_scan_classes` then walks it the slow, general way."""
    entries: list[os.DirEntry] = []
    with os.scandir(folder) as it:
        for e in it:
            if e.is_dir():
                return None
            entries.append(e)
    files = []
    for e in sorted(entries, key=lambda e: e.name):
        if e.name.startswith("."):
            continue
        f = folder / e.name
        if os.path.splitext(e.name)[1].lower() in ALLOWED_EXTENSIONS and e.is_file():
            files.append(f)
        else:
            stray.append((str(f), "not an image file"))
    return files


@dataclass
class _Listed:
    """The folders whose listings a scan's result depends on; not complete when a class folder with sub-folders
    was walked recursively (its deeper folders are not tracked, so such a scan is not remembered)."""

    folders: list[Path] = field(default_factory=list)
    complete: bool = True


def _scan_classes(root: Path, stray: list[tuple[str, str]], listed: _Listed) -> dict[str, list[Path]]:
    classes: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or entry.name == "__MACOSX":
            continue
        if entry.is_symlink():
            stray.append((str(entry), "symbolic link ignored"))
        elif entry.is_dir():
            flat = _flat_class_files(entry, stray)
            if flat is not None:
                classes[entry.name] = flat
                listed.folders.append(entry)
                continue
            listed.complete = False
            files = []
            for f in sorted(entry.rglob("*")):
                if f.is_dir() or f.name.startswith("."):
                    continue
                if f.parent != entry:
                    stray.append((str(f), "nested folder inside a class folder"))
                elif _is_image(f):
                    files.append(f)
                else:
                    stray.append((str(f), "not an image file"))
            classes[entry.name] = files
        else:
            stray.append((str(entry), "file outside any class folder"))
    return classes


SCAN_MEMO_ENTRIES = 32
# a folder changed this close to a scan may change again within its mtime's resolution (FAT: 2 s)
RACY_S = 2.0
Stamp = tuple[tuple[str, int, int], ...]  # (folder, inode, mtime in ns) for every folder a scan listed
_scan_memo: dict[tuple[str, str | None, str | None], tuple[Stamp, DatasetInfo]] = {}
_scan_memo_lock = threading.Lock()


def _listing_stamp(folders: Iterable[str | Path]) -> Stamp | None:
    try:
        return tuple((str(f), (st := os.stat(f)).st_ino, st.st_mtime_ns) for f in folders)
    except OSError:
        return None


def _copy_info(info: DatasetInfo) -> DatasetInfo:
    """Callers own what they get: the remembered scan is never handed out itself."""
    return replace(info, class_names=list(info.class_names), stray=list(info.stray),
                   counts={s: dict(per) for s, per in info.counts.items()},
                   files={s: {c: list(fs) for c, fs in per.items()} for s, per in info.files.items()})  # fmt: skip


def scan_folder(root: Path, name: str | None = None, title: str | None = None) -> DatasetInfo:
    """Read a dataset folder in either notebook layout: <root>/<class>/* or <root>/{train,val,test}/<class>/*.

    Remembered while the folders it listed keep their modification times (adding, removing or renaming an entry
    changes its folder's): the sidebar's catalog (every 10 s), the page and the trainer all ask, and a scan lists
    every file (0.03 s for the 7,000-image sample here). A scan of a folder changed within RACY_S of it is not
    remembered."""
    root = Path(root)
    key = (str(root), name, title)
    with _scan_memo_lock:
        hit = _scan_memo.get(key)
    if hit is not None and _listing_stamp(f for f, _, _ in hit[0]) == hit[0]:
        return _copy_info(hit[1])
    started_ns = time.time_ns()
    listed = _Listed()
    info = _scan_folder(root, name, title, listed)
    stamp = _listing_stamp(listed.folders) if listed.complete else None
    if stamp and max(ns for _, _, ns in stamp) < started_ns - int(RACY_S * 1e9):
        with _scan_memo_lock:
            _scan_memo.pop(key, None)
            _scan_memo[key] = (stamp, info)
            while len(_scan_memo) > SCAN_MEMO_ENTRIES:
                _scan_memo.pop(next(iter(_scan_memo)))
        return _copy_info(info)
    return info


def _scan_folder(root: Path, name: str | None, title: str | None, listed: _Listed) -> DatasetInfo:
    if not root.is_dir():
        raise UserError(f"dataset folder not found: {root}")
    listed.folders.append(root)
    stray: list[tuple[str, str]] = []
    subdirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    split_dirs = {SPLIT_ALIASES[d.name.lower()]: d for d in subdirs if d.name.lower() in SPLIT_ALIASES}
    files: dict[str, dict[str, list[Path]]] = {}
    if split_dirs and "train" in split_dirs:
        layout = "split"
        for split, d in split_dirs.items():
            listed.folders.append(d)
            files[split] = _scan_classes(d, stray, listed)
        for d in subdirs:
            if d.name.lower() not in SPLIT_ALIASES:
                stray.append((str(d), "folder beside train/ and test/ ignored"))
        for f in root.iterdir():
            if f.is_file() and not f.name.startswith(".") and f.name.lower() != "readme.md":
                stray.append((str(f), "file outside any class folder"))
    else:
        layout = "flat"
        files["all"] = _scan_classes(root, stray, listed)
        stray = [s for s in stray if not s[0].lower().endswith("readme.md")]
    class_names = sorted({c for per in files.values() for c, fs in per.items() if fs})
    for per in files.values():
        for c, fs in per.items():
            if not fs:
                stray.append((str(root / c), "empty class folder"))
    counts = {split: {c: len(per.get(c, [])) for c in class_names} for split, per in files.items()}
    return DatasetInfo(
        name=name or root.name,
        title=title or root.name,
        kind="folder",
        class_names=class_names,
        counts=counts,
        path=root,
        layout=layout,
        files={s: {c: per.get(c, []) for c in class_names} for s, per in files.items()},
        stray=stray,
    )


def _array_info(name: str) -> DatasetInfo:
    src = keras_datasets.SOURCES[name]
    available = keras_datasets.is_available(name)
    ntr, nte = src.counts
    k = len(src.class_names)
    counts = {"train": {c: ntr // k for c in src.class_names}}
    if nte:
        counts["test"] = {c: nte // k for c in src.class_names}
    note = "" if available else f"not downloaded ({src.size_note}; needs internet once)"
    if name == "digits":
        note = "bundled with scikit-learn; 80/20 split"
    return DatasetInfo(name, src.title, "sklearn" if name == "digits" else "keras", list(src.class_names), counts,
                       available=available, note=note)  # fmt: skip


def catalog() -> list[DatasetInfo]:
    """Every dataset a person can pick: the embedded sample first, then data/ folders, then built-ins."""
    out: list[DatasetInfo] = []
    emb = embedded_dataset_dir()
    if emb.is_dir():
        out.append(scan_folder(emb, EMBEDDED_DATASET, "Fashion-MNIST sample (embedded)"))
    d = data_dir()
    if d.is_dir():
        for sub in sorted(d.iterdir()):
            if sub.is_dir() and not sub.name.startswith(".") and sub.name != EMBEDDED_DATASET:
                info = scan_folder(sub)
                if len(info.class_names) >= 1:
                    out.append(info)
    out.extend(_array_info(n) for n in keras_datasets.SOURCES)
    return out


def names() -> list[str]:
    return [d.name for d in catalog()]


def get_dataset(name: str) -> DatasetInfo:
    if name == EMBEDDED_DATASET:
        return scan_folder(embedded_dataset_dir(), EMBEDDED_DATASET, "Fashion-MNIST sample (embedded)")
    if name in keras_datasets.SOURCES:
        return _array_info(name)
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise UserError(f"unknown dataset {name!r}")
    p = data_dir() / name
    if p.is_dir():
        return scan_folder(p)
    if (now := renames.current_name(name)) is not None:  # renamed since: runs keep their old name
        return scan_folder(data_dir() / now)
    raise UserError(f"unknown dataset {name!r}; `python -m core datasets` lists them")


def delete_dataset(name: str) -> str:
    """Move data/<name> to data/.trash (undo with `restore_dataset`); returns the trash entry.

    Only folders in data/ can go: the embedded sample and the built-in array sets are refused.
    """
    if name == EMBEDDED_DATASET:
        raise UserError(f"{name} is the embedded sample that ships with the app; it cannot be deleted")
    if name in keras_datasets.SOURCES:
        raise UserError(f"{name} is a built-in dataset, not a folder in data/; nothing to delete")
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise UserError(f"unknown dataset {name!r}")
    p = data_dir() / name
    if not p.is_dir() and not p.is_symlink():
        raise UserError(f"unknown dataset {name!r}; `python -m core datasets` lists them")
    return trash.move_to_trash(p, data_dir())


def restore_dataset(entry: str) -> str:
    """Put a deleted dataset back under its name; returns that name."""
    return trash.restore(data_dir(), entry).name


def trashed_datasets() -> list[trash.TrashEntry]:
    return trash.list_trash(data_dir())


# --- image properties and quality -----------------------------------------------------------------------------


@dataclass
class QualityReport:
    sizes: Counter  # (w, h) -> count
    modes: Counter  # PIL mode -> count
    unreadable: list[tuple[str, str]]  # (path, reason)
    stray: list[tuple[str, str]]
    checked: int

    @property
    def problems(self) -> list[tuple[str, str]]:
        return self.unreadable + self.stray


def _probe(path: Path) -> tuple[tuple[int, int] | None, str | None, str | None]:
    try:
        img = load_image(path, name=path.name)
        return img.size, img.mode, None
    except UserError as exc:
        return None, None, str(exc)


def check_readable(info: DatasetInfo, tries: int = 200) -> None:
    """Refuse a folder none of whose first `tries` images opens, before a run is created for it; usually the first
    image answers, where probing sizes decodes 200."""
    if info.kind != "folder":
        return
    for path in info.all_files()[:tries]:
        if _probe(path)[2] is None:
            return
    raise UserError(f"dataset {info.name} has no readable images")


def quality_report(info: DatasetInfo, limit: int | None = None) -> QualityReport:
    """Decode every image (or `limit` of them) to find sizes, modes and unreadable files."""
    sizes: Counter = Counter()
    modes: Counter = Counter()
    unreadable: list[tuple[str, str]] = []
    if info.kind != "folder":
        x = keras_datasets.SOURCES[info.name].shape
        sizes[(x[1], x[0])] = info.total
        modes["L" if x[2] == 1 else "RGB"] = info.total
        return QualityReport(sizes, modes, [], [], 0)
    paths = info.all_files()
    if limit is not None and len(paths) > limit:
        paths = random.Random(0).sample(paths, limit)
    with ThreadPoolExecutor(4) as pool:
        for p, (size, mode, err) in zip(paths, pool.map(_probe, paths), strict=True):
            if err:
                unreadable.append((str(p), err))
            else:
                sizes[size] += 1
                modes[mode] += 1
    return QualityReport(sizes, modes, unreadable, list(info.stray), len(paths))


QUALITY_CACHE_KEEP = 32  # reports kept on disk; each is a few KB, the oldest go first


def quality_cache_dir() -> Path:
    return runs_dir() / ".cache" / "quality"


def _report_from_json(saved: Any, info: DatasetInfo) -> QualityReport | None:
    """A stored report, with the scan's current stray list; None when the file is not one we wrote."""
    try:
        sizes = Counter({(int(w), int(h)): int(n) for w, h, n in saved["sizes"]})
        modes = Counter({str(m): int(n) for m, n in saved["modes"]})
        unreadable = [(str(info.path / rel), str(why)) for rel, why in saved["unreadable"]]
        return QualityReport(sizes, modes, unreadable, list(info.stray), int(saved["checked"]))
    except (KeyError, TypeError, ValueError):
        return None


def _stored_report(path: Path, info: DatasetInfo) -> QualityReport | None:
    saved = atomic.read_json(path)
    return _report_from_json(saved, info) if isinstance(saved, dict) else None


def _check_in_worker(folder: Path) -> bool:
    """Run `core.data.quality_worker` on the folder and wait; False when it could not run or failed."""
    try:
        done = subprocess.run([sys.executable, "-m", "core.data.quality_worker", str(folder)], cwd=REPO_ROOT,
                              stdin=subprocess.DEVNULL, capture_output=True, check=False)  # fmt: skip
    except OSError:
        return False
    return done.returncode == 0


def cached_quality_report(info: DatasetInfo, *, in_worker: bool = False) -> QualityReport:
    """`quality_report` of every image, kept on disk per dataset state: decoding all 7,000 images of the embedded
    sample costs ~4 s on 2 cores at every server start, while its answer only changes with the files. The key is
    the decode cache's fingerprint (each file's relative path, size and mtime), so any change is a miss.

    `in_worker`: on a miss, decode in a separate low-priority process (`core.data.quality_worker`), so a server
    answering a browser meanwhile keeps its interpreter to itself; in this process when that is not possible."""
    if info.kind != "folder" or info.path is None:
        return quality_report(info)
    rel = decode_cache.relative_paths(info.path, info.all_files())
    fp = decode_cache.fingerprint(info.path, rel)
    if fp is None:  # a file vanished while we looked: report on what is there now, remember nothing
        return quality_report(info)
    path = quality_cache_dir() / f"{fp[:40]}.json"
    rep = _stored_report(path, info)
    if rep is None and in_worker and _check_in_worker(info.path):
        rep = _stored_report(path, info)  # None when the runs folder is read-only or files changed meanwhile
    if rep is not None:
        return rep
    rep = quality_report(info)
    prefix = str(info.path) + os.sep
    try:
        atomic.write_json(path, {
            "sizes": [[w, h, n] for (w, h), n in rep.sizes.items()],
            "modes": [[m, n] for m, n in rep.modes.items()],
            "unreadable": [[p[len(prefix):] if p.startswith(prefix) else p, why] for p, why in rep.unreadable],
            "checked": rep.checked,
        })  # fmt: skip
        atomic.keep_newest(quality_cache_dir(), "*.json", QUALITY_CACHE_KEEP)
    except OSError:  # a read-only runs folder: the report is still right, just not remembered
        pass
    return rep


GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def default_input_shape(info: DatasetInfo, sample: int = 200) -> tuple[int, int, int]:
    """The most common image size, and 1 channel only when every probed image is grayscale."""
    if info.kind != "folder":
        return keras_datasets.SOURCES[info.name].shape
    stamp = (str(info.path), info.path.stat().st_mtime_ns if info.path else 0, info.total, sample)
    return _probed_shape(stamp, info)


_shape_cache: dict[tuple, tuple[int, int, int]] = {}


def _probed_shape(stamp: tuple, info: DatasetInfo) -> tuple[int, int, int]:
    """Probing decodes up to `sample` images; the Train page asks on every rerun, so remember the answer per
    folder state (path, mtime, image count)."""
    if stamp in _shape_cache:
        return _shape_cache[stamp]
    rep = quality_report(info, limit=stamp[3])
    if not rep.sizes:
        raise UserError(f"dataset {info.name} has no readable images")
    (w, h), _ = rep.sizes.most_common(1)[0]
    channels = 1 if set(rep.modes) <= GRAY_MODES else 3
    _shape_cache[stamp] = (h, w, channels)
    return (h, w, channels)


# --- splits ---------------------------------------------------------------------------------------------------


@dataclass
class SplitData:
    """Decoded images of one split: x uint8 (N,H,W,C), y int64 (N,), and file paths when from a folder."""

    x: np.ndarray
    y: np.ndarray
    paths: list[str] | None = None

    def __len__(self) -> int:
        return len(self.y)


def _split_files(files: list[Path], val_split: float, seed: int) -> tuple[list[Path], list[Path]]:
    shuffled = sorted(files)
    random.Random(seed).shuffle(shuffled)
    n_val = int(round(len(shuffled) * val_split))
    if val_split > 0 and n_val == 0 and len(shuffled) > 1:
        n_val = 1
    return shuffled[n_val:], shuffled[:n_val]


def split_file_lists(info: DatasetInfo, val_split: float, seed: int) -> dict[str, list[tuple[Path, int]]]:
    """(path, label) per split; per-class (stratified) 80/20 split where the folders don't give one."""
    out: dict[str, list[tuple[Path, int]]] = {s: [] for s in SPLITS}
    source = info.files.get("train", info.files.get("all", {}))
    for label, c in enumerate(info.class_names):
        files = source.get(c, [])
        if "val" in info.files:
            train, val = files, info.files["val"].get(c, [])
        else:
            train, val = _split_files(files, val_split, seed)
        out["train"] += [(p, label) for p in train]
        out["val"] += [(p, label) for p in val]
        out["test"] += [(p, label) for p in info.files.get("test", {}).get(c, [])]
    return out


def decode_file(path: Path, image_size: tuple[int, int], channels: int) -> np.ndarray | None:
    """One file as stored for training (uint8 at the model's size and channels); None when unreadable."""
    try:
        return to_uint8_input(load_image(path, name=path.name), image_size, channels)
    except UserError:
        return None


def _decode_rows(
    paths: list[Path],
    image_size: tuple[int, int],
    channels: int,
    progress: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(x, ok): every file decoded into one preallocated array, unreadable ones left as zeros."""
    h, w = image_size
    x = np.zeros((len(paths), h, w, channels), np.uint8)
    ok = np.zeros(len(paths), bool)
    last = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        for i, a in enumerate(pool.map(lambda p: decode_file(p, image_size, channels), paths)):
            if a is not None:
                x[i], ok[i] = a, True
            if progress is not None and time.monotonic() - last >= PROGRESS_EVERY_S:
                last = time.monotonic()
                progress((i + 1) / len(paths))
    if progress is not None:
        progress(1.0)
    return x, ok


def decode_files(items: list[tuple[Path, int]], image_size: tuple[int, int], channels: int,
                 progress: Callable[[float], None] | None = None) -> SplitData:  # fmt: skip
    """Decode once with the same code prediction uses; unreadable files are dropped (the quality report lists them)."""
    x, ok = _decode_rows([Path(p) for p, _ in items], image_size, channels, progress)
    keep = np.flatnonzero(ok)
    y = np.array([items[i][1] for i in keep], dtype=np.int64)
    return SplitData(x[keep] if len(keep) < len(items) else x, y, [str(items[i][0]) for i in keep])


def _from_cache(entry: decode_cache.Entry, root: Path, items: list[tuple[Path, int]]) -> SplitData:
    """The requested items sliced out of a cached dataset (a copy in RAM), exactly as decode_files would give them."""
    index = entry.index()
    rows = np.array([index[Path(p).relative_to(root).as_posix()] for p, _ in items], dtype=np.int64)
    keep = np.flatnonzero(entry.ok[rows]) if len(rows) else rows
    x = entry.take(rows[keep])  # none kept: an empty (0, h, w, c) array, as before
    y = np.array([items[i][1] for i in keep], dtype=np.int64)
    return SplitData(x, y, [str(items[i][0]) for i in keep])


def _cached_folder(info: DatasetInfo, wanted: int, image_size: tuple[int, int], channels: int,
                   progress: Callable[[float], None] | None) -> decode_cache.Entry | None:  # fmt: skip
    """The whole dataset from the decode cache; on a miss it is decoded and stored only when the request covers
    at least half of it (a few sampled images should not cost decoding thousands)."""
    files = info.all_files()
    if not files or info.path is None:
        return None
    return decode_cache.cached_dataset(
        info.path, files, image_size, channels,
        lambda paths: _decode_rows(paths, image_size, channels, progress),
        fill=2 * wanted >= len(files),
    )  # fmt: skip


def resize_arrays(x: np.ndarray, image_size: tuple[int, int], channels: int) -> np.ndarray:
    if x.shape[1:3] == tuple(image_size) and x.shape[3] == channels:
        return x
    out = np.empty((len(x), *image_size, channels), np.uint8)
    for i, a in enumerate(x):
        out[i] = to_uint8_input(Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a), image_size, channels)
    return out


def stratified_indices(y: np.ndarray, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_split))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def load_splits(
    name: str,
    image_size: tuple[int, int],
    channels: int,
    *,
    val_split: float = DEFAULT_VAL_SPLIT,
    seed: int = DEFAULT_SEED,
    splits: tuple[str, ...] = SPLITS,
    limit: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict[str, SplitData]:
    """Decoded train/val/test arrays at the model's input size and channels (missing splits are empty).

    Folder datasets go through `core.data.decode_cache`: the first call decodes every image once and stores them; later
    calls (another run, another process) slice the stored arrays without opening a file. `progress(fraction)` is
    called now and then while images are being decoded.
    """
    info = get_dataset(name)
    if not info.available:
        raise UserError(keras_datasets.missing_message(name))
    out: dict[str, SplitData] = {}
    if info.kind == "folder":
        lists = split_file_lists(info, val_split, seed)
        picked = {}
        for s in splits:
            items = lists[s]
            if limit and len(items) > limit:
                items = random.Random(seed).sample(items, limit)
            picked[s] = items
        wanted = sum(len(v) for v in picked.values())
        entry = _cached_folder(info, wanted, image_size, channels, progress) if wanted else None
        for s, items in picked.items():
            if entry is not None and info.path is not None:
                out[s] = _from_cache(entry, info.path, items)
            else:
                out[s] = decode_files(items, image_size, channels, progress)
        return out
    arrays = keras_datasets.load_arrays(name)
    xtr, ytr = arrays["train"]
    tr_idx, va_idx = stratified_indices(ytr, val_split, seed)
    raw = {"train": (xtr[tr_idx], ytr[tr_idx]), "val": (xtr[va_idx], ytr[va_idx])}
    raw["test"] = arrays.get("test", (xtr[:0], ytr[:0]))
    for s in splits:
        x, y = raw[s]
        if limit and len(y) > limit:
            pick = np.sort(np.random.default_rng(seed).choice(len(y), limit, replace=False))
            x, y = x[pick], y[pick]
        out[s] = SplitData(resize_arrays(x, image_size, channels), y)
    return out


def evaluation_split(name: str, image_size, channels, *, val_split=DEFAULT_VAL_SPLIT, seed=DEFAULT_SEED,
                     limit: int | None = None) -> tuple[str, SplitData]:  # fmt: skip
    """The test split, or the validation split when the dataset has no test images."""
    test = load_splits(
        name, image_size, channels, val_split=val_split, seed=seed, splits=("test",), limit=limit
    )
    if len(test["test"]):
        return "test", test["test"]
    val = load_splits(
        name, image_size, channels, val_split=val_split, seed=seed, splits=("val",), limit=limit
    )
    if not len(val["val"]):
        raise UserError(f"dataset {name} has neither test nor validation images")
    return "val", val["val"]


GATHER_CALLS = 2  # batches gathered at once: a gather is a copy, two keep ahead of any model on a CPU
PREFETCH_BATCHES = 2
DECODE_CALLS = max(1, min(8, os.cpu_count() or 1))  # files decoded at once where a pipeline decodes


def make_tf_dataset(data: SplitData, batch_size: int, *, shuffle: bool, seed: int = 0,
                    num_classes: int = 0, label_mode: str = "sparse"):  # fmt: skip
    """uint8 arrays -> float32 batches with prefetch; the arrays are already decoded once, so no cache is needed.

    Batches are gathered from the arrays by index instead of copying them whole into a TensorFlow constant first
    (`from_tensor_slices`): that copy held the first batch back by ~0.5 s per 100 MB and doubled the memory. The
    shuffle draws the same order either way (it depends on the seed and the buffer, not on the elements).
    """
    import tensorflow as tf

    x = data.x
    y = data.y
    if label_mode == "categorical":
        y = np.eye(num_classes, dtype=np.float32)[y]
    labels = tf.constant(y)
    shape = tuple(int(d) for d in x.shape[1:])

    def rows(idx: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x[idx])

    def gather(idx):
        batch = tf.numpy_function(rows, [idx], tf.uint8, stateful=False)
        return tf.cast(tf.ensure_shape(batch, (None, *shape)), tf.float32), tf.gather(labels, idx)

    ds = tf.data.Dataset.range(len(x))
    if shuffle:
        ds = ds.shuffle(min(len(x), 20000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(gather, num_parallel_calls=GATHER_CALLS)
    return without_autotune(ds.prefetch(PREFETCH_BATCHES))


def without_autotune(ds: Any) -> Any:
    """The pipeline with tf.data's autotuner off (fixed parallelism and prefetch are set where it is built).

    The autotuner runs a model thread per iterator, and Keras makes a new iterator every epoch: destroying the
    last one waits until that thread's timed sleep ends, and the sleep doubles while an iterator lives. Measured
    on 2 cores (TF 2.21): 15-17 s with the CPU idle at the start of most epochs of a 16-epoch `small-best` run
    on Fashion-MNIST (gdb: ~RootDataset::Iterator waiting in ~LogicalThreadWrapper, the model thread in
    Model::OptimizeLoop), a third of the run's time; with it off, none.
    """
    import tensorflow as tf

    opts = tf.data.Options()
    opts.autotune.enabled = False
    return ds.with_options(opts)


# --- class weights and samples --------------------------------------------------------------------------------


def class_weights(counts: list[int], method: str) -> dict[int, float] | None:
    """balanced: w_c = N / (k n_c); notebook: w_c = (1/n_c)(N/2), as the ternary notebook computes."""
    if method in (None, "none"):
        return None
    n = float(sum(counts))
    k = len(counts)
    if method == "balanced":
        return {i: (n / (k * c) if c else 0.0) for i, c in enumerate(counts)}
    if method == "notebook":
        return {i: ((1.0 / c) * (n / 2.0) if c else 0.0) for i, c in enumerate(counts)}
    raise UserError(f"unknown class-weight method {method!r}; use none, balanced or notebook")


def imbalance_ratio(counts: list[int]) -> float:
    """Largest class over smallest (inf when a class is empty)."""
    nonzero = [c for c in counts if c]
    if not nonzero or len(nonzero) < len(counts):
        return float("inf")
    return max(counts) / min(counts)


def samples(info: DatasetInfo, per_class: int, seed: int) -> dict[str, list[tuple[str, np.ndarray]]]:
    """A few random images per class for display: (caption, uint8 array HxW or HxWx3)."""
    rng = random.Random(seed)
    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    if info.kind == "folder":
        for c in info.class_names:
            pool = [p for per in info.files.values() for p in per.get(c, [])]
            picks = rng.sample(pool, min(per_class, len(pool)))
            shown = []
            for p in picks:
                try:
                    img = load_image(p, name=p.name)
                    img = to_mode(img, 1 if img.mode in GRAY_MODES else 3)
                    shown.append((p.name, np.asarray(img)))
                except UserError:
                    continue
            out[c] = shown
        return out
    if not info.available:
        raise UserError(keras_datasets.missing_message(info.name))
    x, y = keras_datasets.load_arrays(info.name)["train"]
    for label, c in enumerate(info.class_names):
        idx = np.flatnonzero(y == label)
        chosen = rng.sample([int(i) for i in idx], min(per_class, len(idx)))
        out[c] = [(f"#{i}", x[i][..., 0] if x.shape[-1] == 1 else x[i]) for i in chosen]
    return out


def thumbnail_strip(images: list[np.ndarray], cell: int = 72, gap: int = 6) -> np.ndarray:
    """Images side by side as one RGBA picture, each fitted into a cell×cell square (small ones enlarged without
    blurring), on a transparent background. The Datasets page shows one strip per class: 10 pictures instead
    of 80 (with st.image, which has the browser fetch each: 0.5 s instead of 1.3 s from sending them to all drawn,
    measured on 2 busy cores)."""
    out = np.zeros((cell, max(0, len(images) * (cell + gap) - gap), 4), np.uint8)
    for i, a in enumerate(images):
        img = Image.fromarray(np.asarray(a, np.uint8)).convert("RGBA")
        scale = cell / max(img.size)
        w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
        img = img.resize((w, h), Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS)
        x, y = i * (cell + gap) + (cell - w) // 2, (cell - h) // 2
        out[y : y + h, x : x + w] = np.asarray(img)
    return out


def first_image(info: DatasetInfo, seed: int = 0) -> np.ndarray:
    """One image for the augmentation preview."""
    for shown in samples(info, 1, seed).values():
        if shown:
            return shown[0][1]
    raise UserError(f"dataset {info.name} has no readable images")
