"""Augmentation preview: one image through a preset's own augmentation layers, nine times, as the notebooks show."""

from __future__ import annotations

import numpy as np

from core.models.architectures import augmentation_layers

AUGMENTING_PRESETS = (
    "jedi-sith-binary",
    "jedi-sith-ternary",
    "cats-dogs-2",
    "cats-dogs-3",
    "mobilenetv2-transfer",
)


def preview(
    image: np.ndarray, preset: str = "jedi-sith-binary", n: int = 9, seed: int = 0
) -> list[np.ndarray]:
    """n augmented uint8 copies of `image` (HxW or HxWxC), each drawn with training=True."""
    import keras

    img = np.asarray(image)
    squeeze = img.ndim == 2
    x = (img[..., None] if squeeze else img).astype("float32")[None]
    keras.utils.set_random_seed(seed)
    layers = augmentation_layers(preset)
    out = []
    for _ in range(n):
        y = x
        for layer in layers:
            y = layer(y, training=True)
        a = np.clip(np.asarray(y)[0], 0, 255).astype(np.uint8)
        out.append(a[..., 0] if squeeze else a)
    return out


def tile(images: list[np.ndarray], cols: int = 3, pad: int = 2) -> np.ndarray:
    """Equal-sized images in one grid (white gaps), shown with a single st.image."""
    h, w = images[0].shape[:2]
    c = 1 if images[0].ndim == 2 else images[0].shape[2]
    rows = -(-len(images) // cols)
    grid = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, c), 255, np.uint8)
    for i, im in enumerate(images):
        r, k = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, k * (w + pad) : k * (w + pad) + w] = im.reshape(h, w, c)
    return grid[..., 0] if c == 1 else grid
