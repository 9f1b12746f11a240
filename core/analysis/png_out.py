"""A PNG the user names on the command line: only ever a new file, never a replaced or followed one.

Kept free of TensorFlow so the CLI refuses a bad --out in a second, before it loads a model and computes.
"""

from __future__ import annotations

from pathlib import Path

from core.analysis import export  # its exclusive-create helpers, shared with every export
from core.errors import UserError


def check(path: Path) -> Path:
    """Refuse a name that is not .png, that exists (file, folder, link, device) or whose folder is missing."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UserError(f"{path} must end in .png")
    export.refuse_existing(path)
    if not path.parent.is_dir():
        raise UserError(f"folder {path.parent} does not exist")
    return path


def write(path: Path, data: bytes) -> Path:
    """Write atomically under a temp name, then claim `path` exclusively: a file made meanwhile is not replaced."""
    path = check(path)
    with export.new_file(path) as tmp:
        tmp.write_bytes(data)
    return path
