"""A Keras callback that records, before training and after every epoch, what the network computes for a few
pinned images: each conv layer's feature maps, the Grad-CAM heatmap of the predicted class and the class
probabilities. Inspect plays them back with an epoch slider; `python -m core timelapse` writes PNGs and GIFs.

Cost. Recording must stay under 5% of an epoch of the `fast` preset on the embedded sample (about a second on
2 CPU cores; bench/bench_timelapse.py measures it). Calling `inspection.grad_cam_result` once per image costs
tens of milliseconds each in eager mode, so everything runs as one traced function over the pinned batch:
one forward pass to every conv layer and the output, and one gradient of the summed class scores. The images
do not interact (inference mode), so each image's gradient is the one grad_cam_result computes alone, and the
heatmap is post-processed the same way (tests/test_timelapse.py checks them against each other).

Size. Per epoch at most MAX_PINNED images x MAX_LAYERS layers x MAX_CHANNELS maps of MAX_SIDE² bytes, plus
CAM_SIDE² bytes of heatmap and K probabilities per image (about 1.3 MB before compression, a few kB for small
models). Files are written atomically, in order, by a background thread (recordings.QueuedWrites: an fsync
costs more than the recording itself), and never recreate a deleted run: a missing folder ends recording quietly.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from core import atomic
from core.analysis import inspection
from core.analysis.probabilities import to_probabilities
from core.errors import UserError
from core.training import recordings
from core.training.pinned import Pin

MAX_LAYERS = 8  # conv layers recorded, evenly spaced, the last always included
MAX_CHANNELS = 16  # the first maps of each layer (two rows of the Inspect grid)
MAX_SIDE = 32  # feature maps are downsampled (area) to at most this many pixels a side
CAM_SIDE = 64  # heatmaps are stored at most this big; the overlay scales them back up
IMAGE_SIDE = 160  # pinned images are stored at most this big, for the overlay


def _spread(n: int, k: int) -> list[int]:
    """k indices of range(n) spread evenly, first and last included."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def _fit(h: int, w: int, side: int) -> tuple[int, int]:
    """(h, w) scaled down to at most `side` on the longer side; never up."""
    if max(h, w) <= side:
        return h, w
    f = side / max(h, w)
    return max(1, round(h * f)), max(1, round(w * f))


def _to_uint8(maps):
    """Per-map min-max to uint8 over (h, w), as inspection's grids draw them; a constant map becomes 0."""
    m = tf.where(tf.math.is_finite(maps), maps, tf.zeros_like(maps))
    lo = tf.reduce_min(m, axis=(1, 2), keepdims=True)
    span = tf.reduce_max(m, axis=(1, 2), keepdims=True) - lo
    unit = tf.math.divide_no_nan(m - lo, span)
    return tf.cast(tf.round(tf.clip_by_value(unit, 0.0, 1.0) * 255.0), tf.uint8)


