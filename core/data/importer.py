"""Import a person's zip or folder of class folders into data/<name>/, treating every byte as hostile.

Nothing is ever written outside a private temp folder inside the datasets folder; the finished dataset appears
under its name in one rename, so a failed or interrupted import leaves no half-made dataset behind. Every kept
picture is decoded with `core.data.images.load_image` and stored re-encoded, so training reads exactly what prediction
would read from the original file.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import stat
import tempfile
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from core import paths
from core.data.datasets import SPLIT_ALIASES as CATALOG_SPLIT_ALIASES
from core.data.datasets import SPLIT_FOLDERS
from core.data.images import ALLOWED_EXTENSIONS, flatten, is_heif, load_image
from core.errors import UserError
from core.validation import human_bytes, regular_file

# one alias table with the catalog (`training/`, `valid/`... read the same both ways); values are folder names
SPLIT_ALIASES: dict[str, str] = {
    alias: SPLIT_FOLDERS[split] for alias, split in CATALOG_SPLIT_ALIASES.items()
}
FLAT = "all"  # class_counts key for a dataset imported without train/validation/test folders

_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1 << 20
_MAX_CLASS_NAME = 100
_JPEG_SOURCES = ("JPEG", "MPO", "HEIF")
# built-in datasets (core.data.keras_datasets) live in the same catalog: an import must not shadow one
RESERVED_NAMES: tuple[str, ...] = ("digits", "mnist", "fashion_mnist", "cifar10", paths.EMBEDDED_DATASET)
_UTF8_FLAG = 0x800
MAX_ZIP_BYTES = 8 * 2**30


@dataclass
class ImportReport:
    name: str
    path: Path
    class_counts: dict[str, dict[str, int]]
    imported: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    layout: str = "flat"  # "flat": data/<name>/<class>/*, "split": data/<name>/<split>/<class>/*


@dataclass
class _Entry:
    """One file or folder of the source, by its untrusted display name and its vetted path parts."""

    label: str
    parts: tuple[str, ...]
    is_dir: bool
    read: Callable[[], Iterator[bytes]] | None = None
    full: tuple[str, ...] = ()  # parts before any wrapper folder was stripped, for the report

    def __post_init__(self) -> None:
        self.full = self.full or self.parts


class _TooBig(Exception):
    pass


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", ".."):
        raise UserError(
            f"dataset name must be letters, digits, '-', '_' or '.' (not starting with '.', at most 100): {name!r}"
        )
    if name.lower() == paths.EMBEDDED_DATASET.lower():
        raise UserError(f"{name} is the built-in sample; pick another name")
    if name.lower() in {n.lower() for n in RESERVED_NAMES}:
        raise UserError(f"{name} is the name of a built-in dataset; pick another name")


def _unsafe_reason(raw: str) -> str | None:
    """Why a member name could escape the target folder, or None when it is a plain relative path."""
    if "\x00" in raw:
        return "name contains a NUL byte"
    if raw.startswith(("/", "\\")):
        return "absolute path"
    if _DRIVE_RE.match(raw):
        return "path with a drive letter"
    if any(p == ".." for p in re.split(r"[\\/]+", raw)):
        return "path goes outside the folder (..)"
    return None


def _split_parts(raw: str) -> tuple[str, ...]:
    return tuple(p for p in re.split(r"[\\/]+", raw) if p not in ("", "."))


def _ignored(parts: tuple[str, ...], is_dir: bool) -> tuple[str, str] | None:
    """(what to report, why) for metadata and hidden entries; the report names the outermost ignored folder once."""
    for i, part in enumerate(parts):
        if part == "__MACOSX":
            reason = "macOS metadata (__MACOSX)"
        elif part.startswith("."):
            reason = "hidden file or folder"
        elif any(unicodedata.category(ch) == "Cc" for ch in part):
            return "/".join(parts) + ("/" if is_dir else ""), "name contains control characters"
        else:
            continue
        inner = i < len(parts) - 1 or is_dir
        return "/".join(parts[: i + 1]) + ("/" if inner else ""), reason
    return None


class _Skips:
    """Skipped entries in order, each reported once (a __MACOSX folder is one line, not one per file)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self._seen: set[str] = set()

    def add(self, label: str, reason: str) -> None:
        if label not in self._seen:
            self._seen.add(label)
            self.items.append((label, reason))


