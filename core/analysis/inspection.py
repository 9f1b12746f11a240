"""Looking inside a trained CNN: feature maps, learned kernels, Grad-CAM heatmaps and raw activations.

Everything here returns plain numpy arrays (uint8 images ready for `st.image`, or float heatmaps) so the UI
never touches matplotlib figures: the notebooks drew one subplot per feature map, which took seconds per image;
one tiled uint8 image per layer takes milliseconds.

Models follow the project conventions: Keras 3 Functional models taking float32 raw pixels 0..255 shaped
(N, H, W, C), with augmentation and Rescaling inside. Augmentation layers are switched off by always calling
with `training=False`. A nested sub-model (a MobileNetV2/Xception base) is treated as one layer: its output is
the feature map we show and explain, and we never rebuild graphs through its inside.
"""

from __future__ import annotations

import functools
import math
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from core.analysis.probabilities import OUTPUT_KINDS
from core.data import images
from core.errors import UserError

__all__ = [
    "CONV_TYPES",
    "PAD_VALUE",
    "POOL_TYPES",
    "NO_EVIDENCE",
    "SEPARATOR_RGB",
    "FeatureMapExtractor",
    "GradCam",
    "apply_colormap",
    "conv_layers",
    "dense_layers",
    "grad_cam",
    "grad_cam_result",
    "kernel_grid",
    "layer_activations",
    "overlay",
    "score_tensor",
    "tile_maps",
    "tile_maps_rgb",
]

CONV_TYPES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
POOL_TYPES = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)

# Gray grids (tile_maps) separate tiles with white. The coloured grids the pages show (tile_maps_rgb,
# kernel_grid) use a cool neutral gray instead: every min-max normalised tile holds pure white and pure black,
# so a white or black gap merges with the tiles beside it, and after a colormap a gray gap would become a
# colour of the map itself. A slate gray is in no colormap we offer and in no grayscale kernel.
PAD_VALUE = 255
SEPARATOR_RGB = (148, 163, 184)
GRID_PAD = 2  # pixels between tiles: one pixel vanishes once the browser scales the image to its column

# Side models (Grad-CAM, activations) are built once per loaded model and die with it: a WeakKeyDictionary
# keyed by the user's model, so a cached Streamlit model that is evicted frees its helpers too.
_GRAD_MODELS: weakref.WeakKeyDictionary[keras.Model, dict[str, _GradSide]] = weakref.WeakKeyDictionary()
_ACTIVATION_MODELS: weakref.WeakKeyDictionary[keras.Model, dict[tuple[str, ...], keras.Model]] = (
    weakref.WeakKeyDictionary()
)
_CACHE_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------------- layers


def contains_conv(model: keras.Model) -> bool:
    return any(isinstance(layer, CONV_TYPES) for layer in _walk_layers(model))


def _walk_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Depth-first through nested models; only kernel_grid descends, because weights need no graph."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk_layers(layer)
        else:
            yield layer


def _is_feature_stage(layer: keras.layers.Layer) -> bool:
    """A nested model that convolves and ends in a 4-D map (a pretrained base) counts as one conv stage.

    A nested augmentation Sequential is also 4-D but has no convolution, so it is not a stage.
    """
    if not isinstance(layer, keras.Model) or not contains_conv(layer):
        return False
    outputs = layer.outputs
    return len(outputs) == 1 and len(outputs[0].shape) == 4


def conv_layers(model: keras.Model, include_pooling: bool = False) -> list[keras.layers.Layer]:
    """Top-level convolution layers in graph order; a nested conv base appears once, as itself.

    Descending into a nested base would expose hundreds of MobileNet layers and require rebuilding its graph,
    so the base's output stands in for everything inside it.
    """
    wanted = CONV_TYPES + POOL_TYPES if include_pooling else CONV_TYPES
    return [layer for layer in model.layers if isinstance(layer, wanted) or _is_feature_stage(layer)]


def _graph_of(model: keras.Model) -> keras.Model:
    # A built Sequential keeps its graph in a private Functional.
    return model if hasattr(model, "_nodes_by_depth") else getattr(model, "_functional", model)


def layer_output(model: keras.Model, layer: keras.layers.Layer):
    """The symbolic tensor `layer` produces *inside `model`'s graph*.

    `layer.output` is wrong for a nested Functional model (it returns the sub-model's own internal output, not
    connected to the outer inputs), so look up the node that belongs to this model's graph.
    """
    node = _node_of(model, layer)
    if node is None:
        return layer.output
    outs = node.output_tensors
    return outs[0] if len(outs) == 1 else outs


