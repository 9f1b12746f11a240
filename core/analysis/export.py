"""Take a trained model out of the app: a .keras copy, a SavedModel, TFLite files, or a zip bundle with all of them.

Keras 3's `model.export(format="tf_saved_model")` traces `model.__call__` without a training flag, so the
augmentation layers (whose `call` defaults to training=True) stay *active* in the served graph: every request
gets a random flip/rotation/zoom, and TFLite refuses the random ops. We therefore build the SavedModel with
`keras.export.ExportArchive` and an endpoint that calls the model with training=False (the same thing TF's own
`TFLiteConverter.from_keras_model` does internally for Keras 3 models), then convert that SavedModel to TFLite.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import stat
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import atomic, options
from core.analysis import export_onnx
from core.analysis.prediction import batched_outputs
from core.analysis.probabilities import to_probabilities
from core.errors import UserError, first_line
from core.models.loading import infer_output_kind, load_model

FORMATS = options.EXPORT_FORMATS
FORMAT_LABELS = options.EXPORT_FORMAT_LABELS
_SUFFIX = {"keras": ".keras", "savedmodel": "_savedmodel", "tflite": ".tflite", "tflite-quant": "_quant.tflite",
           "onnx": ".onnx", "bundle": "_bundle.zip"}  # fmt: skip


EXPORTS_DIR = "exports"  # inside a run: where an export goes when no --out is given


def default_name(run_id: str, fmt: str) -> str:
    """File (or folder) name for an export of this run."""
    return f"{run_id}{_SUFFIX.get(fmt, '')}"


BUNDLE_FORMATS = options.BUNDLE_FORMATS
PREPROCESSING_NOTE = "float32 raw pixels 0..255; scaling is inside the model"
SERVE_ENDPOINT = "serve"
_BUNDLE_MEMBERS = {
    "keras": "model.keras",
    "savedmodel": "saved_model",
    "tflite": "model.tflite",
    "tflite-quant": "model_quant.tflite",
    "onnx": "model.onnx",
}


@dataclass(frozen=True)
class TfliteCheck:
    """How far a TFLite file drifts from the Keras model it came from, on real images."""

    max_abs_diff: float  # largest |p_tflite - p_keras| over all images and classes
    top1_agreement: float  # fraction of images whose top class is the same
    n: int


ExportCheck = TfliteCheck  # the same three figures describe an ONNX file's check


@dataclass(frozen=True)
class BundleReport:
    path: Path
    files: list[str]  # zip member names, sorted
    formats: tuple[str, ...]
    # "tflite" / "tflite-quant" / "onnx" -> check
    checks: dict[str, ExportCheck] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- loading


def _run_label(run_dir: Path, config: dict[str, Any]) -> str:
    return str(config.get("run_id") or Path(run_dir).name)


def _read_config(run_dir: Path) -> dict[str, Any]:
    config = atomic.read_json(Path(run_dir) / "config.json", {})
    return config if isinstance(config, dict) else {}


def _model_file(run_dir: Path) -> Path:
    """The run's model.keras, or a UserError a person can act on."""
    run_dir = Path(run_dir)
    path = run_dir / "model.keras"
    if not path.is_file():
        raise UserError(f"run {_run_label(run_dir, _read_config(run_dir))} has no saved model yet")
    return path


def _load_model(run_dir: Path):
    """The one safe loader (caps, safe_mode); its errors name the run's model."""
    path = _model_file(run_dir)
    return load_model(path, f"the model of run {_run_label(run_dir, _read_config(run_dir))}")