def _stream_limited(
    chunks: Iterator[bytes], member_cap: int, budget: list[int], total_cap: int, kind: str
) -> bytes:
    """Read one member in chunks, charging every decompressed byte to the shared total; never trusts headers."""
    out = bytearray()
    for chunk in chunks:
        budget[0] += len(chunk)
        if budget[0] > total_cap:
            raise UserError(
                f"{kind} expands past {human_bytes(total_cap)}; import stopped (split it into smaller parts)"
            )
        out += chunk
        if len(out) > member_cap:
            raise _TooBig
    return bytes(out)


# ---------------------------------------------------------------- sources


def _zip_entries(zf: zipfile.ZipFile, max_members: int, skips: _Skips) -> list[_Entry]:
    infos = zf.infolist()
    if len(infos) > max_members:
        raise UserError(f"zip has more than {max_members} entries; import stopped")
    entries: list[_Entry] = []
    for info in infos:
        raw = member_name(info)
        reason = _unsafe_reason(raw)
        if reason is None and stat.S_ISLNK(info.external_attr >> 16):
            reason = "symbolic link"
        parts = _split_parts(raw)
        if reason is None and not parts:
            reason = "empty name"
        if reason is not None:
            skips.add(raw, reason)
            continue
        ignored = _ignored(parts, info.is_dir())
        if ignored is not None:
            skips.add(*ignored)
            continue

        def read(info: zipfile.ZipInfo = info) -> Iterator[bytes]:
            with zf.open(info) as fh:
                while chunk := fh.read(_CHUNK):
                    yield chunk

        entries.append(_Entry(raw, parts, info.is_dir(), None if info.is_dir() else read))
    return entries


def member_name(info: zipfile.ZipInfo) -> str:
    """A member's name as its author wrote it.

    Without the UTF-8 flag, zipfile decodes names as cp437, but many tools (macOS Archive Utility, 7-Zip, Linux
    zip) write UTF-8 without setting it: when the cp437 reading re-encodes to valid UTF-8, that is the name.
    """
    name = info.filename
    if info.flag_bits & _UTF8_FLAG:
        return name
    try:
        return name.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return name


def _read_regular_file(path: Path) -> Iterator[bytes]:
    # O_NOFOLLOW: a file swapped for a symlink after we looked at it is still refused; O_NONBLOCK: a fifo swapped
    # in opens at once (instead of waiting for a writer) and the fstat below refuses it
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise OSError("not a regular file")
        while chunk := fh.read(_CHUNK):
            yield chunk


def _folder_entries(root: Path, max_members: int, skips: _Skips) -> list[_Entry]:
    entries: list[_Entry] = []
    count = 0

    def walk(folder: Path, prefix: tuple[str, ...]) -> None:
        nonlocal count
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            skips.add("/".join(prefix) + "/", f"cannot read folder ({exc.strerror or exc})")
            return
        for child in children:
            count += 1
            if count > max_members:
                raise UserError(f"folder has more than {max_members} entries; import stopped")
            parts = (*prefix, child.name)
            label = "/".join(parts)
            if child.is_symlink():
                skips.add(label, "symbolic link")
                continue
            is_dir = child.is_dir(follow_symlinks=False)
            ignored = _ignored(parts, is_dir)
            if ignored is not None:
                skips.add(*ignored)
                continue
            if is_dir:
                entries.append(_Entry(label + "/", parts, True))
                walk(Path(child.path), parts)
            elif child.is_file(follow_symlinks=False):
                entries.append(
                    _Entry(label, parts, False, functools.partial(_read_regular_file, Path(child.path)))
                )
            else:
                skips.add(label, "not a regular file")

    walk(root, ())
    return entries


# ---------------------------------------------------------------- layout


def _strip_wrapper(entries: list[_Entry]) -> list[_Entry]:
    """Drop one folder that wraps everything (how most zip tools pack a folder), unless it is a split folder."""
    tops = {e.parts[0] for e in entries}
    if len(tops) != 1:
        return entries
    (top,) = tops
    if top.lower() in SPLIT_ALIASES:
        return entries
    if any(not e.is_dir and len(e.parts) == 1 for e in entries):
        return entries
    if not any(len(e.parts) >= 3 for e in entries if not e.is_dir) and not any(
        len(e.parts) == 2 and e.is_dir for e in entries
    ):
        return entries
    return [_Entry(e.label, e.parts[1:], e.is_dir, e.read, e.full) for e in entries if len(e.parts) > 1]


