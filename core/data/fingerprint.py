"""A dataset's fingerprint: one hash of every image's bytes, its class (label), its split folder and its name.

A run records the fingerprint of the data it was created on (`RunConfig.dataset_fingerprint`), so a run always
says exactly which data it saw, and the runs table can say when the dataset has changed since. The split a run
trained on then follows from this plus the run's own `seed` and `val_split` (both in its config).

Hashing 7,000 files on every runs listing would be slow, so each file's SHA-256 is kept in a small JSON cache per
dataset folder (`runs/.cache/fingerprints/`), keyed by (relative path, size, mtime_ns) the way make and git's
index decide a file is unchanged: an unchanged folder costs one directory scan and a stat per file. The built-in
array datasets (Keras downloads, scikit-learn's digits) are fingerprinted from the files they load from, hashed
once under the same rule. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from core import atomic
from core.data import keras_datasets, renames
from core.data.datasets import DatasetInfo, get_dataset
from core.data.images import MAX_FILE_BYTES
from core.errors import UserError
from core.paths import EMBEDDED_DATASET, data_dir, embedded_dataset_dir, runs_dir

VERSION = "fp1"  # bump when what goes into the hash changes: old fingerprints then read as "changed"
SHORT = 12  # hex digits shown in tables
CACHE_KEEP = 64  # cache files kept (one per dataset folder); the least recently written go first
_THREADS = 4  # a cold hash is mostly waiting on the disk

# what the runs table says about a run's data, next to the run
UNCHANGED = "unchanged"
CHANGED = "dataset changed"
MISSING = "dataset gone"
UNKNOWN = "not recorded"


@dataclass(frozen=True)
class Fingerprint:
    digest: str  # "fp1:" + SHA-256 hex of the dataset's canonical listing
    files: int  # files that went into it
    hashed: int  # files read this time (the rest came from the cache)

    @property
    def short(self) -> str:
        return short(self.digest)


def short(digest: str | None) -> str:
    """The first hex digits, enough to tell two fingerprints apart in a table."""
    return (digest or "").split(":", 1)[-1][:SHORT]


def cache_dir() -> Path:
    return runs_dir() / ".cache" / "fingerprints"


def _cache_file(key: str) -> Path:
    return cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


def _read_cache(path: Path) -> dict[str, tuple[int, int, str]]:
    """{relative path: (size, mtime_ns, sha256)}; anything malformed is ignored (the cache is only a shortcut)."""
    saved = atomic.read_json(path, {})
    files = saved.get("files") if isinstance(saved, dict) and saved.get("version") == VERSION else None
    if not isinstance(files, dict):
        return {}
    out = {}
    for rel, row in files.items():
        if isinstance(row, list) and len(row) == 3 and isinstance(row[0], int) and isinstance(row[1], int):
            if isinstance(row[2], str):
                out[rel] = (row[0], row[1], row[2])
    return out


def _write_cache(path: Path, key: str, entries: dict[str, tuple[int, int, str]]) -> None:
    body = {"version": VERSION, "key": key, "files": {k: list(v) for k, v in entries.items()}}
    try:
        atomic.write_bytes(path, json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        _prune_cache()
    except OSError:
        pass  # a read-only runs folder: fingerprints still work, just without the shortcut


def _prune_cache() -> None:
    files = sorted(cache_dir().glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in files[CACHE_KEEP:]:
        old.unlink(missing_ok=True)


def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of the bytes; a file too big to be an image (or unreadable) is stood for by its size and mtime,
    so a hostile folder costs no more than a stat."""
    if size > MAX_FILE_BYTES:
        return f"big:{size}:{mtime_ns}"
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        return f"unreadable:{size}:{mtime_ns}:{exc.errno}"


def _hash_files(files: Iterable[tuple[str, str]], cache_key: str) -> tuple[dict[str, str], int]:
    """{key: digest} for (key, path) pairs, reusing the cache where size and mtime_ns still match."""
    cache_path = _cache_file(cache_key)
    cached = _read_cache(cache_path)
    fresh: dict[str, tuple[int, int, str]] = {}
    todo: list[tuple[str, str, int, int]] = []
    for key, path in files:
        try:
            st = os.stat(path)
        except OSError:
            fresh[key] = (-1, -1, "missing")
            continue
        hit = cached.get(key)
        if hit is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            fresh[key] = hit
        else:
            todo.append((key, path, st.st_size, st.st_mtime_ns))
    if todo:
        with ThreadPoolExecutor(max_workers=min(_THREADS, len(todo))) as pool:
            digests = pool.map(lambda t: _file_digest(t[1], t[2], t[3]), todo)
            for (key, _, size, mtime), digest in zip(todo, digests, strict=True):
                fresh[key] = (size, mtime, digest)
    if todo or fresh.keys() != cached.keys():
        _write_cache(cache_path, cache_key, {k: v for k, v in fresh.items() if v[2] != "missing"})
    return {k: v[2] for k, v in fresh.items()}, len(todo)


def _combine(header: list[str], rows: list[str]) -> str:
    text = "".join(f"{line}\n" for line in [VERSION, *header, *sorted(rows)])
    return f"{VERSION}:{hashlib.sha256(text.encode('utf-8', 'surrogateescape')).hexdigest()}"