def _node_of(model: keras.Model, layer: keras.layers.Layer):
    """The call of `layer` that belongs to `model`'s own graph (a nested model's layer has one per graph)."""
    for nodes in getattr(_graph_of(model), "_nodes_by_depth", {}).values():
        for node in nodes:
            if node.operation is layer:
                return node
    return None


def _get_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    try:
        return model.get_layer(name)
    except ValueError:
        raise UserError(f"this model has no layer named {name!r}") from None


# ---------------------------------------------------------------------------------------------- input


def model_inputs(model: keras.Model):
    # A bare tensor for single-input models, so calling the side model with one array raises no structure warning.
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs


def _input_shape(model: keras.Model) -> tuple[int | None, ...]:
    return tuple(model.inputs[0].shape[1:])


def one_image_batch(x: np.ndarray, expected: Sequence[int | None]) -> np.ndarray:
    """(1, H, W, C) float32 from one image, with a one-line reason when it cannot fit the model."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 2 and len(expected) == 3 and expected[-1] == 1:
        arr = arr[..., None]
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[0] != 1:
        raise UserError(f"expected one image shaped (H, W, C); got an array of shape {tuple(np.shape(x))}")
    got = arr.shape[1:]
    if len(expected) != 3 or any(e is not None and e != g for e, g in zip(expected, got, strict=True)):
        want = "×".join("?" if e is None else str(e) for e in expected)
        raise UserError(f"this model takes {want} images; got {'×'.join(map(str, got))}")
    return arr


def _as_list(outputs) -> list:
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


# ----------------------------------------------------------------------------------------- feature maps


class FeatureMapExtractor:
    """One multi-output model over every conv layer, built once per loaded model (the UI caches this object).

    Rebuilding `keras.Model(...)` per image costs more than running it, so construction and calls are split.
    """

    def __init__(self, model: keras.Model, include_pooling: bool = False) -> None:
        layers = conv_layers(model, include_pooling=include_pooling)
        if not layers:
            raise UserError("this model has no convolution layers to show")
        self.layer_names: list[str] = [layer.name for layer in layers]
        self.input_shape: tuple[int | None, ...] = _input_shape(model)
        self._model = keras.Model(model_inputs(model), [layer_output(model, layer) for layer in layers])

    def __call__(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """(layer name, maps shaped (h, w, c)) per layer for one image (H, W, C) or (1, H, W, C)."""
        batch = one_image_batch(x, self.input_shape)
        outputs = _as_list(self._model(batch, training=False))
        return [(name, np.asarray(out)[0]) for name, out in zip(self.layer_names, outputs, strict=True)]


def _normalise_maps(maps: np.ndarray) -> np.ndarray:
    """Per-map min-max to uint8; a constant map has no contrast to show, so it becomes 0 (never NaN)."""
    m = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo = m.min(axis=(0, 1), keepdims=True)
    span = m.max(axis=(0, 1), keepdims=True) - lo
    unit = np.divide(m - lo, span, out=np.zeros_like(m), where=span > 0)
    return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


def _grid(tiles: np.ndarray, cols: int, pad: int, fill: int | Sequence[int] = PAD_VALUE) -> np.ndarray:
    """Lay out (n, th, tw[, 3]) uint8 tiles row-major with `pad`-pixel gaps of `fill`, in one reshape."""
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    n, th, tw = tiles.shape[:3]
    extra = tiles.shape[3:]
    if n == 0:
        raise ValueError("nothing to tile: zero maps")
    ncols = min(cols, n)
    rows = math.ceil(n / ncols)
    cells = np.empty((rows * ncols, th, tw, *extra), dtype=np.uint8)
    cells[:] = np.asarray(fill, dtype=np.uint8)
    cells[:n] = tiles
    canvas = np.empty((rows, th + pad, ncols, tw + pad, *extra), dtype=np.uint8)
    canvas[:] = np.asarray(fill, dtype=np.uint8)
    order = (0, 2, 1, 3, *range(4, 4 + len(extra)))
    canvas[:, :th, :, :tw] = cells.reshape(rows, ncols, th, tw, *extra).transpose(order)
    height = rows * th + (rows - 1) * pad
    width = ncols * tw + (ncols - 1) * pad
    return np.ascontiguousarray(
        canvas.reshape(rows * (th + pad), ncols * (tw + pad), *extra)[:height, :width]
    )


def tile_maps(maps: np.ndarray, cols: int = 8, pad: int = 1, max_maps: int | None = None) -> np.ndarray:
    """All of a layer's maps as one uint8 (H, W) image, each map min-max normalised on its own.

    Layout: row-major, `min(cols, c)` columns, rows = ceil(c / columns), separated by `pad` pixels of
    PAD_VALUE (255); empty cells in the last row are PAD_VALUE too. So H = rows*h + (rows-1)*pad and
    W = columns*w + (columns-1)*pad. `max_maps` keeps only the first maps (wide layers get unreadable).
    """
    return _grid(_map_tiles(maps, max_maps), cols, pad)


def tile_maps_rgb(
    maps: np.ndarray,
    colormap: str = "viridis",
    cols: int = 8,
    pad: int = GRID_PAD,
    max_maps: int | None = None,
) -> np.ndarray:
    """tile_maps in colour, uint8 (H, W, 3), with SEPARATOR_RGB gaps: the same layout and sizes as tile_maps.

    Colouring the tiles before laying them out keeps the gaps out of the colormap, so they look the same as
    the kernel grid's instead of turning into the colormap's brightest colour.
    """
    return _grid(apply_colormap(_map_tiles(maps, max_maps), colormap), cols, pad, SEPARATOR_RGB)


def _map_tiles(maps: np.ndarray, max_maps: int | None) -> np.ndarray:
    """(h, w, c) maps -> (c, h, w) uint8 tiles, each min-max normalised on its own."""
    arr = np.asarray(maps)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"maps must be shaped (h, w, c); got {arr.shape}")
    if max_maps is not None:
        if max_maps < 1:
            raise ValueError(f"max_maps must be >= 1, got {max_maps}")
        arr = arr[..., :max_maps]
    return _normalise_maps(arr).transpose(2, 0, 1)


@functools.lru_cache(maxsize=32)
def _colormap_lut(name: str) -> np.ndarray:
    import matplotlib  # lazy: only the colormap registry is needed, never pyplot or a backend

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise UserError(f"unknown colormap {name!r}") from None
    lut = np.rint(cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def apply_colormap(gray_uint8: np.ndarray, name: str = "viridis") -> np.ndarray:
    """uint8 (H, W) -> uint8 (H, W, 3) through a 256-entry lookup table: one fancy-index, no figure."""
    gray = np.asarray(gray_uint8)
    if gray.dtype != np.uint8:
        raise ValueError(f"apply_colormap needs a uint8 image, got {gray.dtype}")
    return _colormap_lut(name)[gray]


# ---------------------------------------------------------------------------------------------- kernels


def _first_conv(model: keras.Model) -> keras.layers.Layer:
    for layer in _walk_layers(model):
        if isinstance(layer, CONV_TYPES):
            return layer
    raise UserError("this model has no convolution layers to show")


def _find_conv(model: keras.Model, name: str) -> keras.layers.Layer:
    for layer in _walk_layers(model):
        if layer.name == name:
            if not isinstance(layer, CONV_TYPES):
                raise UserError(f"layer {name!r} is not a convolution layer, so it has no kernels to show")
            return layer
    raise UserError(f"this model has no layer named {name!r}")


def _kernel_weights(model: keras.Model, layer_name: str | None) -> tuple[np.ndarray, bool]:
    """(kh, kw, cin, out) float32 kernels of the first (or named) conv layer, and whether they show in colour.

    Depthwise/separable layers give one single-channel kernel per depthwise filter; only an ordinary
    convolution over three input channels has an RGB picture.
    """
    layer = _find_conv(model, layer_name) if layer_name else _first_conv(model)
    if isinstance(layer, keras.layers.SeparableConv2D):
        depthwise = layer.depthwise_kernel.numpy()
    elif isinstance(layer, keras.layers.DepthwiseConv2D):
        depthwise = layer.kernel.numpy()
    else:
        kernels = layer.kernel.numpy().astype(np.float32)
        return kernels, kernels.shape[2] == 3
    kh, kw, cin, mult = depthwise.shape
    return depthwise.reshape(kh, kw, 1, cin * mult).astype(np.float32), False


def kernels_in_colour(model: keras.Model, layer_name: str | None = None) -> bool:
    """Whether kernel_grid draws this layer's kernels in colour (RGB input) or as channel means (gray)."""
    return _kernel_weights(model, layer_name)[1]


