"""The images a run follows while it learns: the time-lapse's pinned images and the dynamics' probe batch.

Pinned images come from the validation split, so the time-lapse shows the network on images it never trains on.
By default one per class (the first MAX_PINNED classes), picked with the run's seed; a person may pin others
before training: a validation file by its path inside the dataset folder (or its file name when that is
unique), or `#N`, the N-th image of the validation split as trained (datasets that are arrays, not files).
Checked in `trainer.resolve` before a run exists; no TensorFlow here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.data import datasets
from core.errors import UserError

if TYPE_CHECKING:
    from core.training.run_config import RunConfig

MAX_PINNED = 10
PROBE_IMAGES = 32  # training images the dead-ReLU count looks at, fixed for the whole run
ARRAY_ID = re.compile(r"^#(\d{1,9})$")


@dataclass(frozen=True)
class Pin:
    """One pinned image: its id (as the person would name it), true label and pixels as the model sees them."""

    id: str
    label: int
    image: np.ndarray  # uint8 (H, W, C)


def _relative(path: str | Path, root: Path | None) -> str:
    p = Path(path)
    if root is not None:
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            pass
    return p.name


def validation_files(info: datasets.DatasetInfo, val_split: float, seed: int) -> list[str]:
    """The validation split's files as paths inside the dataset folder, class by class (folder datasets)."""
    if info.kind != "folder":
        return []
    items = datasets.split_file_lists(info, val_split, seed)["val"]
    return [_relative(p, info.path) for p, _ in items]


def check_pinned(info: datasets.DatasetInfo, pinned: Any, val_split: float, seed: int) -> list[str] | None:
    """The pinned ids, normalised (a unique file name becomes its path); a UserError names the first bad one."""
    if pinned is None:
        return None
    if not isinstance(pinned, list | tuple) or not all(isinstance(p, str) for p in pinned):
        raise UserError("pinned images must be a list of names")
    wanted = list(dict.fromkeys(p.strip().replace("\\", "/") for p in pinned if p.strip()))
    if len(wanted) > MAX_PINNED:
        raise UserError(f"pin at most {MAX_PINNED} images for the time-lapse; got {len(wanted)}")
    if info.kind != "folder":
        for p in wanted:
            if not ARRAY_ID.match(p):
                raise UserError(
                    f'pinned image {p!r}: {info.name} has no files; give "#N", the N-th validation image'
                )
        return wanted
    files = validation_files(info, val_split, seed)
    known = set(files)
    by_name: dict[str, list[str]] = {}
    for f in files:
        by_name.setdefault(f.rsplit("/", 1)[-1], []).append(f)
    out: list[str] = []
    for p in wanted:
        if p in known:
            out.append(p)
        elif len(by_name.get(p, [])) == 1:
            out.append(by_name[p][0])
        elif p in by_name:
            raise UserError(f"pinned image {p!r} is in several classes; give its path, e.g. {by_name[p][0]}")
        else:
            raise UserError(
                f"pinned image {p!r} is not in the validation split of {info.name} "
                f"(seed {seed}, validation split {val_split:g})"
            )
    return list(dict.fromkeys(out))


def _image(split: Any, i: int, image_size: tuple[int, int], channels: int) -> np.ndarray | None:
    """Row i of a split: decoded arrays (datasets.SplitData) or files streamed from disk (streaming.StreamSplit)."""
    x = getattr(split, "x", None)
    if x is not None:
        return np.asarray(x[i])
    return datasets.decode_file(Path(split.paths[i]), image_size, channels)


def _label_of(rel: str, class_names: list[str]) -> int:
    parts = rel.split("/")
    if len(parts) >= 2 and parts[-2] in class_names:
        return class_names.index(parts[-2])
    raise UserError(f"pinned image {rel!r} is not inside a class folder")


def choose(cfg: RunConfig, val: Any) -> list[Pin]:
    """The run's pinned images (see the module docstring); `val` is the validation split as trained."""
    h, w, c = cfg.input_shape
    if cfg.pinned is not None:
        return [_explicit(cfg, val, pid, (h, w), c) for pid in cfg.pinned[:MAX_PINNED]]
    if not len(val):
        return []
    info = datasets.get_dataset(cfg.dataset)
    paths = getattr(val, "paths", None)
    rng = np.random.default_rng(cfg.seed)
    pins: list[Pin] = []
    for k in range(min(len(cfg.class_names), MAX_PINNED)):
        rows = np.flatnonzero(np.asarray(val.y) == k)
        if not len(rows):
            continue
        i = int(rng.choice(rows))
        img = _image(val, i, (h, w), c)
        if img is None:
            continue
        pid = _relative(paths[i], info.path) if paths else f"#{i}"
        pins.append(Pin(pid, k, img))
    return pins


def _explicit(cfg: RunConfig, val: Any, pid: str, image_size: tuple[int, int], channels: int) -> Pin:
    m = ARRAY_ID.match(pid)
    if m:
        i = int(m.group(1))
        if i >= len(val):
            raise UserError(f"pinned image {pid} is not in the validation split (it has {len(val)} images)")
        img = _image(val, i, image_size, channels)
        if img is None:
            raise UserError(f"pinned image {pid} cannot be read")
        return Pin(pid, int(np.asarray(val.y)[i]), img)
    info = datasets.get_dataset(cfg.dataset)
    if info.path is None:
        raise UserError(f'pinned image {pid!r}: {cfg.dataset} has no files; give "#N"')
    root = info.path.resolve()
    path = (root / pid).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise UserError(f"pinned image {pid!r} is not a file of dataset {cfg.dataset}")
    img = datasets.decode_file(path, image_size, channels)
    if img is None:
        raise UserError(f"pinned image {pid!r} cannot be read")
    return Pin(pid, _label_of(pid, list(cfg.class_names)), img)


def probe_images(train: Any, seed: int, image_size: tuple[int, int], channels: int,
                 n: int = PROBE_IMAGES) -> np.ndarray | None:  # fmt: skip
    """A fixed small batch of training images (uint8), the same every epoch, for the dead-ReLU count."""
    if not len(train):
        return None
    rows = np.sort(np.random.default_rng(seed).choice(len(train), min(n, len(train)), replace=False))
    picked = [img for i in rows if (img := _image(train, int(i), image_size, channels)) is not None]
    return np.stack(picked) if picked else None
