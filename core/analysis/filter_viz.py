"""What a filter looks for: activation maximisation, as keras-io's "Visualizing what convnets learn" does it.

Start from a low-variance random image around gray, climb the gradient of one filter's mean activation (border
excluded) with a normalised step, then deprocess (center, std-normalise, squeeze into 0..1, crop the border) so
the picture shows the pattern rather than its scale. Unlike the keras-io loop (one filter at a time) every filter
of a chunk climbs at once: the images of a batch are independent (inference mode), so the gradient of the *sum*
of their responses gives each image its own filter's gradient, in one tf.function call per step.

Our models take raw pixels 0..255 (scaling is a layer inside), so the start is 128 ± 16 (keras-io's ±0.125 on a
[-1, 1] scale), each step moves pixels by STEP_PIXELS on average (root mean square), and the image is clipped to
0..255 after each step so it stays a picture the model could be shown.

A layer's pictures are cached in its run as `runs/<id>/filters/<layer>.png`; the PNG carries its cache key (the
model file's mtime and size and the settings), so a retrained or re-saved model is never shown stale pictures.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, PngImagePlugin

from core.analysis import inspection, png_out
from core.atomic import atomic_path
from core.data import images
from core.errors import UserError
from core.models import loading
from core.training import runs

__all__ = [
    "DEFAULT_ITERATIONS",
    "MAX_FILTERS",
    "MAX_ITERATIONS",
    "FilterImages",
    "FilterLayer",
    "cached_grid",
    "compute_grid",
    "deprocess",
    "filter_grid",
    "filter_layers",
    "maximise",
    "run_filter_grid",
    "write_new_png",
]

MAX_FILTERS = 64  # a 512-filter layer would take minutes and be unreadable; the first 64 are shown
DEFAULT_ITERATIONS = 30  # keras-io's count
MAX_ITERATIONS = 200
STEP_PIXELS = (
    4.0  # root-mean-square change per pixel per step, in 0..255 units (keras-io: lr 10 at 180×180×3)
)
GRAY = 128.0
NOISE = 16.0  # start = GRAY ± NOISE, uniform (keras-io: ±0.125 on a [-1, 1] scale)
LOSS_MARGIN = 2  # feature-map pixels left out of the loss on each side (keras-io's border trick)
CROP_SHARE = 25 / 180  # keras-io crops 25 pixels of 180 from each side of the result
BATCH_PIXELS = 2_000_000  # input floats per chunk of filters climbing together: 64 at 28×28, 4 at 400×400×3
COLS = 8
TILE_PX = 64  # tiles are upscaled nearest-neighbour to at least this side
NESTED_SEP = "/"
FILTERS_DIR = "filters"
KEY_VERSION = 1  # bump when the algorithm changes so old cached pictures are recomputed

Progress = Callable[[float], None]


# ---------------------------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class FilterLayer:
    """A convolution layer whose filters can be visualised; `name` is "base/inner" inside a nested model."""

    name: str
    filters: int
    nested: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} · {self.filters} filters"


def _channels(tensor: Any) -> int:
    shape = getattr(tensor, "shape", None)
    return int(shape[-1]) if shape is not None and len(shape) == 4 and shape[-1] is not None else 0


def filter_layers(model: keras.Model) -> list[FilterLayer]:
    """Every top-level convolution layer, then the convolutions inside a nested pretrained base, in graph order.

    A nested base (MobileNetV2, Xception) is one layer of the outer model; its own layers are reachable through
    the base's graph, so they are listed as "base/inner" and visualised through the outer model's preprocessing.
    """
    out: list[FilterLayer] = []
    for layer in model.layers:
        if isinstance(layer, inspection.CONV_TYPES):
            c = _channels(inspection.layer_output(model, layer))
            if c:
                out.append(FilterLayer(layer.name, c))
        elif isinstance(layer, keras.Model) and inspection.contains_conv(layer):
            for inner in layer.layers:
                if isinstance(inner, inspection.CONV_TYPES):
                    c = _channels(inspection.layer_output(layer, inner))
                    if c:
                        out.append(FilterLayer(f"{layer.name}{NESTED_SEP}{inner.name}", c, nested=True))
    return out


def _find(model: keras.Model, name: str) -> FilterLayer:
    choices = filter_layers(model)
    for layer in choices:
        if layer.name == name:
            return layer
    if not choices:
        raise UserError("this model has no convolution layers to visualise")
    shown = ", ".join(c.name for c in choices[:12]) + (", ..." if len(choices) > 12 else "")
    raise UserError(f"this model has no convolution layer named {name!r}; choose one of: {shown}")


def _feature_model(model: keras.Model, name: str) -> keras.Model:
    """Raw pixels -> the named layer's output, through the outer model's preprocessing for a nested layer."""
    inputs = inspection.model_inputs(model)
    if NESTED_SEP not in name:
        return keras.Model(inputs, inspection.layer_output(model, model.get_layer(name)))
    base_name, inner_name = name.split(NESTED_SEP, 1)
    base = model.get_layer(base_name)
    inner = keras.Model(
        inspection.model_inputs(base), inspection.layer_output(base, base.get_layer(inner_name))
    )
    feed = inspection.layer_input(model, base)  # a nested base's input in the outer model
    if feed is None:
        raise UserError(f"cannot visualise {name!r}: its base {base_name!r} is not fed by a single tensor")
    if feed is inputs:
        return inner
    pre = keras.Model(inputs, feed)
    x = keras.Input(tuple(model.inputs[0].shape[1:]))
    return keras.Model(x, inner(pre(x, training=False), training=False))


# ----------------------------------------------------------------------------------------- the ascent

_STEPS: weakref.WeakKeyDictionary[keras.Model, dict[str, Any]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _margin(shape: Sequence[int | None]) -> int:
    """LOSS_MARGIN, shrunk for small maps so the loss always has pixels (8×8 -> 2, 4×4 -> 1, 2×2 -> 0)."""
    h, w = shape[1], shape[2]
    if h is None or w is None:
        return 0
    return max(0, min(LOSS_MARGIN, (min(int(h), int(w)) - 1) // 3))


def _step_functions(model: keras.Model, name: str) -> tuple[Any, Any]:
    """(ascent step, response) tf.functions for one layer, traced once per loaded model and layer."""
    with _LOCK:
        per_model = _STEPS.setdefault(model, {})
        cached = per_model.get(name)
    if cached is not None:
        return cached
    extractor = _feature_model(model, name)
    m = _margin(tuple(extractor.outputs[0].shape))

    def respond(img: tf.Tensor, idx: tf.Tensor) -> tf.Tensor:
        act = extractor(img, training=False)
        if m:
            act = act[:, m:-m, m:-m, :]
        chosen = tf.gather(act, idx, axis=3, batch_dims=1)  # (B, h, w): each image its own filter
        return tf.reduce_mean(tf.cast(chosen, tf.float32), axis=[1, 2])

    @tf.function(reduce_retracing=True)
    def step(img: tf.Tensor, idx: tf.Tensor, lr: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(img)
            resp = respond(img, idx)
            total = tf.reduce_sum(resp)  # images are independent, so each gets its own filter's gradient
        grads = tape.gradient(total, img)
        rms = tf.sqrt(tf.reduce_mean(tf.square(grads), axis=[1, 2, 3], keepdims=True))
        # Normalised step, scale-free (tiny gradients of a deep random-weight base still climb); a dead filter's
        # zero gradient leaves its image where it is.
        img = img + lr * tf.math.divide_no_nan(grads, rms)
        return resp, tf.clip_by_value(img, 0.0, 255.0)

    @tf.function(reduce_retracing=True)
    def response(img: tf.Tensor, idx: tf.Tensor) -> tf.Tensor:
        return respond(img, idx)

    with _LOCK:
        per_model[name] = (step, response)
    return step, response


def start_images(n: int, shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """keras-io's start: low-variance uniform noise around gray, (n, H, W, C) float32 in pixel units."""
    rng = np.random.default_rng(seed)
    return (GRAY + rng.uniform(-NOISE, NOISE, (n, *shape))).astype(np.float32)


