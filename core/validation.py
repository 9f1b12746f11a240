"""Checks on what a person types or points at, done before anything is created or read.

Numbers get bounds with one human line each (the CLI and the Train page share them through `training.resolve`);
paths are `os.stat`-ed before they are opened, so a fifo, a device or a folder is refused instead of hanging the
app or eating its memory, and a file over its cap is refused before a byte of it is read.
"""

from __future__ import annotations

import math
import numbers
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError

MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
MAX_LEARNING_RATE = 10.0
MAX_SEED = 2**32 - 1  # numpy's and Keras' seeding accept 0 .. 2**32 - 1
MAX_IMAGE_SIDE = 1024
MAX_WEIGHTS_BYTES = 1 << 30  # Xception's ImageNet no-top weights are 80 MiB
WEIGHTS_SUFFIXES = (".h5", ".keras")  # .weights.h5 ends in .h5


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


def env_bytes(name: str, default: int) -> int:
    """A byte count from an environment variable (`4e9` allowed); unset or empty gives `default`."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):
        raise UserError(f"{name} must be a number of bytes, not {raw!r}") from None
    if value < 0:
        raise UserError(f"{name} must not be negative")
    return value


def is_number(value: object) -> bool:
    """A real int or float, numpy's included (bool is not a number a person meant)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_int(value: Any, what: str, lo: int, hi: int) -> int:
    """An integer in [lo, hi]; floats with a fraction, NaN and inf are refused, never rounded or defaulted."""
    if not is_number(value) or not math.isfinite(value) or int(value) != value:  # type: ignore[arg-type]
        raise UserError(f"{what} must be a whole number from {lo:,} to {hi:,}; got {value!r}")
    n = int(value)  # type: ignore[arg-type]
    if not lo <= n <= hi:
        raise UserError(f"{what} must be from {lo:,} to {hi:,}; got {n:,}")
    return n


def check_float(value: object, what: str, lo: float, hi: float, *, lo_open: bool, hi_open: bool) -> float:
    """A finite float within bounds; `inf` and `nan` are refused (they "train" into a model that outputs NaN)."""
    if not is_number(value) or not math.isfinite(float(value)):  # type: ignore[arg-type]
        raise UserError(f"{what} must be a finite number; got {value!r}")
    x = float(value)  # type: ignore[arg-type]
    below = x <= lo if lo_open else x < lo
    above = x >= hi if hi_open else x > hi
    if below or above:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise UserError(f"{what} must be in {interval}; got {x:g}")
    return x


def regular_file(
    path: Path | str, max_bytes: int, what: str = "file", name: str | None = None
) -> os.stat_result:
    """stat (never open) a path a person gave: refuse missing paths, folders, fifos, devices, sockets and files
    over `max_bytes`, each with one line that names the file."""
    path = Path(path)
    label = name or path.name or str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {label}") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {label} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{label} is a folder, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{label} is not a regular file (a pipe, device or socket); refused")
    if st.st_size > max_bytes:
        raise UserError(
            f"{label} is {human_bytes(st.st_size)}, over the {human_bytes(max_bytes)} limit for a {what}"
        )
    return st


def read_regular_file(path: Path | str, max_bytes: int, what: str = "file", name: str | None = None) -> bytes:
    """Read a user's file after `regular_file`, never more than `max_bytes` even if it grows or is swapped.

    O_NONBLOCK makes an open of a fifo swapped in after the stat return at once instead of waiting for a writer;
    the fstat then refuses it.
    """
    regular_file(path, max_bytes, what, name)
    label = name or Path(path).name
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise UserError(f"cannot read {what} {label} ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise UserError(f"{label} is not a regular file (a pipe, device or socket); refused")
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise UserError(f"cannot read {what} {label} ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise UserError(f"{label} is over the {human_bytes(max_bytes)} limit for a {what}")
    return data


def check_weights_path(weights: str) -> str:
    """A local weights file for a transfer preset: an existing, readable .h5 / .weights.h5 / .keras file."""
    path = Path(weights).expanduser()
    if not path.name.lower().endswith(WEIGHTS_SUFFIXES):
        raise UserError(
            f"weights must be imagenet, random or a .h5 / .weights.h5 / .keras weights file; got {weights}"
        )
    regular_file(path, MAX_WEIGHTS_BYTES, "weights file")
    if not os.access(path, os.R_OK):
        raise UserError(f"weights file {path.name} is not readable")
    return str(path)
