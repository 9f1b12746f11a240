"""Build and tend a folder dataset in place: new datasets, classes, images added, moved and removed, with undo.

A dataset is `data/<name>/<class>/*` (flat) or `data/<name>/{train,validation,test}/<class>/*` (splits), exactly what
the catalog and the importer read. Every operation checks everything first and only then touches the disk; an
image is stored only after the importer's own check and re-encoding (`importer.encoded_image`), written to a temp
file and published under a name nobody holds (never replacing a file); a removal moves into the dataset's own trash
(`data/<name>/.trash`, see `core.data.trash`) and `restore` brings it back. The embedded sample and the built-in
array sets are read-only. Whole datasets go to `data/.trash` through `datasets.delete_dataset`/`restore_dataset`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core import atomic, options, paths
from core.data import file_moves, keras_datasets, renames, trash
from core.data.datasets import GRAY_MODES, SPLIT_ALIASES, SPLIT_FOLDERS, SPLITS
from core.data.images import ALLOWED_EXTENSIONS, load_image, to_mode
from core.data.importer import check_dataset_name, encoded_image, safe_stem, upload_name_problem
from core.errors import UserError
from core.validation import human_bytes

LAYOUTS = options.DATASET_LAYOUTS
MAX_CLASS_NAME = 100
MAX_ADD_FILES = 20_000  # one call of add_images (a folder upload)
MAX_ADD_BYTES = 4 * 2**30
MAX_FILE_BYTES = 64 * 2**20  # the importer's per-picture cap
_BAD_CLASS_CHARS = set('/\\:*?"<>|')  # path separators, and what Windows cannot hold in a folder name


@dataclass
class AddReport:
    """What `add_images` stored (paths relative to the dataset folder) and what it skipped, with why."""

    dataset: str
    cls: str
    added: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class DatasetTree:
    """A dataset's folders as they are on disk, empty classes included (the catalog lists only classes with images)."""

    name: str
    path: Path
    layout: str  # flat | splits
    splits: list[
        str
    ]  # split folder names as they are on disk (["train", "validation", "test"]); [""] when flat
    counts: dict[str, dict[str, int]]  # class -> split folder -> images

    @property
    def classes(self) -> list[str]:
        return sorted(self.counts, key=str.lower)

    def total(self, cls: str) -> int:
        return sum(self.counts.get(cls, {}).values())


# ---------------------------------------------------------------- names


def _refuse_read_only(name: str) -> None:
    if name.lower() == paths.EMBEDDED_DATASET.lower():
        raise UserError(f"{name} is the embedded sample that ships with the app; it is read-only")
    if name in keras_datasets.SOURCES:
        raise UserError(f"{name} is a built-in dataset, not a folder in data/; it is read-only")


def _dataset_path(name: str) -> Path:
    """The folder of an existing, editable dataset; a one-line refusal for anything else."""
    if not isinstance(name, str) or not name or name in (".", "..") or name.startswith("."):
        raise UserError(f"unknown dataset {name!r}")
    if any(ch in name for ch in "/\\\x00"):
        raise UserError(f"unknown dataset {name!r}")
    _refuse_read_only(name)
    p = paths.data_dir() / name
    if p.is_symlink():
        raise UserError(f"{name} is a link; the app edits only folders in data/")
    if not p.is_dir():
        raise UserError(f"unknown dataset {name!r}; `python -m core datasets` lists them")
    return p