def kernel_grid(
    model: keras.Model, layer_name: str | None = None, cols: int = 8, pad: int = GRID_PAD, upscale: int = 8
) -> np.ndarray:
    """The learned kernels of the first (or named) conv layer as one uint8 RGB image (H, W, 3).

    A 3-input-channel Conv2D shows its kernels in colour, each normalised over its three channels together so
    its colour balance survives; otherwise each kernel's mean over input channels becomes a gray tile (equal
    R, G and B). Depthwise/separable layers show one tile per depthwise filter. Each tile is upscaled
    `upscale`× nearest-neighbour so a 3×3 kernel is visible, and tiles are `pad` pixels apart in
    SEPARATOR_RGB, so neighbouring kernels never run into each other. Unlike the other functions this one
    looks inside a nested base, since reading weights needs no graph surgery.
    """
    if upscale < 1:
        raise ValueError(f"upscale must be >= 1, got {upscale}")
    kernels, colour = _kernel_weights(model, layer_name)
    if colour:
        rgb = kernels.transpose(3, 0, 1, 2)  # (out, kh, kw, 3)
        lo = rgb.min(axis=(1, 2, 3), keepdims=True)
        span = rgb.max(axis=(1, 2, 3), keepdims=True) - lo
        unit = np.divide(rgb - lo, span, out=np.zeros_like(rgb), where=span > 0)
        tiles = np.rint(unit * 255.0).astype(np.uint8)
    else:
        gray = _map_tiles(kernels.mean(axis=2), None)  # (out, kh, kw), each min-max normalised
        tiles = np.repeat(gray[..., None], 3, axis=-1)
    tiles = images.upscale(tiles, upscale, axis=1)
    return _grid(tiles, cols, pad, SEPARATOR_RGB)


