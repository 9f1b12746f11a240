"""Moving an image inside a dataset without ever replacing a file: the one rule fixes and dataset edits share.

A hard link then an unlink: the link fails if the target exists, so nothing is replaced, and a crash in between
leaves the image in both places rather than in neither. Where links are not supported, a rename checked just
before. A taken name gets a numbered suffix; where numbering starts is the caller's convention (-1 or -2).
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_NAMES = 10_000  # names tried before giving up


def link_new(src: Path, dst: Path) -> bool:
    """Give `src` the extra name `dst`; False when `dst` exists. Where links are not supported, a rename checked
    just before (then `src` is gone). A link to a symlink links the link itself, where the platform allows."""
    try:
        if os.link in os.supports_follow_symlinks:
            os.link(src, dst, follow_symlinks=False)
        else:
            os.link(src, dst)
    except FileExistsError:
        return False
    except OSError:
        if os.path.lexists(dst):
            return False
        os.rename(src, dst)
    return True


def claim(src: Path, dst: Path) -> bool:
    """Give the file `src` the new name `dst` and drop the old one; False when `dst` exists (nothing moved).

    OSError when the move fails; a link whose old name cannot be removed is taken back first."""
    if not link_new(src, dst):
        return False
    if os.path.lexists(src):  # linked, not renamed: drop the old name
        try:
            os.unlink(src)
        except OSError:
            os.unlink(dst)
            raise
    return True


def move_no_replace(src: Path, folder: Path, name: str, first_suffix: int = 1,
                    taken: set[str] | None = None) -> str | None:  # fmt: skip
    """Move `src` into `folder` as `name`, or `stem-<k>.ext` for k = first_suffix, first_suffix + 1, ... when taken;
    returns the name used, None when every name is taken. `taken` holds lower-cased names to treat as held too
    (a case-insensitive view of the folder). Raises OSError when the move itself fails."""
    stem, ext = os.path.splitext(name)
    held = set(taken or ())
    for n in range(MAX_NAMES):
        candidate = name if n == 0 else f"{stem}-{first_suffix + n - 1}{ext}"
        if candidate.lower() in held or os.path.lexists(folder / candidate):
            continue
        held.add(candidate.lower())
        if claim(src, folder / candidate):
            return candidate
    return None
