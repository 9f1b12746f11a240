"""ONNX export of a Keras model, checked with ONNX Runtime before the file is handed out.

Keras 3.15's own `model.export(path, format="onnx")` traces `model.__call__` without a training flag, like its
SavedModel export: the augmentation layers stay active, and tf2onnx then stops at their random ops (ONNX Runtime
refuses `StatelessRandomUniformV2`). So we convert, with tf2onnx directly, a `tf.function` that calls the model with
training=False: the same inference graph as our SavedModel's `serve` endpoint, with the same raw-pixel float32
input (N, H, W, C). Measured with tensorflow 2.21.0 / keras 3.15.1 / tf2onnx 1.17.0 / onnxruntime 1.32.0: every
preset converts (MobileNetV2 and Xception bases included) and agrees with Keras within 1e-4.

onnx, onnxruntime and tf2onnx are imported inside the functions: listing runs or formats never loads them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import options
from core.analysis.probabilities import to_probabilities
from core.errors import UserError, first_line

INPUT_NAME = "images"
OUTPUT_NAME = "output"
BATCH_DIM = "batch"
_CHECK_CHUNK = 32  # images per ONNX Runtime call while checking


@dataclass(frozen=True)
class OnnxCheck:
    """How far the ONNX file drifts from the Keras model it came from (probabilities, all images and classes)."""

    max_abs_diff: float
    top1_agreement: float
    n: int


def probe_images(input_shape: tuple[int, int, int], n: int = 8) -> np.ndarray:
    """Raw-pixel check inputs: black, white, mid-gray and seeded uniform noise over 0..255."""
    rng = np.random.default_rng(0)
    noise = rng.uniform(0.0, 255.0, size=(max(n - 3, 1), *input_shape))
    flat = [np.full((1, *input_shape), v) for v in (0.0, 255.0, 128.0)]
    return np.concatenate([*flat, noise]).astype(np.float32)


def _rename_io(proto) -> None:
    """Stable names a person can type: input `images`, output `output`, batch axis `batch` (tf2onnx's are
    `Identity:0` and `unk__NN`)."""
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = OUTPUT_NAME
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = OUTPUT_NAME
    proto.graph.output[0].name = OUTPUT_NAME
    for value in (proto.graph.input[0], proto.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = BATCH_DIM


def convert(model, input_shape: tuple[int, int, int], label: str) -> bytes:
    """The serialised ONNX model of `model(images, training=False)` for float32 (N, H, W, C) raw pixels."""
    import tensorflow as tf

    try:
        import tf2onnx
    except ImportError as exc:
        raise UserError(f"ONNX export needs tf2onnx=={options.TF2ONNX_VERSION} ({first_line(exc)})") from None

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    spec = (tf.TensorSpec((None, *input_shape), tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=spec)
    def serve(images):
        return model(images, training=False)

    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=options.ONNX_OPSET)
        _rename_io(proto)
        data = proto.SerializeToString()
    except Exception as exc:
        raise UserError(
            f"ONNX conversion of run {label} failed: {first_line(exc, 200)} "
            f"(tested with tf2onnx {options.TF2ONNX_VERSION}, tensorflow 2.21.0)"
        ) from None
    return bytes(data)


def _session(onnx_model: bytes | Path):
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise UserError(
            f"checking an ONNX export needs onnxruntime=={options.ONNXRUNTIME_VERSION} ({first_line(exc)})"
        ) from None
    source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only; its warnings are about graph optimisation choices
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise UserError(f"ONNX Runtime cannot open the exported model: {first_line(exc, 200)}") from None


def onnx_outputs(onnx_model: bytes | Path, images: np.ndarray) -> np.ndarray:
    """The ONNX model's raw outputs for a float32 batch, through ONNX Runtime on the CPU."""
    session = _session(onnx_model)
    name = session.get_inputs()[0].name
    x = np.asarray(images, dtype=np.float32)
    parts = [session.run(None, {name: x[i : i + _CHECK_CHUNK]})[0] for i in range(0, len(x), _CHECK_CHUNK)]
    return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


def check_onnx(onnx_model: bytes | Path, model, images: np.ndarray, output_kind: str) -> OnnxCheck:
    """Compare ONNX Runtime's probabilities with Keras' on the same raw pixels."""
    from core.analysis.prediction import batched_outputs

    x = np.asarray(images, dtype=np.float32)
    if len(x) == 0:
        return OnnxCheck(max_abs_diff=0.0, top1_agreement=1.0, n=0)
    p_onnx = to_probabilities(onnx_outputs(onnx_model, x), output_kind)
    p_keras = to_probabilities(batched_outputs(model, x), output_kind)
    if p_onnx.shape != p_keras.shape:
        raise UserError(f"the ONNX model's output shape {p_onnx.shape} differs from Keras' {p_keras.shape}")
    return OnnxCheck(
        max_abs_diff=float(np.max(np.abs(p_onnx - p_keras))),
        top1_agreement=float(np.mean(p_onnx.argmax(axis=1) == p_keras.argmax(axis=1))),
        n=len(x),
    )


def convert_checked(
    model, input_shape: tuple[int, int, int], output_kind: str, label: str, images: np.ndarray | None = None
) -> tuple[bytes, OnnxCheck]:
    """Convert, then refuse a file that does not reproduce Keras (probabilities within ONNX_MAX_ABS_DIFF) on the
    given images, or on `probe_images` when none are given."""
    data = convert(model, input_shape, label)
    x = probe_images(input_shape) if images is None else images
    check = check_onnx(data, model, x, output_kind)
    if not check.max_abs_diff <= options.ONNX_MAX_ABS_DIFF:
        raise UserError(
            f"the ONNX export of run {label} does not reproduce the Keras model "
            f"(max |p_onnx - p_keras| = {check.max_abs_diff:.2g} > {options.ONNX_MAX_ABS_DIFF:g})"
        )
    return data, check