def deprocess(img: np.ndarray) -> np.ndarray:
    """keras-io's deprocess_image: center, std-normalise, scale to 0.15 std around 0.5, crop the border, clip."""
    x = np.asarray(img, dtype=np.float64).copy()
    x -= x.mean()
    x /= x.std() + 1e-5
    x *= 0.15
    h, w = x.shape[:2]
    crop = min(int(round(min(h, w) * CROP_SHARE)), (min(h, w) - 1) // 2)
    if crop:
        x = x[crop:-crop, crop:-crop]
    x = np.clip(x + 0.5, 0.0, 1.0)
    return np.rint(x * 255.0).astype(np.uint8)


@dataclass
class FilterImages:
    """Activation maximisation of some filters of one layer."""

    layer: str
    filters: list[int]  # which filters, in order
    total_filters: int  # how many the layer has
    iterations: int
    inputs: np.ndarray  # (n, H, W, C) float32 pixels the ascent ended on, what the model is fed
    images: np.ndarray  # (n, h, w, C) uint8 deprocessed pictures (border cropped)
    start_response: np.ndarray  # (n,) each filter's mean activation on its noise start
    final_response: np.ndarray  # (n,) ... on the final image


def _chunk(shape: Sequence[int]) -> int:
    return max(1, min(MAX_FILTERS, BATCH_PIXELS // max(1, int(np.prod(shape)))))


def maximise(
    model: keras.Model,
    layer: str,
    filters: Sequence[int] | None = None,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    step: float = STEP_PIXELS,
    seed: int = 0,
    progress: Progress | None = None,
) -> FilterImages:
    """Gradient ascent from gray noise for each filter (default: the first MAX_FILTERS of the layer)."""
    info = _find(model, layer)
    if not 1 <= int(iterations) <= MAX_ITERATIONS:
        raise UserError(f"iterations must be between 1 and {MAX_ITERATIONS}, got {iterations}")
    chosen = list(range(min(info.filters, MAX_FILTERS))) if filters is None else [int(f) for f in filters]
    if not chosen:
        raise UserError("no filters to visualise")
    if len(chosen) > MAX_FILTERS:
        raise UserError(f"at most {MAX_FILTERS} filters at a time, got {len(chosen)}")
    bad = [f for f in chosen if not 0 <= f < info.filters]
    if bad:
        raise UserError(f"layer {layer} has filters 0..{info.filters - 1}; there is no filter {bad[0]}")
    shape = tuple(int(s) for s in model.inputs[0].shape[1:])
    step_fn, response_fn = _step_functions(model, info.name)
    img_all = start_images(len(chosen), shape, seed)
    size = _chunk(shape)
    starts, finals, outs = [], [], []
    lr = tf.constant(float(step), tf.float32)
    chunks = range(0, len(chosen), size)
    total_steps = len(chunks) * int(iterations)
    done = 0
    for begin in chunks:
        idx = tf.constant(chosen[begin : begin + size], tf.int32)
        img = tf.constant(img_all[begin : begin + size])
        for i in range(int(iterations)):
            resp, img = step_fn(img, idx, lr)
            if i == 0:
                starts.append(np.asarray(resp))
            done += 1
            if progress is not None:
                progress(done / total_steps)
        finals.append(np.asarray(response_fn(img, idx)))
        outs.append(np.asarray(img))
    inputs = np.concatenate(outs)
    return FilterImages(
        layer=info.name,
        filters=chosen,
        total_filters=info.filters,
        iterations=int(iterations),
        inputs=inputs,
        images=np.stack([deprocess(x) for x in inputs]),
        start_response=np.concatenate(starts).astype(np.float64),
        final_response=np.concatenate(finals).astype(np.float64),
    )


def filter_grid(result: FilterImages, cols: int = COLS) -> np.ndarray:
    """The pictures tiled `cols` to a row (uint8 RGB, slate gaps as Inspect's kernel grid), small ones upscaled."""
    tiles = result.images
    if tiles.shape[-1] == 1:
        tiles = np.repeat(tiles, 3, axis=-1)
    elif tiles.shape[-1] != 3:  # a multi-channel input that is not RGB: show the mean as gray
        tiles = np.repeat(np.rint(tiles.mean(axis=-1, keepdims=True)).astype(np.uint8), 3, axis=-1)
    side = max(tiles.shape[1:3])
    tiles = images.upscale(tiles, max(1, TILE_PX // max(1, side)), axis=1)
    return inspection._grid(tiles, cols, inspection.GRID_PAD, inspection.SEPARATOR_RGB)


# ---------------------------------------------------------------------------------------- run cache


def _file_name(layer: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", layer)
    return f"{'_' if safe.startswith('.') else ''}{safe}.png"


def cache_path(run: runs.Run, layer: str) -> Path:
    return run.path / FILTERS_DIR / _file_name(layer)


def cache_key(run: runs.Run, layer: str, iterations: int = DEFAULT_ITERATIONS) -> str:
    """Changes with model.keras (mtime_ns and size) and with every setting that shapes the pictures."""
    try:
        st = run.model_path.stat()
    except OSError:
        raise UserError(f"run {run.run_id} has no saved model") from None
    parts = [KEY_VERSION, st.st_mtime_ns, st.st_size, layer, iterations, STEP_PIXELS, MAX_FILTERS, NOISE]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _png_bytes(grid: np.ndarray, meta: dict[str, Any]) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("convnet_filters", json.dumps(meta, sort_keys=True))
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(grid, dtype=np.uint8)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _read_png(path: Path) -> tuple[np.ndarray, dict[str, Any]] | None:
    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                return None
            meta = json.loads(getattr(im, "text", {}).get("convnet_filters", "null"))
            arr = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return (arr, meta) if isinstance(meta, dict) else None


def cached_grid(
    run: runs.Run, layer: str, iterations: int = DEFAULT_ITERATIONS
) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The run's saved pictures of this layer when they belong to the current model and settings."""
    got = _read_png(cache_path(run, layer))
    if got is None or got[1].get("key") != cache_key(run, layer, iterations) or got[1].get("layer") != layer:
        return None
    return got


def describe(meta: dict[str, Any]) -> str:
    """One line for a caption or the CLI: how many filters, how many steps, how much the response grew."""
    shown, total = meta.get("shown", 0), meta.get("total", 0)
    part = f"{shown} of {total} filters" if shown < total else f"all {total} filters"
    rose = meta.get("rose", shown)
    flat = (
        "" if rose >= shown else " (the others stay flat: silent near gray, they give no gradient to climb)"
    )
    return (f"{meta.get('layer')}: {part}, {meta.get('iterations')} gradient-ascent steps from gray noise; "
            f"the response rose for {rose} of {shown}{flat}")  # fmt: skip


def compute_grid(
    model: keras.Model, layer: str, *, iterations: int = DEFAULT_ITERATIONS, progress: Progress | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """(tiled pictures, metadata) for any model, e.g. an uploaded one that has no run to cache in."""
    result = maximise(model, layer, iterations=iterations, progress=progress)
    meta = {
        "layer": result.layer,
        "shown": len(result.filters),
        "total": result.total_filters,
        "iterations": result.iterations,
        "rose": int(np.sum(result.final_response > result.start_response)),
    }
    return filter_grid(result), meta


def run_filter_grid(
    run_id: str,
    layer: str,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    progress: Progress | None = None,
    loaded: loading.LoadedModel | None = None,
) -> tuple[np.ndarray, dict[str, Any], bool]:
    """(grid, metadata, came from the cache) for a run's layer: cached in the run, computed on a miss.

    The key is taken before computing, so a model re-saved by a still-running job meanwhile leaves the saved
    pictures keyed to the older model, and the next call computes again.
    """
    run = runs.get_run(run_id)
    if not run.has_model:
        raise UserError(f"run {run.run_id} has no saved model yet")
    hit = cached_grid(run, layer, iterations)
    if hit is not None:
        if progress is not None:
            progress(1.0)
        return hit[0], hit[1], True
    key = cache_key(run, layer, iterations)
    lm = loaded or loading.load_run_model(run)
    grid, meta = compute_grid(lm.model, layer, iterations=iterations, progress=progress)
    meta = {"key": key, **meta}
    try:
        cache_path(run, layer).parent.mkdir(
            exist_ok=True
        )  # no parents: a run deleted meanwhile stays deleted
        with atomic_path(cache_path(run, layer), suffix=".png", make_parents=False) as tmp:
            tmp.write_bytes(_png_bytes(grid, meta))
    except OSError:
        pass  # the pictures are still shown; the next request computes them again
    return grid, meta, False


def write_new_png(path: Path, grid: np.ndarray, meta: dict[str, Any] | None = None) -> Path:
    """Write the grid to a new file only: an existing file, folder, link or device is refused in one line."""
    return png_out.write(path, _png_bytes(grid, meta or {}))