def _input_shape(model, config: dict[str, Any]) -> tuple[int, int, int]:
    """(H, W, C) from the model itself; config.json only fills in dimensions the model leaves open."""
    shape = list(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else [None, None, None]
    fallback = list(config.get("input_shape") or [None, None, None])
    dims = [d if d is not None else f for d, f in zip(shape, fallback, strict=False)]
    if len(dims) != 3 or any(d is None for d in dims):
        raise UserError("the model's input size is unknown; its config.json needs input_shape [H, W, C]")
    return int(dims[0]), int(dims[1]), int(dims[2])


def _output_kind(model, config: dict[str, Any]) -> str:
    kind = config.get("output_kind")
    return kind if kind in ("sigmoid", "softmax", "logits") else infer_output_kind(model)


def _one_line(exc: BaseException, limit: int = 240) -> str:
    """The first meaningful line of an exception; the converter's missing-ops report is pages of MLIR."""
    text = str(exc)
    if "TF Select ops:" in text:
        ops = first_line(text.split("TF Select ops:", 1)[1], limit)
        return f"the model uses operations TFLite does not support ({ops})"
    return first_line(exc, limit)


@contextlib.contextmanager
def _quiet_tf() -> Iterator[None]:
    """Silence Python-level chatter (deprecation notes, absl INFO) that would otherwise reach the CLI."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"tensorflow\..*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield


# ------------------------------------------------------------------------------------------- where it goes
# An export only ever creates: it never removes, replaces or follows anything already at its target (a folder
# full of datasets, a symlink, /dev/null). Work happens in a temp file or staging folder beside the target,
# which is claimed with an exclusive create at the end and cleaned up on any failure.


def _existing(path: Path) -> os.stat_result | None:
    """lstat, so a symlink (even a dangling one) counts as something that is there."""
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise UserError(f"cannot check {path}: {exc.strerror or exc}") from None


def refuse_existing(path: Path) -> None:
    st = _existing(path)
    if st is None:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UserError(
            f"{path} is a symbolic link; choose a new name (export never follows or replaces links)"
        )
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        raise UserError(f"{path} already exists; choose a new name")
    raise UserError(f"{path} is not a regular file; choose a new name")


def default_target(run_dir: Path, fmt: str) -> Path:
    """A fresh name in the run's exports/ folder: earlier exports are the app's own, but still never overwritten."""
    run_dir = Path(run_dir)
    folder = run_dir / EXPORTS_DIR
    st = _existing(folder)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise UserError(f"{folder} is not a folder; move it away to export into the run")
    suffix = _SUFFIX.get(fmt, "")
    for k in itertools.count(1):
        path = folder / (f"{run_dir.name}{suffix}" if k == 1 else f"{run_dir.name}-{k}{suffix}")
        if _existing(path) is None:
            return path
    raise AssertionError("unreachable")


def resolve_target(run_dir: Path, fmt: str, out: Path | None = None) -> Path:
    """Where an export of this run goes, checked before anything is written.

    No `out`: the run's exports/ folder. An existing folder (not a link to one): a new file or sub-folder named
    `default_name` inside it. Anything else must be a new name in an existing folder.
    """
    if out is None:
        return default_target(run_dir, fmt)
    out = Path(out)
    st = _existing(out)
    if st is not None and stat.S_ISDIR(st.st_mode):
        out = out / default_name(Path(run_dir).name, fmt)
    refuse_existing(out)
    if not out.parent.is_dir():
        raise UserError(f"folder {out.parent} does not exist")
    return out


def _place_file(tmp: Path, path: Path) -> None:
    """Give the finished temp file its name only if that name is still free (no replace, no link followed)."""
    try:
        os.link(tmp, path)  # atomic and exclusive: fails on anything already there, dangling links included
        return
    except FileExistsError:
        refuse_existing(path)
        raise UserError(f"{path} already exists; choose a new name") from None
    except OSError:
        pass  # a filesystem without hard links: claim the name exclusively, then fill it
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, atomic.FILE_MODE)
    except FileExistsError:
        refuse_existing(path)
        raise UserError(f"{path} already exists; choose a new name") from None
    os.close(fd)
    os.replace(tmp, path)  # replaces only the empty file claimed just above


@contextlib.contextmanager
def new_file(path: Path) -> Iterator[Path]:
    """A temp file beside `path` that becomes `path` with normal permissions, or vanishes on any failure."""
    path = Path(path)
    refuse_existing(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}{atomic.TEMP_MARK}", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, atomic.FILE_MODE)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        _place_file(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def new_dir(path: Path) -> Iterator[Path]:
    """A staging folder to build in; its contents move into `path`, made fresh, or it all vanishes on failure."""
    path = Path(path)
    refuse_existing(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}{atomic.TEMP_MARK}", dir=path.parent))
    try:
        built = staging / "out"
        yield built
        atomic.normal_permissions(built)
        try:
            os.mkdir(path)  # claims the name: fails on anything already there, an empty folder included
        except FileExistsError:
            refuse_existing(path)
            raise UserError(f"{path} already exists; choose a new name") from None
        try:
            for child in built.iterdir():
                os.rename(child, path / child.name)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)  # made just above, so ours to remove
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- keras


def export_keras(run_dir: Path, out: Path) -> Path:
    """Byte-for-byte copy of the run's model.keras; it already is the portable Keras format."""
    src = _model_file(run_dir)
    out = Path(out)
    with new_file(out) as tmp:
        shutil.copyfile(src, tmp)
    return out


# ----------------------------------------------------------------------------------------------- savedmodel


def _write_savedmodel(model, directory: Path, input_shape: tuple[int, int, int]) -> None:
    """SavedModel whose `serve` (and `serving_default`) runs the model in inference mode on raw pixels."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        return model(images, training=False)

    spec = tf.TensorSpec((None, *input_shape), tf.float32, name="images")
    archive.add_endpoint(SERVE_ENDPOINT, serve, input_signature=[spec])
    archive.write_out(str(directory), verbose=False)


def _probe_batch(input_shape: tuple[int, int, int], n: int = 2) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(0.0, 255.0, size=(n, *input_shape)).astype(np.float32)


def _verify_savedmodel(directory: Path, model, input_shape: tuple[int, int, int]) -> None:
    """Reload the artifact and check it agrees with Keras, so we never hand out a SavedModel that augments."""
    import tensorflow as tf

    x = _probe_batch(input_shape)
    loaded = tf.saved_model.load(str(directory))
    served = np.asarray(getattr(loaded, SERVE_ENDPOINT)(tf.constant(x)))
    expected = np.asarray(model(x, training=False))
    if served.shape != expected.shape or not np.allclose(served, expected, rtol=1e-4, atol=1e-4):
        raise UserError("the exported SavedModel does not reproduce the Keras model's predictions")


def _build_savedmodel(model, directory: Path, input_shape: tuple[int, int, int], label: str) -> None:
    try:
        with _quiet_tf():
            _write_savedmodel(model, directory, input_shape)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"SavedModel export of run {label} failed: {_one_line(exc)}") from None
    _verify_savedmodel(directory, model, input_shape)


def export_savedmodel(run_dir: Path, out_dir: Path) -> Path:
    """TF SavedModel with a `serve` endpoint taking the raw-pixel float32 batch (N, H, W, C)."""
    model = _load_model(run_dir)
    config = _read_config(run_dir)
    shape = _input_shape(model, config)
    out_dir = Path(out_dir)
    with new_dir(out_dir) as built:
        _build_savedmodel(model, built, shape, _run_label(run_dir, config))
    return out_dir


# --------------------------------------------------------------------------------------------------- tflite


def _convert_savedmodel(saved_model_dir: Path, quantize: bool, label: str) -> bytes:
    import tensorflow as tf

    try:
        with _quiet_tf():
            converter = tf.lite.TFLiteConverter.from_saved_model(
                str(saved_model_dir), signature_keys=["serving_default"]
            )
            if quantize:
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            return bytes(converter.convert())
    except Exception as exc:
        kind = "quantised TFLite" if quantize else "TFLite"
        raise UserError(f"{kind} conversion of run {label} failed: {_one_line(exc)}") from None


def export_tflite(run_dir: Path, out: Path, quantize: bool = False) -> Path:
    """TFLite flatbuffer, float32 or dynamic-range quantised (int8 weights, float32 input and output)."""
    model = _load_model(run_dir)
    config = _read_config(run_dir)
    label = _run_label(run_dir, config)
    with tempfile.TemporaryDirectory(prefix="convnet-tflite-") as tmp:
        saved = Path(tmp) / "saved_model"
        _build_savedmodel(model, saved, _input_shape(model, config), label)
        data = _convert_savedmodel(saved, quantize, label)
    out = Path(out)
    with new_file(out) as tmp:
        tmp.write_bytes(data)
    return out


def _interpreter_class():
    """LiteRT's interpreter when installed; TF 2.21 still ships tf.lite.Interpreter (deprecated, but works)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter


def _as_batch(images: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3 and input_shape[2] == 1:
        x = x[..., None]
    if x.ndim == 3 and tuple(x.shape) == input_shape:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != input_shape:
        raise UserError(
            f"check images have shape {tuple(np.shape(images))}; the model expects (N, {input_shape})"
        )
    return x


def check_tflite(tflite_path: Path, model, images: np.ndarray, output_kind: str | None = None) -> TfliteCheck:
    """Run the TFLite file one image at a time and compare its probabilities with Keras' on the same pixels.

    `model` is a Keras model or a path to a .keras file; `output_kind` defaults to a guess from the model's head.
    """
    if isinstance(model, str | os.PathLike):
        model = load_model(Path(model))
    kind = output_kind or infer_output_kind(model)
    shape = _input_shape(model, {})
    x = _as_batch(images, shape)
    if len(x) == 0:
        return TfliteCheck(max_abs_diff=0.0, top1_agreement=1.0, n=0)

    with _quiet_tf():
        try:
            interpreter = _interpreter_class()(model_path=str(tflite_path))
        except Exception as exc:
            raise UserError(f"could not open {Path(tflite_path).name}: {_one_line(exc)}") from None
    inp = interpreter.get_input_details()[0]
    if tuple(inp["shape"]) != (1, *shape):
        interpreter.resize_tensor_input(inp["index"], [1, *shape])
    interpreter.allocate_tensors()
    out_index = interpreter.get_output_details()[0]["index"]
    lite = []
    for image in x:
        interpreter.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
        interpreter.invoke()
        lite.append(np.array(interpreter.get_tensor(out_index)).reshape(-1))
    p_lite = to_probabilities(np.stack(lite), kind)
    p_keras = to_probabilities(batched_outputs(model, x), kind)
    return TfliteCheck(
        max_abs_diff=float(np.max(np.abs(p_lite - p_keras))),
        top1_agreement=float(np.mean(p_lite.argmax(axis=1) == p_keras.argmax(axis=1))),
        n=len(x),
    )


# ----------------------------------------------------------------------------------------------------- onnx


def _onnx_check(check: export_onnx.OnnxCheck) -> ExportCheck:
    return ExportCheck(max_abs_diff=check.max_abs_diff, top1_agreement=check.top1_agreement, n=check.n)


def export_onnx_file(
    run_dir: Path, out: Path, check_images: np.ndarray | None = None
) -> tuple[Path, ExportCheck]:
    """ONNX file taking the raw-pixel float32 batch (N, H, W, C) as `images`; written only after ONNX Runtime
    reproduced Keras on `check_images` (or on probe images), and that check is returned with it."""
    model = _load_model(run_dir)
    config = _read_config(run_dir)
    shape = _input_shape(model, config)
    images = None if check_images is None else _as_batch(check_images, shape)
    with _quiet_tf():
        data, check = export_onnx.convert_checked(
            model, shape, _output_kind(model, config), _run_label(run_dir, config), images
        )
    out = Path(out)
    with new_file(out) as tmp:
        tmp.write_bytes(data)
    return out, _onnx_check(check)


# --------------------------------------------------------------------------------------------------- bundle


def _bundle_config(model, config: dict[str, Any], formats: tuple[str, ...]) -> dict[str, Any]:
    h, w, c = _input_shape(model, config)
    kind = _output_kind(model, config)
    units = int(model.outputs[0].shape[-1])
    class_names = list(config.get("class_names") or [])
    if not class_names:
        class_names = [f"class_{i}" for i in range(2 if kind == "sigmoid" else units)]
    return {
        "run_id": config.get("run_id"),
        "dataset": config.get("dataset"),
        "preset": config.get("preset"),
        "class_names": class_names,
        "input_shape": [h, w, c],
        "input_size": [h, w],
        "channels": c,
        "color_mode": "grayscale" if c == 1 else "rgb",
        "input_dtype": "float32",
        "preprocessing": PREPROCESSING_NOTE,
        "output_kind": kind,
        "files": {fmt: _BUNDLE_MEMBERS[fmt] for fmt in formats},
    }


_OUTPUT_TO_PROBS = {
    "sigmoid": (
        "The output is one number per image: P(class_names[1]).",
        "    p = float(np.asarray(out).reshape(-1)[0])\n    return np.array([1.0 - p, p])",
    ),
    "softmax": (
        "The output is a row of class probabilities (softmax).",
        "    return np.asarray(out).reshape(-1)",
    ),
    "logits": (
        "The output is a row of logits; apply a softmax to get probabilities.",
        "    z = np.asarray(out, dtype=np.float64).reshape(-1)\n"
        "    e = np.exp(z - z.max())\n    return e / e.sum()",
    ),
}


def _calibration_facts(run_dir: Path) -> dict[str, Any]:
    """The run's temperature and reject threshold (1.0 and None when it is not calibrated) for config.json."""
    from core.analysis import calibration

    data = calibration.load(run_dir) or {}
    thr = data.get("threshold")
    return {
        "temperature": float(data.get("temperature", 1.0)),
        "reject_threshold": thr["threshold"] if isinstance(thr, dict) else None,
        "calibration": {k: data[k] for k in ("ece_before", "ece_after", "target_accuracy") if k in data}
        or None,
    }


def _calibration_line(cfg: dict[str, Any]) -> str:
    t = cfg.get("temperature", 1.0)
    if t == 1.0 or not cfg.get("calibration"):
        return ("- Calibration: none (temperature 1.0). Run `python -m core calibrate --run ID` before exporting to "
                "get calibrated probabilities.")  # fmt: skip
    c = cfg["calibration"]
    line = (f"- Calibration: temperature T = {t:.4f}, fitted on the validation split (ECE {c['ece_before']:.3f} -> "
            f"{c['ece_after']:.3f}). The model files output *uncalibrated* probabilities; `calibrated()` below applies "
            "T (softmax(logits / T) = p ** (1 / T), renormalised; for a sigmoid head the same as sigmoid(logit / T)).")  # fmt: skip
    if cfg.get("reject_threshold") is not None:
        line += (f" Reject threshold {cfg['reject_threshold']:.4f} on the calibrated top probability gives accuracy >= "
                 f"{c.get('target_accuracy', 0):.0%} on the validation images it accepts.")  # fmt: skip
    return line


def _readme(cfg: dict[str, Any], formats: tuple[str, ...], has_checks: bool) -> str:
    h, w, c = cfg["input_shape"]
    kind = cfg["output_kind"]
    explain, body = _OUTPUT_TO_PROBS[kind]
    mode = "L" if c == 1 else "RGB"
    add_channel = "\n    x = x[..., None]  # (H, W) -> (H, W, 1)" if c == 1 else ""
    parts = [
        f"# {cfg.get('run_id') or 'ConvNet Studio model'}\n",
        "Exported from ConvNet Studio.\n",
        f"- Input: float32 batch (N, {h}, {w}, {c}), {cfg['color_mode']}, **raw pixels 0..255** — "
        "scaling is inside the model, so do not divide by 255 yourself.",
        f"- Output kind: `{kind}`. {explain}",
        f"- Classes (in order): {', '.join(cfg['class_names'])}",
        _calibration_line(cfg),
        "- `config.json` holds the same facts in machine-readable form.",
    ]
    if has_checks:
        parts.append(
            "- `checks.json`: how closely the TFLite and ONNX files match the Keras model on sample images "
            "(`max_abs_diff`: the largest probability difference; `top1_agreement`: same top class)."
        )
    parts += [
        "\n## Shared helpers\n",
        "```python\nimport json\n\nimport numpy as np\nfrom PIL import Image\n",
        'config = json.load(open("config.json"))\n'
        'class_names = config["class_names"]\n'
        'H, W, C = config["input_shape"]\n\n',
        "def load_image(path):",
        f'    img = Image.open(path).convert("{mode}").resize((W, H))',
        f"    x = np.asarray(img, dtype=np.float32){add_channel}",
        "    return x[None]  # (1, H, W, C)\n\n",
        "def to_probs(out):",
        body,
        '\n\ndef calibrated(probs, t=config.get("temperature", 1.0)):',
        "    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0) ** (1.0 / t)",
        "    return p / p.sum()",
        "\n\ndef report(out):",
        "    probs = calibrated(to_probs(out))",
        "    best = int(np.argmax(probs))",
        "    print(class_names[best], float(probs[best]))\n```",
    ]
    if "keras" in formats:
        parts += [
            "\n## Keras (`model.keras`)\n",
            "```python\nimport keras\n",
            'model = keras.models.load_model("model.keras")',
            'report(model(load_image("image.png"), training=False).numpy())\n```',
        ]
    if "savedmodel" in formats:
        parts += [
            "\n## TensorFlow SavedModel (`saved_model/`)\n",
            "```python\nimport tensorflow as tf\n",
            'model = tf.saved_model.load("saved_model")',
            'report(model.serve(tf.constant(load_image("image.png"))).numpy())\n```',
            "\nThe `serving_default` signature takes the same batch as its `images` input (TF Serving).",
        ]
    tflites = [_BUNDLE_MEMBERS[f] for f in ("tflite", "tflite-quant") if f in formats]
    if tflites:
        names = " / ".join(f"`{n}`" for n in tflites)
        parts += [
            f"\n## TFLite ({names})\n",
            "`model_quant.tflite` has int8 weights (dynamic-range quantisation) but the same float32 input.\n"
            if "tflite-quant" in formats
            else "",
            "```python\ntry:\n    from ai_edge_litert.interpreter import Interpreter\n"
            "except ImportError:  # TensorFlow's copy, deprecated in favour of ai_edge_litert\n"
            "    import tensorflow as tf\n\n    Interpreter = tf.lite.Interpreter\n",
            f'interpreter = Interpreter(model_path="{tflites[0]}")',
            "interpreter.allocate_tensors()",
            'inp = interpreter.get_input_details()[0]["index"]',
            'out = interpreter.get_output_details()[0]["index"]',
            'interpreter.set_tensor(inp, load_image("image.png"))',
            "interpreter.invoke()",
            "report(interpreter.get_tensor(out))\n```",
        ]
    if "onnx" in formats:
        parts += [
            "\n## ONNX (`model.onnx`)\n",
            f"Input `{export_onnx.INPUT_NAME}` (the same float32 raw-pixel batch), output "
            f"`{export_onnx.OUTPUT_NAME}`; opset {options.ONNX_OPSET}, checked with ONNX Runtime before export.\n",
            "```python\nimport onnxruntime as ort\n",
            'session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])',
            f'out = session.run(None, {{"{export_onnx.INPUT_NAME}": load_image("image.png")}})[0]',
            "report(out)\n```",
        ]
    return "\n".join(parts) + "\n"


def _zip_tree(root: Path, zip_path: Path) -> list[str]:
    names = []
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_dir():
                zf.write(path, rel + "/")
                names.append(rel + "/")
            elif path.is_file():
                zf.write(path, rel)
                names.append(rel)
    return sorted(names)


def export_bundle(
    run_dir: Path,
    out_zip: Path,
    formats: Iterable[str] = BUNDLE_FORMATS,
    check_images: np.ndarray | None = None,
) -> BundleReport:
    """One zip a person can hand to someone else: the asked-for formats, config.json, README.md, checks.json."""
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in BUNDLE_FORMATS]
    if unknown or not formats:
        raise UserError(
            f"unknown bundle format {', '.join(unknown) or '(none)'}; choose from {', '.join(BUNDLE_FORMATS)}"
        )
    run_dir = Path(run_dir)
    out_zip = Path(out_zip)
    model = _load_model(run_dir)
    config = _read_config(run_dir)
    label = _run_label(run_dir, config)
    shape = _input_shape(model, config)
    cfg = _bundle_config(model, config, formats) | _calibration_facts(run_dir)
    checks: dict[str, ExportCheck] = {}

    refuse_existing(out_zip)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_zip.name}{atomic.TEMP_MARK}", dir=out_zip.parent) as tmp:
        root = Path(tmp) / "bundle"
        root.mkdir()
        if "keras" in formats:
            shutil.copyfile(_model_file(run_dir), root / "model.keras")
        needs_tflite = any(f.startswith("tflite") for f in formats)
        if "savedmodel" in formats or needs_tflite:
            saved = root / "saved_model" if "savedmodel" in formats else Path(tmp) / "saved_model"
            _build_savedmodel(model, saved, shape, label)
            for fmt in ("tflite", "tflite-quant"):
                if fmt not in formats:
                    continue
                target = root / _BUNDLE_MEMBERS[fmt]
                target.write_bytes(_convert_savedmodel(saved, fmt == "tflite-quant", label))
                if check_images is not None:
                    checks[fmt] = check_tflite(target, model, check_images, output_kind=cfg["output_kind"])
        if "onnx" in formats:
            with _quiet_tf():
                data, onnx_check = export_onnx.convert_checked(
                    model,
                    shape,
                    cfg["output_kind"],
                    label,
                    None if check_images is None else _as_batch(check_images, shape),
                )
            (root / _BUNDLE_MEMBERS["onnx"]).write_bytes(data)
            checks["onnx"] = _onnx_check(onnx_check)
        (root / "config.json").write_text(_json(cfg))
        (root / "README.md").write_text(_readme(cfg, formats, bool(checks)))
        if checks:
            (root / "checks.json").write_text(_json({k: asdict(v) for k, v in checks.items()}))
        with new_file(out_zip) as tmp_zip:
            files = _zip_tree(root, tmp_zip)
    return BundleReport(path=out_zip, files=files, formats=formats, checks=checks)


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