# --------------------------------------------------------------------------------------------- Grad-CAM


SQUASHING = ("softmax", "sigmoid")  # head activations Grad-CAM looks through, to the class score before them


@dataclass(frozen=True)
class _GradSide:
    """The Grad-CAM side model of one (model, layer): [feature map, score input], and how to get logits from it.

    `dense` is the head's Dense layer when the side model stops at its input (logits = input @ kernel + bias);
    `pre_activation` says the second output is the class score before the softmax/sigmoid (else the output).
    """

    model: keras.Model
    dense: keras.layers.Dense | None
    pre_activation: bool


def layer_input(model: keras.Model, layer: keras.layers.Layer):
    """The symbolic tensor fed to `layer` inside `model`'s graph (its first input), or None when not found."""
    node = _node_of(model, layer)
    ins = node.input_tensors if node is not None else []
    return ins[0] if len(ins) == 1 else None


def _activation_name(layer: keras.layers.Layer) -> str:
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", "") if act is not None else ""


def score_tensor(model: keras.Model) -> tuple[object, keras.layers.Dense | None, bool]:
    """(tensor, dense, pre_activation): what Grad-CAM differentiates, found without touching the shared model.

    keras-io's grad_cam example sets the last activation to None; mutating a model the UI caches and calls from
    several threads is unsafe, so instead the side model stops before the squashing: at a softmax/sigmoid
    Activation (or Softmax) layer's input, or at a softmax/sigmoid Dense head's input, whose logits we then
    compute from its own kernel and bias. Anything else (a head that already outputs logits, a nested head)
    keeps the model's output as the score.
    """
    output = model.outputs[0]
    history = getattr(output, "_keras_history", None)
    head = history.operation if history is not None else model.layers[-1]
    if _activation_name(head) in SQUASHING:
        before = layer_input(model, head)
        if before is not None and not isinstance(before, list | tuple):
            if isinstance(head, keras.layers.Dense):
                # a quantized kernel is not the float matrix the logits need; keep the output then
                if len(before.shape) == 2 and getattr(head, "quantization_mode", None) is None:
                    return before, head, True
            elif isinstance(head, keras.layers.Activation | keras.layers.Softmax):
                return before, None, True
    return output, None, False


_score_tensor = score_tensor  # the name the time-lapse recorder uses


def _grad_model(model: keras.Model, layer: keras.layers.Layer) -> _GradSide:
    with _CACHE_LOCK:
        per_model = _GRAD_MODELS.setdefault(model, {})
        cached = per_model.get(layer.name)
        if cached is None:
            score, dense, pre = score_tensor(model)
            side = keras.Model(model_inputs(model), [layer_output(model, layer), score])
            cached = _GradSide(side, dense, pre)
            per_model[layer.name] = cached
        return cached


