"""Small pictures of dataset files for review tables (Improve page): decoded under the usual caps, never trusted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from core.data.images import load_image, to_mode, upscale_to
from core.errors import UserError

GRAY = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def thumbnail(path: Path, side: int = 96) -> np.ndarray | None:
    """uint8 (H, W) or (H, W, 3) fitted in side×side (small images enlarged crisply); None when unreadable."""
    try:
        img = load_image(Path(path), name=Path(path).name)
    except (UserError, OSError):
        return None
    img = to_mode(img, 1 if img.mode in GRAY else 3)
    if max(img.size) > side:
        img.thumbnail((side, side), Image.Resampling.LANCZOS)
    return upscale_to(np.asarray(img), side)