class FrameMaker:
    """The traced recording function for one model, built once; `__call__` takes the pinned batch."""

    def __init__(self, model: keras.Model, output_kind: str, max_layers: int = MAX_LAYERS,
                 max_channels: int = MAX_CHANNELS, max_side: int = MAX_SIDE) -> None:  # fmt: skip
        convs = inspection.conv_layers(model)
        cam_layer = inspection.cam_layer(model, None)  # raises UserError without a conv layer
        layers = [convs[i] for i in _spread(len(convs), max_layers)]
        self.layer_names = [layer.name for layer in layers]
        self.cam_layer = cam_layer.name
        self.output_kind = output_kind
        outputs = [inspection.layer_output(model, layer) for layer in layers]
        # Grad-CAM's score is the class score before the softmax/sigmoid, found as grad_cam_result finds it
        score, self._dense, self._pre_activation = inspection._score_tensor(model)
        outputs += [inspection.layer_output(model, cam_layer), model.outputs[0], score]
        self.shapes = [tuple(int(d) for d in out.shape[1:]) for out in outputs[: len(layers)]]
        self.stored = [(*_fit(h, w, max_side), min(c, max_channels)) for h, w, c in self.shapes]
        self._side = keras.Model(inspection.model_inputs(model), outputs)
        self._fn = tf.function(self._compute, reduce_retracing=True)

    def _logits(self, raw):
        """(N, k) class scores before the squashing: the Dense head's affine part, or the side output itself."""
        if self._dense is None:
            return tf.reshape(raw, (tf.shape(raw)[0], -1))
        z = tf.matmul(tf.cast(raw, tf.float32), tf.cast(tf.convert_to_tensor(self._dense.kernel), tf.float32))
        if self._dense.use_bias:
            z = z + tf.cast(tf.convert_to_tensor(self._dense.bias), tf.float32)
        return z

    def _scores(self, preds):
        """The class each image's heatmap explains (the predicted one) and its score, as grad_cam_result does."""
        logits = self._pre_activation or self.output_kind == "logits"
        if preds.shape[-1] == 1:
            raw = preds[:, 0]
            cls = tf.cast(raw >= (0.0 if logits else 0.5), tf.int32)
            other = -raw if logits else 1.0 - raw
            return cls, tf.where(cls == 1, raw, other)
        cls = tf.argmax(preds, axis=-1, output_type=tf.int32)
        return cls, tf.gather(preds, cls, batch_dims=1)

    def _compute(self, x):
        n = len(self.layer_names)
        with tf.GradientTape() as tape:
            outs = self._side(x, training=False)
            feats = outs[n]
            preds = tf.reshape(outs[n + 1], (tf.shape(x)[0], -1))
            cls, score = self._scores(self._logits(outs[n + 2]))
            total = tf.reduce_sum(score)
        grads = tape.gradient(total, feats)
        maps = []
        for out, (h, w, c) in zip(outs[:n], self.stored, strict=True):
            m = out[..., :c]
            if (h, w) != tuple(out.shape[1:3]):
                m = tf.image.resize(m, (h, w), method="area")
            maps.append(_to_uint8(m))
        if grads is None:  # nothing reaches the score from this layer
            cam = tf.zeros(tf.shape(feats)[:3], feats.dtype)
        else:
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(feats * weights, axis=-1))
        return maps, cam, cls, preds

    def __call__(self, x: np.ndarray) -> dict[str, Any]:
        """maps (per layer, uint8), heat (P, H, W) float32 0..1 at the input size, evidence, cam_class, probs."""
        batch = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
        maps, cam, cls, preds = self._fn(batch)
        height, width = int(batch.shape[1]), int(batch.shape[2])
        heat, evidence = _heatmaps(np.asarray(cam, dtype=np.float32), height, width)
        return {"maps": [np.asarray(m) for m in maps], "heat": heat, "evidence": evidence,
                "cam_class": np.asarray(cls, dtype=np.int32),
                "probs": to_probabilities(np.asarray(preds), self.output_kind).astype(np.float32)}  # fmt: skip


def _heatmaps(cam: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """grad_cam_result's post-processing for a batch: scale by the peak, resize bilinearly, clip, rescale.

    A map that is zero, or the same everywhere (within inspection.FLAT_TOLERANCE of its peak), has no evidence
    and becomes all zeros, as there.
    """
    cam = np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0)
    top = cam.max(axis=(1, 2)) if cam.size else np.zeros(len(cam), np.float32)
    flat = (cam.max(axis=(1, 2)) - cam.min(axis=(1, 2))) <= inspection.FLAT_TOLERANCE * top
    evidence = (top > 0.0) & ~flat
    scaled = np.divide(cam, top[:, None, None], out=np.zeros_like(cam), where=top[:, None, None] > 0)
    resized = np.asarray(tf.image.resize(scaled[..., None], (height, width), method="bilinear"))[..., 0]
    heat = np.clip(resized, 0.0, None)
    peak = heat.max(axis=(1, 2), keepdims=True)
    heat = np.divide(heat, peak, out=np.zeros_like(heat), where=peak > 0)
    heat[~evidence] = 0.0
    return np.clip(heat, 0.0, 1.0).astype(np.float32), evidence


def _shrink(a: np.ndarray, side: int) -> np.ndarray:
    """(N, H, W[, C]) uint8 scaled down (area) to at most `side` a side; small arrays pass unchanged."""
    h, w = a.shape[1:3]
    size = _fit(h, w, side)
    if size == (h, w):
        return a
    x = a[..., None] if a.ndim == 3 else a
    out = np.asarray(tf.image.resize(x.astype(np.float32), size, method="area"))
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out[..., 0] if a.ndim == 3 else out