def _logits(side: _GradSide, raw):
    """The class scores before the squashing, (1, k): the Dense head's affine part, or the side output itself."""
    if side.dense is None:
        return tf.reshape(raw, (1, -1))
    h = tf.cast(raw, tf.float32)
    z = tf.matmul(h, tf.cast(tf.convert_to_tensor(side.dense.kernel), tf.float32))
    if side.dense.use_bias:
        z = z + tf.cast(tf.convert_to_tensor(side.dense.bias), tf.float32)
    return tf.reshape(z, (1, -1))


def cam_layer(model: keras.Model, layer_name: str | None) -> keras.layers.Layer:
    if layer_name is None:
        candidates = conv_layers(model)
        if not candidates:
            raise UserError("this model has no convolution layers to explain")
        return candidates[-1]
    layer = _get_layer(model, layer_name)
    out = layer_output(model, layer)
    if isinstance(out, list | tuple) or len(out.shape) != 4:
        raise UserError(f"layer {layer_name!r} has no spatial feature map; pick a convolution layer")
    return layer


NO_EVIDENCE = "no evidence: the class score does not depend on any region of this image"
FLAT_TOLERANCE = 1e-3  # a map whose spread is below this share of its peak points at nothing


@dataclass(frozen=True)
class GradCam:
    """A Grad-CAM explanation; `evidence` is False when the heatmap would point at nothing.

    A zero or constant heatmap drawn as an overlay looks like "the model looks everywhere" or "nowhere"
    when the truth is that Grad-CAM found no region to credit, so callers say `note` instead of drawing it.
    """

    heatmap: np.ndarray  # (H, W) float32 in 0..1 at the input resolution; all zeros without evidence
    class_index: int
    evidence: bool
    note: str = ""  # one line saying why there is no evidence; empty when there is


def grad_cam(
    model: keras.Model,
    x: np.ndarray,
    class_index: int | None = None,
    layer_name: str | None = None,
    output_kind: str = "softmax",
) -> tuple[np.ndarray, int]:
    """Grad-CAM heatmap (H, W) float32 in 0..1 at the input resolution, and the class it explains.

    grad_cam_result without the evidence flag; a heatmap without evidence is all zeros (never NaN).
    """
    result = grad_cam_result(model, x, class_index, layer_name, output_kind)
    return result.heatmap, result.class_index


