"""Pictures of a recorded time-lapse: the pieces Inspect shows, and whole frames as PNGs and GIFs for the CLI.

The recordings are read by core.training.recordings; the grids and overlays are inspection's own, so a frame of
the time-lapse looks like the live Inspect view of the same epoch. Inspection (and with it TensorFlow) loads on
the first picture, so a refused command line answers at once.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from core.analysis import export
from core.data import images
from core.errors import UserError
from core.lazy import LazyModule
from core.training import recordings

inspection = LazyModule("core.analysis.inspection")

CELL = 48  # feature maps are upscaled (nearest-neighbour) to about this many pixels a side
SHOW_SIDE = 160  # the pinned image with its Grad-CAM overlay
GIF_FRAME_MS = 600
TOP_CLASSES = 5
_BG = (255, 255, 255)
_INK = (30, 41, 59)
_BAR = (92, 107, 192)
_TRUE = (46, 125, 50)


def layer_grid(maps: np.ndarray, colormap: str = "viridis", cell: int = CELL) -> np.ndarray:
    """One pinned image's stored maps of one layer, (h, w, c) uint8, as an RGB grid of 8 columns."""
    h, w = maps.shape[:2]
    f = max(1, round(cell / max(h, w)))
    return inspection.tile_maps_rgb(images.upscale(maps, f), colormap, cols=8)


def cam_overlay(image: np.ndarray, cam: np.ndarray, evidence: bool, side: int = SHOW_SIDE,
                alpha: float = 0.45) -> np.ndarray:  # fmt: skip
    """The pinned image enlarged to about `side` pixels, with the heatmap over it when there is evidence."""
    base = images.upscale_to(np.asarray(image), side)
    if base.ndim == 3 and base.shape[-1] == 1:
        base = base[..., 0]
    if not evidence:
        return np.repeat(base[..., None], 3, axis=-1) if base.ndim == 2 else base
    return inspection.overlay(base, np.asarray(cam, dtype=np.float32) / 255.0, alpha=alpha)


def compose(
    index: recordings.TimeLapseIndex, frame: recordings.Frame, pinned: np.ndarray, i: int
) -> np.ndarray:
    """One whole frame for pinned image i: header, overlay and top probabilities on the left, a grid per conv
    layer on the right. The layout depends only on the recording, so every epoch's frame has the same size."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    line = 14
    left = cam_overlay(pinned[i], frame.cam[i], bool(frame.evidence[i]))
    grids = [layer_grid(m[i]) for m in frame.maps]
    k = len(index.class_names)
    top = min(TOP_CLASSES, k)
    left_w = max(left.shape[1], 200)
    right_w = max(g.shape[1] for g in grids) if grids else 0
    width = 12 + left_w + 16 + right_w + 12
    header = 2 * line + 8
    left_h = left.shape[0] + 8 + top * line + line
    right_h = sum(line + g.shape[0] + 8 for g in grids)
    height = header + max(left_h, right_h) + 8
    canvas = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(canvas)
    img = index.images[i]
    probs = np.nan_to_num(frame.probs[i].astype(np.float64), nan=0.0)
    best = int(np.argmax(probs))
    draw.text((12, 6), f"epoch {frame.epoch}  ·  {img.get('id', '')}", fill=_INK, font=font)
    draw.text((12, 6 + line), f"true {img.get('class', '?')}  ·  predicted {index.class_names[best]} "
              f"{probs[best]:.1%}", fill=_INK, font=font)  # fmt: skip
    y = header
    canvas.paste(Image.fromarray(left), (12, y))
    y += left.shape[0] + 8
    cam_note = (f"Grad-CAM for {index.class_names[int(frame.cam_class[i])]}" if frame.evidence[i]
                else "Grad-CAM: no evidence")  # fmt: skip
    draw.text((12, y), cam_note, fill=_INK, font=font)
    y += line
    for c in np.argsort(probs)[::-1][:top]:
        bar = int(round(float(probs[c]) * 80))
        colour = _TRUE if int(c) == int(img.get("label", -1)) else _BAR
        draw.rectangle((12, y + 3, 12 + max(bar, 1), y + line - 3), fill=colour)
        draw.text((100, y), f"{index.class_names[int(c)][:14]} {probs[c]:.1%}", fill=_INK, font=font)
        y += line
    x = 12 + left_w + 16
    y = header
    for layer, grid in zip(index.layers, grids, strict=True):
        h, w, c = layer.get("shape", ["?", "?", "?"])
        shown = layer.get("stored", [h, w, c])[2]
        more = f", first {shown}" if shown != c else ""
        draw.text((x, y), f"{layer.get('name')}  {h}x{w}x{c}{more}", fill=_INK, font=font)
        y += line
        canvas.paste(Image.fromarray(grid), (x, y))
        y += grid.shape[0] + 8
    return np.asarray(canvas)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:60] or "image"


def require_index(run_dir: Path) -> recordings.TimeLapseIndex:
    index = recordings.read_index(run_dir)
    if index is None:
        raise UserError(f"run {Path(run_dir).name} has no time-lapse (runs record one since this version; a "
                        "model without convolution layers or a run with no pinned images has none)")  # fmt: skip
    return index


def target_folder(run_dir: Path, out: Path) -> Path:
    """A new folder: `out` itself, or `<run-id>_timelapse` inside `out` when that is an existing folder."""
    out = Path(out)
    if out.is_dir() and not out.is_symlink():
        out = out / f"{Path(run_dir).name}_timelapse"
        export.refuse_existing(out)
    return export.resolve_target(run_dir, "timelapse", out)


def write_frames(run_dir: Path, out: Path) -> tuple[Path, int]:
    """PNG frames and an animated GIF per pinned image, in a new folder (see `export.resolve_target`): never
    into or over anything already there. Returns the folder and how many PNGs it holds."""
    from PIL import Image

    run_dir = Path(run_dir)
    index = require_index(run_dir)
    target = target_folder(run_dir, out)
    pinned = recordings.read_pinned(run_dir)
    frames = [recordings.read_frame(run_dir, e, len(index.layers)) for e in index.epochs]
    count = 0
    with export.new_dir(target) as built:
        built.mkdir()
        for i, img in enumerate(index.images):
            name = (
                f"{i + 1:02d}-{_slug(str(img.get('class', '')))}-{_slug(Path(str(img.get('id', ''))).stem)}"
            )
            folder = built / name
            folder.mkdir()
            pictures = [Image.fromarray(compose(index, f, pinned, i)) for f in frames]
            for f, pic in zip(frames, pictures, strict=True):
                pic.save(folder / f"epoch-{f.epoch:03d}.png")
                count += 1
            pictures[0].save(built / f"{name}.gif", save_all=True, append_images=pictures[1:],
                             duration=GIF_FRAME_MS, loop=0)  # fmt: skip
    return target, count