def _folder_fingerprint(info: DatasetInfo) -> Fingerprint:
    assert info.path is not None
    root = Path(info.path)
    prefix = len(str(root)) + 1
    items: list[
        tuple[str, str, str, str]
    ] = []  # (split, class, relative path, path); strings: pathlib is slow
    for split, per_class in info.files.items():
        for class_name, paths in per_class.items():
            for p in paths:
                full = str(p)
                items.append((split, class_name, full[prefix:].replace(os.sep, "/"), full))
    digests, hashed = _hash_files(((rel, full) for _, _, rel, full in items), f"folder:{root.resolve()}")
    rows = [f"{split}\t{c}\t{rel.rsplit('/', 1)[-1]}\t{digests[rel]}" for split, c, rel, _ in items]
    header = ["folder", info.layout, json.dumps(info.class_names)]
    return Fingerprint(_combine(header, rows), len(items), hashed)


def array_source_files(name: str) -> list[Path]:
    """The files a built-in array dataset is loaded from (its pixels and labels), as `keras_datasets` reads them."""
    if name == "digits":
        spec = importlib.util.find_spec("sklearn")
        if spec is None or spec.origin is None:
            return []
        return [Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"]
    if name == "fashion_mnist":
        debian = [
            keras_datasets.DEBIAN_FASHION / f for pair in keras_datasets.FASHION_FILES.values() for f in pair
        ]
        if all(p.is_file() for p in debian):
            return debian
    return [path for _, path in keras_datasets.placements(name)]


def _array_fingerprint(info: DatasetInfo) -> Fingerprint | None:
    files = array_source_files(info.name)
    if not files or not all(p.is_file() for p in files):
        return None
    digests, hashed = _hash_files(((str(p), str(p)) for p in files), "arrays")
    rows = [f"{p.name}\t{digests[str(p)]}" for p in files]
    return Fingerprint(
        _combine([info.kind, info.name, json.dumps(info.class_names)], rows), len(files), hashed
    )


def fingerprint_info(info: DatasetInfo) -> Fingerprint | None:
    """The fingerprint of a scanned dataset; None when its data is not on this machine."""
    if info.kind == "folder" and info.path is not None:
        return _folder_fingerprint(info)
    return _array_fingerprint(info) if info.available else None


def dataset_fingerprint(name: str) -> Fingerprint | None:
    """The fingerprint of a catalog dataset by name; None when it is unknown here or its data is not available."""
    try:
        info = get_dataset(name)
    except (UserError, OSError):
        return None
    return fingerprint_info(info)


# The runs table is drawn on every click of the Train page. Between draws a folder dataset's fingerprint is reused
# while none of its folders' mtimes moved (adding, removing, renaming or relabelling a file moves one) and it is
# younger than LISTING_MAX_AGE_S (an in-place edit of a file's bytes shows up within that). Runs always take a
# fresh fingerprint when they are created.
LISTING_MAX_AGE_S = 30.0
_MAX_SIGNATURE_DIRS = 256  # a folder with more sub-folders than a dataset has is simply not memoised
_listing_memo: dict[str, tuple[tuple, float, str | None]] = {}


def _folder_signature(name: str) -> tuple | None:
    """(path, mtime_ns) of a folder dataset's root, split and class folders; None when not a folder dataset."""
    if name in keras_datasets.SOURCES or not name or "/" in name or name.startswith("."):
        return None
    root = (
        embedded_dataset_dir()
        if name == EMBEDDED_DATASET
        else data_dir() / (renames.current_name(name) or name)
    )
    sig: list[tuple[str, int]] = []
    level = [root]
    try:
        for _ in range(3):  # root, its class or split folders, the class folders inside splits
            below: list[Path] = []
            for d in level:
                sig.append((str(d), os.stat(d).st_mtime_ns))
                with os.scandir(d) as it:
                    below += [Path(e.path) for e in it if e.is_dir(follow_symlinks=False)]
            if len(sig) + len(below) > _MAX_SIGNATURE_DIRS:
                return None
            level = below
    except OSError:
        return None
    return tuple(sig)


def listing_fingerprint(name: str) -> str | None:
    """The dataset's fingerprint digest for a listing, reusing the last one while its folders look untouched."""
    sig = _folder_signature(name)
    hit = _listing_memo.get(name)
    if (
        sig is not None
        and hit is not None
        and hit[0] == sig
        and time.monotonic() - hit[1] < LISTING_MAX_AGE_S
    ):
        return hit[2]
    fp = dataset_fingerprint(name)
    digest = fp.digest if fp else None
    if sig is not None:
        _listing_memo[name] = (sig, time.monotonic(), digest)
    return digest


def data_states(configs: Iterable[tuple[str, str, str | None]]) -> dict[str, tuple[str, str | None]]:
    """For (run id, dataset, recorded fingerprint) triples: run id -> (UNCHANGED | CHANGED | MISSING | UNKNOWN,
    the dataset's fingerprint now). Each dataset is fingerprinted once however many runs used it."""
    now: dict[str, str | None] = {}
    out: dict[str, tuple[str, str | None]] = {}
    for run_id, dataset, recorded in configs:
        if dataset not in now:
            now[dataset] = listing_fingerprint(dataset) if dataset else None
        current = now[dataset]
        if not recorded:
            out[run_id] = (UNKNOWN, current)
        elif current is None:
            out[run_id] = (MISSING, None)
        else:
            out[run_id] = (UNCHANGED if current == recorded else CHANGED, current)
    return out


def describe_state(state: str, recorded: str | None, current: str | None) -> str:
    """One line for the CLI: what changed, with both short fingerprints."""
    if state == CHANGED:
        return f"dataset changed since this run (fingerprint {short(recorded)} -> {short(current)})"
    if state == MISSING:
        return f"dataset gone or not available here (the run saw fingerprint {short(recorded)})"
    return ""