# ------------------------------------------------------------------------------------------------ dispatcher


CHECK_SAMPLE = 16  # of the run's own validation images, beside the probe images, for the checks of an export


def check_images(run_dir: Path, n: int = CHECK_SAMPLE) -> np.ndarray | None:
    """What an export is checked on: black, white, gray and noise, plus up to `n` of the run's own validation
    images decoded as training decoded them (left out when the dataset is not on this machine). None when the
    config names no input shape: the checks then use probe images at the model's own input size."""
    config = _read_config(run_dir)
    shape = tuple(config.get("input_shape") or ())
    if len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape):
        return None
    h, w, c = shape
    probe = export_onnx.probe_images((h, w, c))
    try:
        from core.data import datasets

        val = datasets.load_splits(
            str(config.get("dataset") or ""), (h, w), c, splits=("val",), limit=n,
            val_split=float(config.get("val_split", options.DEFAULT_VAL_SPLIT)),
            seed=int(config.get("seed", options.DEFAULT_SEED)),
        )["val"]  # fmt: skip
    except (UserError, OSError, ValueError, TypeError, KeyError):
        return probe
    if not len(val):
        return probe
    return np.concatenate([probe, val.x.astype(np.float32).reshape(len(val), h, w, c)])


def check_line(fmt: str, check: ExportCheck) -> str:
    """One readable line for a check, the same on the CLI and the page."""
    return (
        f"{fmt}: max |p - p_keras| = {check.max_abs_diff:.2g}, same top class {check.top1_agreement:.0%} "
        f"on {check.n} check images"
    )