class TimeLapse(keras.callbacks.Callback):
    """Writes runs/<id>/timelapse/ (see core.training.recordings): one frame before training and one per epoch.

    Only the chief of a multi-worker run records (the trainer adds this callback there alone). A run without
    pinned images or without a conv layer records nothing; a run folder deleted mid-training stops recording.
    """

    def __init__(self, run_dir: Path, pins: list[Pin], class_names: list[str], output_kind: str) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.pins = list(pins)
        self.class_names = list(class_names)
        self.output_kind = output_kind

    def on_train_begin(self, logs=None):
        self.epochs: list[int] = []  # written to disk (by the write thread)
        self.seconds: list[float] = []  # what each epoch's frame cost the training thread
        self.sizes: list[int] = []
        self._maker: FrameMaker | None = None
        self._initial: list | None = None
        self._writes = recordings.QueuedWrites("time-lapse")
        if not self.pins:
            return
        t0 = time.perf_counter()
        try:
            self._maker = FrameMaker(self.model, self.output_kind)
        except UserError:  # no conv layer: nothing to show
            return
        self._x = np.stack([p.image for p in self.pins]).astype(np.float32)
        folder = recordings.timelapse_dir(self.run_dir)
        try:
            folder.mkdir(exist_ok=True)  # never its parent: a deleted run stays deleted
        except FileNotFoundError:
            self._writes.gone = True
            return
        pinned = recordings.npz_bytes({"images": _shrink(np.stack([p.image for p in self.pins]), IMAGE_SIDE)})
        self._writes.submit(
            lambda: atomic.write_bytes(folder / recordings.PINNED_FILE, pinned, make_parents=False)
        )
        # frame 0 is drawn from these weights when epoch 1 ends: drawing it here (tracing the side model) held the
        # first batch back by 1-1.5 s
        self._initial = self.model.get_weights()
        self._setup_s = time.perf_counter() - t0

    def _record_initial(self) -> None:
        if self._initial is None:
            return
        t0 = time.perf_counter()
        now = self.model.get_weights()
        self.model.set_weights(self._initial)
        try:
            frame = self._frame()
        finally:
            self.model.set_weights(now)
            self._initial = None
        if frame is not None:  # its seconds: keeping the initial weights, both swaps and drawing the frame
            self._store(0, frame, self._setup_s + time.perf_counter() - t0)

    def on_epoch_end(self, epoch, logs=None):
        self._record_initial()
        self._record(epoch + 1)

    def on_train_end(self, logs=None):
        self._record_initial()  # stopped before an epoch ended
        self._writes.close()

    @property
    def gone(self) -> bool:
        """The run folder was deleted while training: nothing more is recorded."""
        return self._writes.gone

    def _record(self, epoch: int) -> None:
        t0 = time.perf_counter()
        frame = self._frame()
        if frame is not None:
            self._store(epoch, frame, time.perf_counter() - t0)

    def _frame(self) -> dict[str, np.ndarray] | None:
        """The pinned images through the current weights (None once the run folder is gone)."""
        if self._writes.gone or self._maker is None:
            return None
        out = self._maker(self._x)
        arrays = {f"maps_{i}": m for i, m in enumerate(out["maps"])}
        arrays.update(cam=_shrink(np.rint(out["heat"] * 255.0).astype(np.uint8), CAM_SIDE), evidence=out["evidence"],
                      cam_class=out["cam_class"], probs=out["probs"])  # fmt: skip
        return arrays

    def _store(self, epoch: int, arrays: dict[str, np.ndarray], seconds_taken: float) -> None:
        seconds = round(seconds_taken, 4)
        folder = recordings.timelapse_dir(self.run_dir)

        def write() -> None:
            data = recordings.npz_bytes(arrays)
            atomic.write_bytes(folder / recordings.frame_name(epoch), data, make_parents=False)
            self.epochs.append(epoch)
            self.seconds.append(seconds)
            self.sizes.append(len(data))
            atomic.write_json(folder / recordings.INDEX_FILE, self._index(), make_parents=False)

        self._writes.submit(write)

    def _index(self) -> dict[str, Any]:
        maker = self._maker
        assert maker is not None
        layers = [{"name": n, "shape": list(s), "stored": list(st)}
                  for n, s, st in zip(maker.layer_names, maker.shapes, maker.stored, strict=True)]  # fmt: skip
        images = [{"id": p.id, "label": p.label, "class": self.class_names[p.label]
                   if 0 <= p.label < len(self.class_names) else str(p.label)} for p in self.pins]  # fmt: skip
        return {"version": recordings.INDEX_VERSION, "images": images, "class_names": self.class_names,
                "layers": layers, "cam_layer": maker.cam_layer, "output_kind": self.output_kind,
                "epochs": self.epochs, "seconds": self.seconds, "bytes": self.sizes}  # fmt: skip
