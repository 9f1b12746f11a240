"""What the Build section's image grid shows, as plain data: pages of a class's images (from
`core.data.editing.images`), the caption of each tile, where an image can move, and the session's bookkeeping of
removals to undo and webcam shots taken. Pure functions, so the page only draws and the rules are tested alone."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def page_count(found: int, size: int) -> int:
    """Pages needed for `found` images, `size` per page; an empty class still has its one (empty) page."""
    return max(1, math.ceil(found / size))


@dataclass(frozen=True)
class GridPage:
    """One page of a class's images: `shown` are paths relative to the dataset folder; `first`..`last` number
    them from 1 among all `found` (both 0 when the page is empty)."""

    found: int
    page: int
    pages: int
    shown: list[str]
    offset: int  # how many images come before this page

    @property
    def first(self) -> int:
        return self.offset + 1 if self.shown else 0

    @property
    def last(self) -> int:
        return self.offset + len(self.shown) if self.shown else 0


def grid_page(found: Sequence[str], page: int, size: int) -> GridPage:
    """Page `page` (from 1; clamped to the pages there are, so a narrower search never shows an empty page) of
    `found`, `size` per page."""
    pages = page_count(len(found), size)
    page = min(max(1, page), pages)
    offset = (page - 1) * size
    return GridPage(len(found), page, pages, list(found[offset : offset + size]), offset)


@dataclass(frozen=True)
class Tile:
    """One thumbnail of the grid: `rel` names the image for edits, `name` is its file name, `caption` what is
    written under it (the split folder too in a train/validation/test dataset)."""

    rel: str
    name: str
    caption: str


def tiles(shown: Sequence[str], layout: str) -> list[Tile]:
    """The grid's tiles for the images on a page of a dataset with this layout (flat | splits)."""
    out = []
    for rel in shown:
        name = rel.rsplit("/", 1)[-1]
        out.append(Tile(rel, name, name if layout == "flat" else rel.split("/", 1)[0] + "/" + name))
    return out


def move_targets(classes: Sequence[str], cls: str) -> list[str]:
    """The classes an image of `cls` can move to: every other one, in the dataset's order."""
    return [c for c in classes if c != cls]


Removal = tuple[str, str, str]  # (dataset, trash entry, what was removed, in words)


def recent_removals(removed: Sequence[Removal], dataset: str, last: int = 3) -> list[Removal]:
    """The removals offered for undo: of the session's `last` most recent ones, those in this dataset."""
    return [r for r in removed[-last:] if r[0] == dataset] if last > 0 else []


def without_removal(removed: Sequence[Removal], dataset: str, entry: str) -> list[Removal]:
    """The session's removals once `entry` of `dataset` was restored."""
    return [r for r in removed if r[:2] != (dataset, entry)]


def shots_in(shots: Mapping[tuple[str, str], int], dataset: str) -> dict[str, int]:
    """Webcam shots taken this session per class of `dataset` (the session counts per (dataset, class))."""
    return {c: n for (d, c), n in shots.items() if d == dataset}


def with_shot(shots: Mapping[tuple[str, str], int], dataset: str, cls: str) -> dict[tuple[str, str], int]:
    """The session's shot counts after one more shot kept in `cls` of `dataset`."""
    return {**shots, (dataset, cls): shots.get((dataset, cls), 0) + 1}