def _is_split_layout(entries: list[_Entry]) -> bool:
    """Split layout when some top folder named train/val/validation/test holds class folders (not pictures)."""
    for e in entries:
        if len(e.parts) >= 2 and e.parts[0].lower() in SPLIT_ALIASES:
            if (e.is_dir and len(e.parts) == 2) or (not e.is_dir and len(e.parts) >= 3):
                return True
    return False


def _safe_stem(stem: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem).strip("._") or "image"
    return cleaned[:100]


def _encode(img: Image.Image, source_format: str | None) -> tuple[Image.Image, str, dict]:
    """Store the flattened (L/RGB, alpha on white) picture: JPEG q95 for colour photos, PNG for the rest."""
    flat = flatten(img)
    if source_format in _JPEG_SOURCES and flat.mode == "RGB":
        return flat, ".jpg", {"format": "JPEG", "quality": 95, "subsampling": 0}
    return flat, ".png", {"format": "PNG"}


def import_dataset(
    source: Path,
    name: str,
    *,
    data_dir: Path | None = None,
    max_members: int = 200_000,
    max_total_bytes: int = 4 * 2**30,
    max_member_bytes: int = 64 * 2**20,
) -> ImportReport:
    """Import `source` (zip or folder) as dataset `name`; UserError with one line for anything a person can fix."""
    _check_name(name)
    source = Path(source)
    data_dir = Path(data_dir) if data_dir is not None else paths.data_dir()
    target = data_dir / name
    if target.exists() or target.is_symlink():
        raise UserError(f"a dataset named {name} already exists")
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise UserError(f"no such file or folder: {source.name}") from None
    except OSError as exc:
        raise UserError(f"cannot read {source.name} ({exc.strerror or exc})") from None

    skips = _Skips()
    if stat.S_ISDIR(st.st_mode):
        entries = _folder_entries(source, max_members, skips)
        return _import(entries, "folder", target, skips, max_member_bytes, max_total_bytes)
    # a fifo would block the import forever and /dev/zero never ends: only a regular file can be a zip
    regular_file(source, MAX_ZIP_BYTES, "zip file")
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise UserError(f"not a zip file: {source.name}") from None
    with zf:
        entries = _zip_entries(zf, max_members, skips)
        return _import(entries, "zip", target, skips, max_member_bytes, max_total_bytes)


