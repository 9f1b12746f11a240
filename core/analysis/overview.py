"""The network at a glance: every top-level layer's output for one image, as CNN Explainer's overview shows it.

One sub-model over the outputs of all of `model.layers` (plus the model's output) is built once per model and
run once per image; the pictures are numpy tiles, so the whole overview costs about one forward pass. A nested
model (a MobileNetV2/Xception base, an augmentation Sequential) is one block, as in `inspection`: its output is
shown and its inside is never rebuilt.

Per layer: its name, kind and output shape, and a small picture: for a spatial map (h, w, c) the `top` channels
with the highest mean activation side by side (each scaled to its own min–max, like the feature-map grids); for a
vector the units as a grid of coloured cells, scaled over the layer together. `full_grid` draws one layer in full
when the user opens it. The overview ends with the class probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np

from core.analysis import inspection
from core.analysis.probabilities import OUTPUT_KINDS, to_probabilities
from core.data import images
from core.errors import UserError

__all__ = [
    "CARD_UNITS",
    "CELL",
    "MAX_UNITS",
    "UNIT_COLS",
    "Glance",
    "LayerGlance",
    "NetworkOverview",
    "full_grid",
    "shown_units",
    "unit_grid",
]

CELL = 40  # a thumbnail tile is about this many pixels a side, whatever the map's own size
UNIT_COLS = 32  # vector layers: units per row of the unit grid
CARD_UNITS = 128  # a layer card shows a vector's first units (4 rows); opening the layer shows more
MAX_UNITS = 2048  # the opened layer shows at most this many units; the caption says so
OFF_AT_INFERENCE = "off at inference: passes its input through"
# Layers that pass their input through unchanged at inference (training=False): worth saying on the card.
# Random augmentations by name (the set grows with Keras), except crops/resizes, which still act at inference.
PASS_THROUGH = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
)
ACTS_AT_INFERENCE = ("RandomCrop", "RandomResizedCrop")


@dataclass(frozen=True)
class LayerGlance:
    """One layer's card: what it is, its output for this image, and the picture drawn from it."""

    index: int  # position in model.layers
    name: str
    kind: str  # the layer's class, e.g. "Conv2D"; a nested model says how many layers it holds
    output_shape: tuple[int, ...]  # without the batch axis
    activations: np.ndarray  # float32 output for this image, batch axis dropped
    top_channels: tuple[int, ...]  # spatial maps: the channels shown, most active first; else empty
    thumbnail: np.ndarray | None  # uint8 (H, W, 3); None when the output is neither a map nor a vector
    note: str = ""  # e.g. "off at inference: passes its input through"

    @property
    def off_at_inference(self) -> bool:
        """Augmentation and dropout: identity when the app runs the model (training=False)."""
        return self.note == OFF_AT_INFERENCE

    @property
    def spatial(self) -> bool:
        return self.activations.ndim == 3

    def shape_text(self) -> str:
        return "×".join(str(d) for d in self.output_shape) or "scalar"


@dataclass(frozen=True)
class Glance:
    """The overview of one image: one LayerGlance per entry of `model.layers`, in order, then probabilities."""

    layers: list[LayerGlance]
    probabilities: np.ndarray  # (k,) float64 summing to 1 (two entries for a one-unit sigmoid head)

    def layer(self, name: str) -> LayerGlance:
        for glance in self.layers:
            if glance.name == name:
                return glance
        raise UserError(f"this model has no layer named {name!r}")


def _count_layers(model: keras.Model) -> int:
    return sum(_count_layers(layer) if isinstance(layer, keras.Model) else 1 for layer in model.layers)


def _kind(layer: keras.layers.Layer) -> tuple[str, str]:
    """(kind, note) for a card: nested models are one block, pass-through layers say so."""
    if isinstance(layer, keras.Model):
        n = _count_layers(layer)
        layers = f"{n} layer{'s' if n != 1 else ''}"
        return f"{type(layer).__name__} · {layers}", f"a nested model of {layers}, shown as one block"
    name = type(layer).__name__
    if isinstance(layer, PASS_THROUGH) or (name.startswith("Random") and name not in ACTS_AT_INFERENCE):
        return name, OFF_AT_INFERENCE
    return name, ""


def _first(out):
    return out[0] if isinstance(out, list | tuple) else out


def _fit(maps: np.ndarray, cell: int) -> np.ndarray:
    """(h, w, c) maps brought to about `cell` pixels a side: block means down, nearest-neighbour up (crisp).

    Whole factors only (rounded), so a 198-pixel map becomes 39 and a 23-pixel one 46: thumbnails of every
    layer come out about the same size without resampling artefacts.
    """
    h, w = maps.shape[:2]
    side = max(h, w)
    s = round(side / cell)
    if s > 1 and min(h, w) >= s:
        hh, ww = h // s, w // s
        return maps[: hh * s, : ww * s].reshape(hh, s, ww, s, -1).mean(axis=(1, 3))
    return images.upscale(maps, round(cell / side))