def grad_cam_result(
    model: keras.Model,
    x: np.ndarray,
    class_index: int | None = None,
    layer_name: str | None = None,
    output_kind: str = "softmax",
) -> GradCam:
    """Grad-CAM for one image, with a flag saying whether the heatmap points at anything.

    The gradient is that of the class score *before* the softmax/sigmoid (keras-io's grad_cam example sets the
    last activation to None): a probability saturates for a confident prediction (p(1-p) reaches 0 in float32),
    so its gradient fades to nothing exactly where the model is surest. When the head squashes (a softmax or
    sigmoid Dense, Activation or Softmax layer) the logits are recomputed from the head's input; a head that
    already outputs logits is used as it is. `output_kind` says what the model's output means when it cannot
    be looked through. The class defaults to the predicted one. For a one-unit head class 1 uses +logit and
    class 0 -logit (or p and 1 - p for an opaque head), so both classes get their own positive evidence.
    Feature map: the last conv layer, or the nested base's output, or `layer_name`. No evidence when nothing
    reaches the score (no gradient path, all-zero gradients or a dead feature map) or when the map is the same
    everywhere (e.g. a blank image, or a 1×1 map): then the heatmap is all zeros and `note` says why.
    """
    if output_kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {output_kind!r}; expected one of {OUTPUT_KINDS}")
    expected = _input_shape(model)
    batch = tf.convert_to_tensor(one_image_batch(x, expected))
    height, width = int(batch.shape[1]), int(batch.shape[2])
    layer = cam_layer(model, layer_name)
    side = _grad_model(model, layer)
    logits = side.pre_activation or output_kind == "logits"

    with tf.GradientTape() as tape:
        feats, raw = side.model(batch, training=False)
        preds = _logits(side, raw)
        k = int(preds.shape[-1])
        if k == 1:
            value = float(preds[0, 0])
            cls = int(value >= (0.0 if logits else 0.5)) if class_index is None else class_index
            if cls not in (0, 1):
                raise UserError(f"class {cls} does not exist: this binary model has classes 0 and 1")
            if cls == 1:
                score = preds[0, 0]
            else:
                score = -preds[0, 0] if logits else 1.0 - preds[0, 0]
        else:
            cls = int(tf.argmax(preds[0])) if class_index is None else class_index
            if not 0 <= cls < k:
                raise UserError(f"class {cls} does not exist: this model has classes 0..{k - 1}")
            score = preds[0, cls]
    grads = tape.gradient(score, feats)

    nothing = GradCam(np.zeros((height, width), dtype=np.float32), int(cls), False, NO_EVIDENCE)
    if grads is None:
        return nothing
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(feats * weights, axis=-1))[0]
    cam = np.nan_to_num(np.asarray(cam, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if cam.size == 1:  # whatever the score's sign, a single cell has no region to point at
        note = (
            f"no evidence to place: layer {layer.name}'s map is 1×1 for this input, "
            "so Grad-CAM cannot point at a region"
        )
        return GradCam(nothing.heatmap, int(cls), False, note)
    top = float(cam.max()) if cam.size else 0.0
    if not top > 0.0:
        return nothing
    if float(cam.max() - cam.min()) <= FLAT_TOLERANCE * top:
        return nothing  # every region counts the same, so no region counts
    resized = tf.image.resize((cam / top)[..., None], (height, width), method="bilinear")
    heat = np.clip(np.asarray(resized, dtype=np.float32)[..., 0], 0.0, None)
    peak = float(heat.max())
    heat = heat / peak if peak > 0 else np.zeros_like(heat)
    return GradCam(np.clip(heat, 0.0, 1.0).astype(np.float32), int(cls), True)


def _resize_heatmap(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(heatmap, dtype=np.float32))
    return np.asarray(img.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def overlay(
    image_uint8: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, colormap: str = "jet"
) -> np.ndarray:
    """Blend a colour-mapped heatmap over the image: uint8 (H, W, 3).

    A grayscale image becomes RGB first; a float image is taken as 0..255 pixels (what the models eat), and a
    heatmap of another size is resized bilinearly, so the UI can overlay on the original-size picture.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = np.asarray(image_uint8)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"image must be (H, W), (H, W, 1) or (H, W, 3); got {np.shape(image_uint8)}")
    if img.dtype != np.uint8:
        img = np.rint(np.clip(np.nan_to_num(img.astype(np.float32)), 0, 255)).astype(np.uint8)
    heat = np.nan_to_num(np.asarray(heatmap, dtype=np.float32))
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be (H, W); got {heat.shape}")
    if heat.shape != img.shape[:2]:
        heat = _resize_heatmap(heat, *img.shape[:2])
    colour = apply_colormap(np.rint(np.clip(heat, 0.0, 1.0) * 255.0).astype(np.uint8), colormap)
    blended = (1.0 - alpha) * img.astype(np.float32) + alpha * colour.astype(np.float32)
    return np.rint(np.clip(blended, 0, 255)).astype(np.uint8)


# ------------------------------------------------------------------------------------------ activations


def dense_layers(model: keras.Model) -> list[str]:
    """Top-level Dense layers in graph order, the output head included: the choices for `layer_activations`."""
    return [layer.name for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def layer_activations(model: keras.Model, x: np.ndarray, layer_names: Iterable[str]) -> dict[str, np.ndarray]:
    """Outputs of any top-level layers (dense too) for one image, batch axis dropped: (units,) or (h, w, c).

    The side model is cached per (model, names) so stepping through images doesn't rebuild it.
    """
    names = tuple(dict.fromkeys(layer_names))
    if not names:
        return {}
    batch = one_image_batch(x, _input_shape(model))
    with _CACHE_LOCK:
        per_model = _ACTIVATION_MODELS.setdefault(model, {})
        side = per_model.get(names)
    if side is None:
        outputs = []
        for name in names:
            out = layer_output(model, _get_layer(model, name))
            if isinstance(out, list | tuple):
                raise UserError(f"layer {name!r} has several outputs; pick a layer with one")
            outputs.append(out)
        side = keras.Model(model_inputs(model), outputs)
        with _CACHE_LOCK:
            per_model[names] = side
    results = _as_list(side(batch, training=False))
    return {name: np.asarray(out)[0] for name, out in zip(names, results, strict=True)}