def export(
    run_dir: Path,
    fmt: str,
    out: Path | None = None,
    on_check: Callable[[str, ExportCheck], None] | None = None,
) -> Path:
    """One format, one new file or folder (see `resolve_target`); returns where it went.

    `on_check(format, check)` hears how closely each checked artifact (ONNX, and the TFLite and ONNX files
    inside a bundle) reproduces Keras on `check_images`, so the CLI and the page can report the figure. Everything a person can get wrong (format, a run without a model, the target) is refused before anything is
    created; nothing that exists is ever removed or replaced.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    _model_file(run_dir)
    target = resolve_target(run_dir, fmt, out)
    try:
        if fmt == "keras":
            return export_keras(run_dir, target)
        if fmt == "savedmodel":
            return export_savedmodel(run_dir, target)
        if fmt in ("tflite", "tflite-quant"):
            return export_tflite(run_dir, target, quantize=fmt == "tflite-quant")
        if fmt == "onnx":
            path, check = export_onnx_file(run_dir, target, check_images=check_images(run_dir))
            if on_check is not None:
                on_check(fmt, check)
            return path
        report = export_bundle(run_dir, target, check_images=check_images(run_dir))
        for name, bundle_check in report.checks.items():
            if on_check is not None:
                on_check(name, bundle_check)
        return report.path
    except OSError as exc:  # disk full, no permission: the person can fix it, so one line
        raise UserError(f"could not write {target}: {exc.strerror or exc}") from None