def unit_grid(values: np.ndarray, colormap: str = "viridis", cols: int = UNIT_COLS, cell: int = 6,
              pad: int = 1) -> np.ndarray:  # fmt: skip
    """A vector of units as a uint8 RGB grid: one `cell`-pixel square per unit, `cols` to a row, row-major.

    The units are scaled together (min–max over the layer), so brighter is more active *within this layer*;
    cells past the last unit are the separator colour. H = rows*cell + (rows-1)*pad, W likewise with cols.
    """
    v = np.nan_to_num(np.ravel(np.asarray(values, dtype=np.float32)), nan=0.0, posinf=0.0, neginf=0.0)
    if v.size == 0:
        raise ValueError("unit_grid needs at least one unit")
    lo, span = float(v.min()), float(v.max() - v.min())
    unit = (v - lo) / span if span > 0 else np.zeros_like(v)
    gray = np.rint(unit * 255.0).astype(np.uint8)
    tiles = np.broadcast_to(gray[:, None, None], (v.size, cell, cell))
    return inspection._grid(inspection.apply_colormap(tiles, colormap), min(cols, v.size), pad,
                            inspection.SEPARATOR_RGB)  # fmt: skip


def _thumbnail(
    out: np.ndarray, top: int, cell: int, colormap: str
) -> tuple[np.ndarray | None, tuple[int, ...]]:
    if out.ndim == 3:
        means = np.einsum("ijk->k", out) / max(1, out.shape[0] * out.shape[1])  # 6x faster than .mean here
        order = np.argsort(-np.nan_to_num(means, nan=-np.inf), kind="stable")[:top]
        picked = _fit(out[..., order], cell)
        grid = inspection.tile_maps_rgb(picked, colormap, cols=len(order), pad=inspection.GRID_PAD)
        return grid, tuple(int(i) for i in order)
    if out.ndim == 1:
        return unit_grid(out[:CARD_UNITS], colormap), ()
    return None, ()


class NetworkOverview:
    """The sub-model behind the overview, built once per loaded model (the UI caches this object).

    Its outputs are every top-level layer's output in `model.layers` order, then the model's output (for the
    probabilities); calling it runs that one sub-model on one image and tiles the pictures with numpy.
    """

    def __init__(self, model: keras.Model) -> None:
        self.layers: list[keras.layers.Layer] = list(model.layers)
        if not self.layers:
            raise UserError("this model has no layers to show")
        self.input_shape: tuple[int | None, ...] = inspection._input_shape(model)
        self.kinds: list[tuple[str, str]] = [_kind(layer) for layer in self.layers]
        outputs = [_first(inspection.layer_output(model, layer)) for layer in self.layers]
        self._model = keras.Model(inspection.model_inputs(model), [*outputs, model.outputs[0]])

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def __call__(
        self, x: np.ndarray, output_kind: str = "softmax", top: int = 4, cell: int = CELL,
        colormap: str = "viridis",
    ) -> Glance:  # fmt: skip
        """The overview of one image (H, W, C) or (1, H, W, C): one forward pass, then numpy tiling."""
        if output_kind not in OUTPUT_KINDS:
            raise ValueError(f"unknown output kind {output_kind!r}; expected one of {OUTPUT_KINDS}")
        if top < 1 or cell < 1:
            raise ValueError(f"top and cell must be >= 1, got {top} and {cell}")
        batch = inspection.one_image_batch(x, self.input_shape)
        results = inspection._as_list(self._model(batch, training=False))
        glances: list[LayerGlance] = []
        for i, (layer, (kind, note), out) in enumerate(
            zip(self.layers, self.kinds, results[:-1], strict=True)
        ):
            act = np.asarray(out, dtype=np.float32)[0]
            prev = glances[-1] if glances else None
            if note == OFF_AT_INFERENCE and prev is not None and np.array_equal(prev.activations, act):
                thumb, channels = prev.thumbnail, prev.top_channels  # identity at inference: same picture
            else:
                thumb, channels = _thumbnail(act, top, cell, colormap)
            glances.append(LayerGlance(i, layer.name, kind, tuple(act.shape), act, channels, thumb, note))
        probs = to_probabilities(np.asarray(results[-1]).reshape(1, -1), output_kind)[0]
        return Glance(glances, probs)


def full_grid(
    glance: LayerGlance, colormap: str = "viridis", cell: int = 56, max_maps: int = 64
) -> np.ndarray:
    """One layer in full as a uint8 RGB image: every channel (up to `max_maps`, 8 to a row) or every unit.

    Spatial maps reuse the Inspect page's feature-map grid (`inspection.tile_maps_rgb`, each map its own
    min–max, upscaled to about `cell` pixels; maps over 2×`cell` are block-averaged to about that, since the page
    shrinks a wider grid anyway); a vector gets `unit_grid` with bigger cells.
    """
    act = glance.activations
    if act.ndim == 3:
        side = max(act.shape[:2])
        maps = act[..., :max_maps]
        if side > 2 * cell:  # 8 maps of 198 px are 1,600 px wide; the page shows at most 900: average first
            maps = _fit(maps, 2 * cell)
        else:
            maps = images.upscale(maps, max(1, round(cell / side)))
        return inspection.tile_maps_rgb(maps, colormap, cols=8)
    if act.ndim == 1:
        return unit_grid(act[:MAX_UNITS], colormap, cell=max(4, min(16, cell // 4)))
    raise UserError(f"layer {glance.name!r} outputs a {act.ndim}-D tensor; there is no picture to draw")


def shown_units(glance: LayerGlance) -> int:
    """How many units a vector layer's pictures show (the first MAX_UNITS)."""
    return min(int(math.prod(glance.output_shape)), MAX_UNITS) if glance.activations.ndim == 1 else 0