def _import(
    entries: list[_Entry],
    kind: str,
    target: Path,
    skips: _Skips,
    max_member_bytes: int,
    max_total_bytes: int,
) -> ImportReport:
    """Build in a private temp folder beside the target, then publish it with one rename (or leave no trace)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=target.parent))
    except OSError as exc:
        raise UserError(f"cannot write to the datasets folder ({exc.strerror or exc})") from None
    try:
        report = _build(entries, tmp, kind, skips, max_member_bytes, max_total_bytes)
        if target.exists() or target.is_symlink():
            raise UserError(f"a dataset named {target.name} already exists")
        try:
            os.rename(tmp, target)
        except OSError as exc:
            raise UserError(f"cannot create dataset {target.name} ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.name = target.name
    report.path = target
    return report


def _classify(
    entries: list[_Entry], skips: _Skips
) -> tuple[bool, dict[tuple[str, str], str], set[tuple[str, str]], list[tuple[str, str, _Entry]]]:
    """Sort entries into (split, class) image files; everything that does not fit the layout is reported."""
    entries = _strip_wrapper(entries) if entries else entries
    split_layout = _is_split_layout(entries)
    # (split, class) -> label, so empty class folders get reported; classes that held any file at all
    class_dirs: dict[tuple[str, str], str] = {}
    had_files: set[tuple[str, str]] = set()
    files: list[tuple[str, str, _Entry]] = []
    for e in entries:
        parts = e.parts
        if split_layout:
            split = SPLIT_ALIASES.get(parts[0].lower())
            if split is None:
                if not e.is_dir:
                    skips.add(e.label, "outside the train/validation/test folders")
                continue
            rest = parts[1:]
        else:
            split, rest = FLAT, parts
        if e.is_dir:
            if len(rest) == 1 and len(rest[0]) <= _MAX_CLASS_NAME:
                class_dirs.setdefault((split, rest[0]), "/".join(e.full) + "/")
            continue
        if len(rest) < 2:
            skips.add(e.label, "not inside a class folder")
            continue
        if len(rest[0]) > _MAX_CLASS_NAME:
            skips.add(e.label, f"class folder name longer than {_MAX_CLASS_NAME} characters")
            continue
        class_dirs.setdefault((split, rest[0]), "/".join(e.full[: len(e.full) - len(rest) + 1]) + "/")
        had_files.add((split, rest[0]))
        if len(rest) > 2:
            skips.add(e.label, "in a folder nested inside a class folder (only <class>/<image> is read)")
            continue
        ext = os.path.splitext(rest[1])[1].lower()
        if ext not in ALLOWED_EXTENSIONS:
            skips.add(e.label, f"not an image file type ({ext or 'no extension'})")
            continue
        files.append((split, rest[0], e))
    files.sort(key=lambda f: (f[0], f[1], f[2].parts[-1], f[2].label))
    return split_layout, class_dirs, had_files, files


def _read_member(
    e: _Entry, skips: _Skips, budget: list[int], max_member: int, max_total: int, kind: str
) -> bytes | None:
    assert e.read is not None
    try:
        return _stream_limited(e.read(), max_member, budget, max_total, kind)
    except _TooBig:
        skips.add(e.label, f"file larger than {human_bytes(max_member)}")
    except UserError:
        raise
    except NotImplementedError:
        skips.add(e.label, "compressed with a method we cannot read")
    except RuntimeError as exc:  # zipfile says so for encrypted members
        skips.add(e.label, "encrypted" if "encrypt" in str(exc).lower() else "cannot read entry")
    except Exception:  # BadZipFile (CRC), zlib.error, OSError, EOFError: damaged entry or unreadable file
        skips.add(e.label, "corrupt or unreadable")
    return None


def _build(
    entries: list[_Entry],
    out: Path,
    kind: str,
    skips: _Skips,
    max_member_bytes: int,
    max_total_bytes: int,
) -> ImportReport:
    split_layout, class_dirs, had_files, files = _classify(entries, skips)

    budget = [0]
    counts: dict[tuple[str, str], int] = dict.fromkeys(class_dirs, 0)
    used_names: dict[tuple[str, str], set[str]] = {}
    for split, cls, e in files:
        data = _read_member(e, skips, budget, max_member_bytes, max_total_bytes, kind)
        if data is None:
            continue
        try:
            flat, ext, save_kwargs = checked_image(data)
        except UserError as exc:
            skips.add(e.label, str(exc))
            continue

        key = (split, cls)
        taken = used_names.setdefault(key, set())
        stem = _safe_stem(os.path.splitext(e.parts[-1])[0])
        candidate, n = stem, 0
        while (candidate + ext).lower() in taken:
            n += 1
            candidate = f"{stem}-{n}"
        taken.add((candidate + ext).lower())

        folder = out / cls if split == FLAT else out / split / cls
        try:
            folder.mkdir(parents=True, exist_ok=True)
            flat.save(folder / (candidate + ext), **save_kwargs)
        except OSError as exc:
            raise UserError(f"cannot write the dataset ({exc.strerror or exc})") from None
        counts[key] = counts.get(key, 0) + 1

    class_counts: dict[str, dict[str, int]] = {}
    for (split, cls), n in sorted(counts.items()):
        if n == 0:
            reason = "no usable images in class folder" if (split, cls) in had_files else "empty class folder"
            skips.add(class_dirs.get((split, cls), f"{cls}/"), reason)
            continue
        class_counts.setdefault(split, {})[cls] = n

    classes = sorted({cls for per_split in class_counts.values() for cls in per_split})
    if len(classes) < 2:
        found = ", ".join(classes) if classes else "none"
        raise UserError(f"need at least two classes with images; found {len(classes)} ({found})")

    return ImportReport(
        name=out.name,
        path=out,
        class_counts=class_counts,
        imported=sum(sum(c.values()) for c in class_counts.values()),
        skipped=skips.items,
        layout="split" if split_layout else "flat",
    )


def checked_image(data: bytes, name: str | None = None) -> tuple[Image.Image, str, dict]:
    """The importer's check and re-encoding of one picture: (flattened image, ".jpg"/".png", Pillow save options).

    Decoded under `load_image`'s caps (UserError with one line otherwise); dataset editing stores pictures through
    this too, so an image added one at a time is kept exactly as an imported one would be."""
    return _encode(load_image(data, name=name), _source_format(data))


def encoded_image(data: bytes, name: str | None = None) -> tuple[bytes, str]:
    """`checked_image` as the bytes to store and their extension."""
    flat, ext, save_kwargs = checked_image(data, name)
    buf = io.BytesIO()
    flat.save(buf, **save_kwargs)
    return buf.getvalue(), ext


def upload_name_problem(raw: str) -> str | None:
    """Why an uploaded file's (browser-given, hostile) relative name is skipped, or None to keep it: the same
    rules as a zip member (traversal, absolute paths, NUL and control characters, hidden files, __MACOSX)."""
    reason = _unsafe_reason(raw)
    parts = _split_parts(raw)
    if reason is None and not parts:
        reason = "empty name"
    if reason is None:
        ignored = _ignored(parts, False)
        reason = ignored[1] if ignored else None
    return reason


def safe_stem(stem: str) -> str:
    """A file name stem made of letters, digits, '-', '_' and '.', never empty or hidden (at most 100)."""
    return _safe_stem(stem)


def check_dataset_name(name: str) -> None:
    """A new dataset name: plain characters, not hidden, not a built-in's (UserError with one line)."""
    _check_name(name)