def check_class_name(name: str) -> str:
    """A class (folder) name a person may pick: visible, one folder level, not a split's name; returned as given."""
    if not isinstance(name, str) or not name.strip():
        raise UserError("a class needs a name")
    if name != name.strip():
        raise UserError(f"class name starts or ends with a space: {name!r}")
    if len(name) > MAX_CLASS_NAME:
        raise UserError(f"class name longer than {MAX_CLASS_NAME} characters: {name[:20]}…")
    if name.startswith(".") or name.endswith("."):
        raise UserError(f"class name must not start or end with '.': {name!r}")
    if any(ch in _BAD_CLASS_CHARS or unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        raise UserError(f'class name must not contain / \\ : * ? " < > | or control characters: {name!r}')
    if name.lower() in SPLIT_ALIASES or name == "__MACOSX":
        raise UserError(f"{name} names a split folder (or metadata), not a class; pick another name")
    return name


def _listdir(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UserError(f"cannot read {folder.name} ({exc.strerror or exc})") from None


def _class_dirs(folder: Path) -> list[str]:
    return [e.name for e in _listdir(folder)
            if e.is_dir(follow_symlinks=False) and not e.name.startswith(".") and e.name != "__MACOSX"]  # fmt: skip


def _is_image_entry(e: os.DirEntry) -> bool:
    return (not e.name.startswith(".") and e.is_file(follow_symlinks=False)
            and os.path.splitext(e.name)[1].lower() in ALLOWED_EXTENSIONS)  # fmt: skip


def _split_folders(root: Path) -> list[str]:
    """Split folder names in train/validation/test order when the dataset uses that layout (as the catalog decides)."""
    found = {SPLIT_ALIASES[d.lower()]: d for d in _class_dirs(root) if d.lower() in SPLIT_ALIASES}
    if "train" not in found:
        return []
    return [found[s] for s in SPLITS if s in found]


def tree(name: str) -> DatasetTree:
    """Classes and image counts per split folder, read from disk without decoding anything."""
    root = _dataset_path(name)
    splits = _split_folders(root) or [""]
    counts: dict[str, dict[str, int]] = {}
    for split in splits:
        base = root / split if split else root
        for cls in _class_dirs(base):
            counts.setdefault(cls, {})[split] = sum(map(_is_image_entry, _listdir(base / cls)))
    return DatasetTree(name, root, "splits" if splits != [""] else "flat", splits, counts)


def editable_datasets() -> list[str]:
    """Folder datasets in data/ that can be edited (empty ones too), by name."""
    d = paths.data_dir()
    out = []
    for e in _listdir(d):
        if e.name.startswith(".") or not e.is_dir(follow_symlinks=False):
            continue
        if e.name.lower() == paths.EMBEDDED_DATASET.lower() or e.name in keras_datasets.SOURCES:
            continue
        out.append(e.name)
    return sorted(out, key=str.lower)


def _clash(folder: Path, name: str, allow: str | None = None) -> str | None:
    """An entry of `folder` whose name equals `name` ignoring case (macOS and Windows see them as one)."""
    for e in _listdir(folder):
        if e.name.lower() == name.lower() and e.name != allow:
            return e.name
    return None


def _touch(root: Path) -> None:
    """Bump the dataset folder's time: the pages key their caches on it, and an edit deep inside does not."""
    try:
        os.utime(root)
    except OSError:
        pass


# ---------------------------------------------------------------- datasets and classes


def new_dataset(name: str, classes: list[str], layout: str = "flat") -> Path:
    """Create data/<name>/ with an empty folder per class (in each of train/validation/test for "splits").

    Built in a hidden temp folder and published with one rename, so a failure leaves nothing behind."""
    check_dataset_name(name)
    if layout not in LAYOUTS:
        raise UserError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    classes = [check_class_name(c) for c in classes]
    lowered = [c.lower() for c in classes]
    if len(set(lowered)) != len(lowered):
        raise UserError("two classes have the same name (names differing only in case count as the same)")
    data = paths.data_dir()
    target = data / name
    taken = _clash(data, name)
    if taken is not None or os.path.lexists(target):
        raise UserError(f"a dataset named {taken or name} already exists")
    try:
        data.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=data))
    except OSError as exc:
        raise UserError(f"cannot write to the datasets folder ({exc.strerror or exc})") from None
    try:
        bases = [tmp / SPLIT_FOLDERS[s] for s in SPLITS] if layout == "splits" else [tmp]
        for base in bases:
            base.mkdir(exist_ok=True)
            for c in classes:
                (base / c).mkdir()
        atomic.normal_permissions(tmp)
        if os.path.lexists(target):
            raise UserError(f"a dataset named {name} already exists")
        os.rename(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)  # our own temp folder, nothing else
        raise UserError(f"cannot create dataset {name} ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def rename_dataset(old: str, new: str) -> Path:
    """data/<old> becomes data/<new>; runs trained on it keep the old name and find it through `core.data.renames`."""
    src = _dataset_path(old)
    check_dataset_name(new)
    if new == old:
        raise UserError(f"{old} already has that name")
    taken = _clash(src.parent, new, allow=old)
    if taken is not None:
        raise UserError(f"a dataset named {taken} already exists")
    dst = src.parent / new
    before = renames.record(old, new)  # first: a ledger entry for a folder that still exists is ignored
    try:
        os.rename(src, dst)
    except OSError as exc:
        renames.undo_record(old, before)
        raise UserError(f"cannot rename {old} ({exc.strerror or exc})") from None
    return dst


def _class_folders(t: DatasetTree, cls: str) -> list[str]:
    """Relative paths of one class's folders, one per split folder that has it."""
    if cls not in t.counts:
        raise UserError(f"no class {cls!r} in dataset {t.name} (classes: {', '.join(t.classes) or 'none'})")
    return [f"{s}/{cls}" if s else cls for s in t.splits if s in t.counts[cls]]


def add_class(dataset: str, cls: str) -> None:
    """An empty class folder (in every split folder of a "splits" dataset)."""
    t = tree(dataset)
    check_class_name(cls)
    for s in t.splits:
        taken = _clash(t.path / s if s else t.path, cls)
        if taken is not None:
            raise UserError(f"dataset {dataset} already has a class {taken}")
    made: list[Path] = []
    try:
        for s in t.splits:
            folder = (t.path / s if s else t.path) / cls
            folder.mkdir()
            made.append(folder)
    except OSError as exc:
        for folder in made:
            folder.rmdir()  # just made and still empty
        raise UserError(f"cannot add class {cls} ({exc.strerror or exc})") from None
    _touch(t.path)


def rename_class(dataset: str, old: str, new: str) -> None:
    """Rename a class in every split folder, all or none."""
    t = tree(dataset)
    folders = _class_folders(t, old)
    check_class_name(new)
    if new == old:
        raise UserError(f"class {old} already has that name")
    for s in t.splits:
        taken = _clash(t.path / s if s else t.path, new, allow=old)
        if taken is not None:
            raise UserError(f"dataset {dataset} already has a class {taken}")
    pairs = [(t.path / rel, (t.path / rel).parent / new) for rel in folders]
    done: list[tuple[Path, Path]] = []
    try:
        for src, dst in pairs:
            if os.path.lexists(dst) and dst.name.lower() != src.name.lower():
                raise FileExistsError(dst.name)
            os.rename(src, dst)
            done.append((src, dst))
    except OSError as exc:
        for src, dst in reversed(done):
            os.rename(dst, src)
        raise UserError(f"cannot rename class {old} ({exc.strerror or exc})") from None
    _touch(t.path)


def delete_class(dataset: str, cls: str) -> str:
    """Move a class (its folder in every split) into the dataset's trash as one entry; `restore` undoes it."""
    t = tree(dataset)
    entry = trash.move_items_to_trash(t.path, _class_folders(t, cls), cls)
    _touch(t.path)
    return entry


# ---------------------------------------------------------------- images


def _split_folder(t: DatasetTree, split: str | None) -> str:
    """The folder name a split is stored in ("" for a flat dataset)."""
    if t.layout == "flat":
        if split:
            raise UserError(
                f"dataset {t.name} has no train/validation/test folders; add images without a split"
            )
        return ""
    wanted = SPLIT_ALIASES.get((split or "train").lower())
    if wanted is None:
        raise UserError(f"split must be train, validation or test, not {split!r}")
    for s in t.splits:
        if SPLIT_ALIASES[s.lower()] == wanted:
            return s
    return SPLIT_FOLDERS[wanted]


def _class_folder(t: DatasetTree, split: str, cls: str) -> Path:
    """A class's folder in a split folder; made when the class exists elsewhere but not in this split yet."""
    _class_folders(t, cls)
    folder = (t.path / split if split else t.path) / cls
    if folder.is_symlink():
        raise UserError(f"{cls} is a link; the app edits only folders in data/")
    if not folder.is_dir():
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise UserError(f"cannot make {folder.name} ({exc.strerror or exc})") from None
    return folder


def _taken_names(folder: Path) -> set[str]:
    return {e.name.lower() for e in _listdir(folder)}


def _publish(folder: Path, stem: str, ext: str, data: bytes, taken: set[str]) -> str:
    """Write `data` as <stem><ext>, or <stem>-1<ext>, ... : the first name nobody holds. The bytes go to a temp file
    first, then get their name with a hard link, which fails rather than replace a file that appeared meanwhile."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}{ext}{atomic.TEMP_MARK}", suffix=".tmp", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, atomic.FILE_MODE)
        for n in range(10_000):
            name = f"{stem}{ext}" if n == 0 else f"{stem}-{n}{ext}"
            if name.lower() in taken:
                continue
            taken.add(name.lower())
            if file_moves.link_new(tmp, folder / name):
                return name
        raise UserError(f"too many files named {stem}* in {folder.name}")
    finally:
        tmp.unlink(missing_ok=True)


def add_images(
    dataset: str,
    cls: str,
    files: list[tuple[str, bytes]],
    split: str | None = None,
    *,
    max_files: int = MAX_ADD_FILES,
    max_total_bytes: int = MAX_ADD_BYTES,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> AddReport:
    """Store pictures in a class: each decoded under the importer's caps and re-encoded as an import would
    (JPEG q95 for colour photos, PNG otherwise); what is not a readable picture is skipped and reported.

    `files` are (name, bytes) with hostile names (a browser's relative path, a camera's "image.jpg"): only the
    file name's stem survives, cleaned; a clash gets -1, -2... `split` (train/validation/test) is for a "splits"
    dataset (default train); a flat dataset takes none."""
    t = tree(dataset)
    target_split = _split_folder(t, split)
    _class_folders(t, cls)
    if len(files) > max_files:
        raise UserError(f"more than {max_files} files at once; add them in parts")
    total = sum(len(data) for _, data in files)
    if total > max_total_bytes:
        raise UserError(f"these files hold more than {human_bytes(max_total_bytes)}; add them in parts")
    folder = _class_folder(t, target_split, cls)
    report = AddReport(dataset, cls)
    taken = _taken_names(folder)
    prefix = f"{target_split}/{cls}" if target_split else cls
    for raw, data in files:
        raw = str(raw)
        reason = upload_name_problem(raw)
        base = raw.replace("\\", "/").rsplit("/", 1)[-1]
        ext = os.path.splitext(base)[1].lower()
        if reason is None and ext not in ALLOWED_EXTENSIONS:
            reason = f"not an image file type ({ext or 'no extension'})"
        if reason is None and len(data) > max_file_bytes:
            reason = f"file larger than {human_bytes(max_file_bytes)}"
        if reason is None:
            try:
                stored, ext = encoded_image(data)
            except UserError as exc:
                reason = str(exc)
        if reason is not None:
            report.skipped.append((raw, reason))
            continue
        try:
            name = _publish(folder, safe_stem(os.path.splitext(base)[0]), ext, stored, taken)
        except OSError as exc:
            raise UserError(f"cannot write to {dataset}/{prefix} ({exc.strerror or exc})") from None
        report.added.append(f"{prefix}/{name}")
    if report.added:
        _touch(t.path)
    return report


def images(dataset: str, cls: str, query: str = "") -> list[str]:
    """A class's images as paths relative to the dataset folder (every split), sorted; `query` keeps those whose
    file name contains it (ignoring case)."""
    t = tree(dataset)
    q = query.strip().lower()
    out = []
    for rel in _class_folders(t, cls):
        for e in _listdir(t.path / rel):
            if _is_image_entry(e) and q in e.name.lower():
                out.append(f"{rel}/{e.name}")
    return sorted(out, key=lambda r: (r.rsplit("/", 1)[-1].lower(), r))


def _image(name: str, root: Path, splits: list[str], rel_path: str) -> tuple[str, str, str]:
    """(split folder, class, file name) of an existing image named by its hostile relative path; reads only the
    folders on that path, so a thumbnail of a 60,000-image dataset costs no scan of it."""
    missing = UserError(f"no image {rel_path!r} in dataset {name}")
    parts = str(rel_path).split("/")
    if splits == [""]:
        parts = ["", *parts]
    if len(parts) != 3 or any(p.startswith(".") or "\\" in p or "\x00" in p for p in parts):
        raise missing
    split, cls, file = parts
    if not file or not cls or cls == "__MACOSX" or split not in splits:
        raise missing
    folder = root / split / cls if split else root / cls
    p = folder / file
    if folder.is_symlink() or p.is_symlink() or not p.is_file():
        raise missing
    if os.path.splitext(file)[1].lower() not in ALLOWED_EXTENSIONS:
        raise missing
    return split, cls, file


def _located(dataset: str, rel_path: str) -> tuple[Path, str, str, str]:
    root = _dataset_path(dataset)
    return (root, *_image(dataset, root, _split_folders(root) or [""], rel_path))


def check_image(dataset: str, rel_path: str) -> str:
    """The class of an existing image of `dataset` (UserError when there is none), to check a batch before acting."""
    return _located(dataset, rel_path)[2]


def move_image(dataset: str, rel_path: str, to_class: str) -> str:
    """Move one image to another class of the same split; returns its new relative path (a clash gets -1, -2...)."""
    t = tree(dataset)
    split, cls, name = _image(t.name, t.path, t.splits, rel_path)
    if to_class == cls:
        raise UserError(f"{rel_path} is already in class {cls}")
    folder = _class_folder(t, split, to_class)
    src = t.path / rel_path
    try:
        new = file_moves.move_no_replace(src, folder, name, first_suffix=1, taken=_taken_names(folder))
    except OSError as exc:
        raise UserError(f"cannot move {rel_path} ({exc.strerror or exc})") from None
    if new is None:
        raise UserError(f"too many files named {os.path.splitext(name)[0]}* in class {to_class}")
    _touch(t.path)
    return f"{split}/{to_class}/{new}" if split else f"{to_class}/{new}"


def thumbnail(dataset: str, rel_path: str, side: int = 96) -> np.ndarray:
    """An image of the dataset fitted into side×side for the page's grid (small ones enlarged without blurring),
    decoded under `load_image`'s caps; uint8 HxW or HxWx3."""
    root = _located(dataset, rel_path)[0]
    img = load_image(root / rel_path)
    img = to_mode(img, 1 if img.mode in GRAY_MODES else 3)
    scale = side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    return np.asarray(img.resize(size, resample))


def remove_image(dataset: str, rel_path: str) -> str:
    """Move one image into the dataset's trash; returns the entry `restore` takes."""
    root, _, _, name = _located(dataset, rel_path)
    entry = trash.move_items_to_trash(root, [rel_path], name)
    _touch(root)
    return entry


def restore(dataset: str, entry: str) -> list[str]:
    """Put a removed image or class back where it was; returns the restored relative paths."""
    root = _dataset_path(dataset)
    items = next((e.paths for e in trash.list_trash(root) if e.entry == entry), None)
    trash.restore(root, entry)
    _touch(root)
    return items or []


def trash_entries(dataset: str) -> list[trash.TrashEntry]:
    """What `restore` can bring back in this dataset, newest first."""
    return trash.list_trash(_dataset_path(dataset))