def _source_format(data: bytes) -> str | None:
    """Sniff the container so JPEG photos stay JPEG; decoding already succeeded, this only picks the encoder."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if is_heif(data):
        return "HEIF"  # a phone photo: stored as JPEG q95 like one, not as a PNG five times its size
    return None


# ---------------------------------------------------------------- uploaded folders (the UI's folder upload)


def import_uploaded_files(
    files: list[tuple[str, bytes]],
    name: str,
    *,
    data_dir: Path | None = None,
    max_files: int = 200_000,
    max_total_bytes: int = 4 * 2**30,
    max_file_bytes: int = 64 * 2**20,
) -> ImportReport:
    """Import a browser folder upload: (relative path, bytes) pairs, e.g. ("pets/cat/1.jpg", b"...").

    The paths come from the browser and are hostile like zip member names, so each is vetted the same way and
    only plain relative paths are written, under a private temp folder, which then goes through `import_dataset`
    like any folder. `name` may be blank: the folder's own name is used then.
    """
    if len(files) > max_files:
        raise UserError(f"folder has more than {max_files} files; import stopped")
    total = sum(len(data) for _, data in files)
    if total > max_total_bytes:
        raise UserError(f"folder holds more than {human_bytes(max_total_bytes)}; split it into smaller parts")
    skips = _Skips()
    kept: dict[str, tuple[tuple[str, ...], bytes]] = {}  # lower-cased path -> parts, bytes (one per path)
    for raw, data in files:
        raw = str(raw)
        parts = _split_parts(raw)
        reason = _unsafe_reason(raw) or (None if parts else "empty name")
        if reason is None and len(data) > max_file_bytes:
            reason = f"file over {human_bytes(max_file_bytes)}"
        if reason is None and "/".join(parts).lower() in kept:
            reason = "same path uploaded twice"
        if reason is not None:
            skips.add(raw, reason)
            continue
        ignored = _ignored(parts, False)
        if ignored is not None:
            skips.add(*ignored)
            continue
        kept["/".join(parts).lower()] = (parts, data)
    if not kept:
        raise UserError("the folder holds no files to import")
    tops = {parts[0] for parts, _ in kept.values() if len(parts) > 1}
    name = (name or "").strip() or (tops.pop() if len(tops) == 1 else "")
    if not name:
        raise UserError("give the dataset a name")
    with tempfile.TemporaryDirectory(prefix="convnet-upload-") as tmp:
        root = Path(tmp) / "upload"
        for parts, data in kept.values():
            dest = root.joinpath(*parts)
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(dest, "xb") as fh:
                    fh.write(data)
            except OSError as exc:
                skips.add("/".join(parts), f"cannot be stored ({exc.strerror or exc})")
        report = import_dataset(root, name, data_dir=data_dir, max_members=sum(len(p) for p, _ in kept.values()),
                                max_total_bytes=max_total_bytes, max_member_bytes=max_file_bytes)  # fmt: skip
    report.skipped = skips.items + report.skipped
    return report
