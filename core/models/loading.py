"""Loading models safely: our runs' models and `.keras` files people bring from elsewhere.

Our `.keras` files carry an extra member, `convnet_studio.json` (class names, input shape, head), so a model
downloaded from this app and uploaded again, or used in a notebook, knows what its outputs mean.
"""

from __future__ import annotations

import json
import math
import tempfile
import weakref
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import atomic
from core.errors import UserError, first_line
from core.validation import human_bytes as human
from core.validation import regular_file

META_MEMBER = "convnet_studio.json"
META_KEYS = ("class_names", "input_shape", "output_kind", "preset", "dataset", "run_id", "label_mode")


def save_model(model, path: Path, meta: dict[str, Any] | None = None, make_parents: bool = True) -> None:
    """model.save needs a .keras name, so the temp file keeps that suffix; the rename makes it atomic.

    `make_parents=False` (training jobs) refuses to recreate a run folder deleted under the job. The file holds
    the model without its optimizer's state (see _without_optimizer).
    """
    with atomic.atomic_path(path, suffix=".keras", make_parents=make_parents) as tmp:
        _without_optimizer(model).save(tmp)
        if meta:
            with zipfile.ZipFile(tmp, "a") as zf:
                zf.writestr(META_MEMBER, json.dumps({k: meta[k] for k in META_KEYS if k in meta}))


_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # trained model -> its uncompiled twin


def _without_optimizer(model):
    """An uncompiled twin of a trained model holding its weights, made once per model from the model's own config
    (so the file's config is the same). A trained model's .keras also carries its optimizer's state, which
    nothing here reads (every load is compile=False): Adam keeps two arrays per weight, so the file was 3x the
    weights (78.7 vs 26.2 MB for `fast` at 160x160) and the save each epoch cost ~7% of the epoch. A model
    whose twin cannot be made, or does not match, is saved as it is."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not getattr(optimizer, "variables", None):
        return model
    twin = _TWINS.get(model)
    if twin is None:
        try:
            twin = type(model).from_config(model.get_config())
        except Exception:  # a model Keras cannot rebuild from its config: keep the optimizer in the file
            return model
        if [w.shape for w in twin.weights] != [w.shape for w in model.weights]:
            return model
        _TWINS[model] = twin
    twin.set_weights(model.get_weights())
    return twin


def read_meta(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as zf:
            if META_MEMBER in zf.namelist():
                return json.loads(_read_member(zf, zf.getinfo(META_MEMBER), MAX_META_BYTES, "meta"))
    except (OSError, zipfile.BadZipFile, ValueError, KeyError, UserError, RecursionError):
        pass
    return {}


# ---------------------------------------------------------------- caps on a user's .keras file, checked before Keras
# builds anything: a 1.6 KB file declaring a 784x300,000 Dense layer, or a 1 GiB config.json compressed into 1 MB,
# would otherwise cost gigabytes of memory even with safe_mode.

MAX_MODEL_FILE_BYTES = 2 << 30
MAX_MEMBERS = 256
MAX_CONFIG_BYTES = 8 << 20
MAX_META_BYTES = 1 << 20
MAX_WEIGHTS_MEMBER_BYTES = (1 << 30) + (16 << 20)
MAX_OTHER_MEMBER_BYTES = 64 << 20
MAX_PARAMS = 50_000_000  # our largest preset (Jedi/Sith ternary at 400x400) has 20.6 M
MAX_WEIGHT_BYTES = (
    1 << 30
)  # all arrays in model.weights.h5, optimizer slots included (Adam keeps 2 per weight)
MAX_INPUT_SIDE = 4096  # every picture is resized to the input: 4096x4096x3 float32 is 200 MB
MAX_INT_IN_UNKNOWN = 1 << 16  # units/filters/... in a config the walker cannot follow to the end
_WEIGHTS_MEMBER = "model.weights.h5"
_SIZE_KEYS = frozenset(
    {"units", "filters", "kernel_size", "pool_size", "input_dim", "output_dim", "num_heads", "key_dim",
     "value_dim", "depth_multiplier", "num_tokens", "max_tokens", "output_sequence_length", "height", "width",
     "target_shape", "batch_shape", "input_shape", "size", "dims", "num_bins"}
)  # fmt: skip


class _Oversize(Exception):
    pass


def _member_cap(name: str) -> int:
    if name == "config.json":
        return MAX_CONFIG_BYTES
    if name.endswith(".h5"):
        return MAX_WEIGHTS_MEMBER_BYTES
    if name in (META_MEMBER, "metadata.json"):
        return MAX_META_BYTES
    return MAX_OTHER_MEMBER_BYTES


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, out=None) -> int:
    """Decompress a member in chunks, counting real bytes (headers can lie); stop one byte past the cap."""
    total = 0
    with zf.open(info) as fh:
        while chunk := fh.read(1 << 20):
            total += len(chunk)
            if total > cap:
                raise _Oversize
            if out is not None:
                out.write(chunk)
    return total


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, name: str) -> bytes:
    if info.file_size > cap:
        raise UserError(f"{name}: {info.filename} declares {info.file_size:,} bytes (limit {cap:,})")
    with zf.open(info) as fh:
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise UserError(f"{name}: {info.filename} expands past {cap:,} bytes; refused")
    return data


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float) and not v.is_integer():
        return None
    return int(v)


def _ints(v: Any, n: int) -> tuple[int, ...] | None:
    """An int or a list of ints as an n-tuple (how Keras stores kernel sizes and strides)."""
    if isinstance(v, (list, tuple)):
        vals = tuple(_as_int(x) for x in v)
        if len(vals) != n or any(x is None for x in vals):
            return None
        return vals  # type: ignore[return-value]
    x = _as_int(v)
    return None if x is None else (x,) * n


def _shape(v: Any, drop_batch: bool = True) -> tuple[int | None, ...] | None:
    if not isinstance(v, (list, tuple)):
        return None
    dims = list(v[1:] if drop_batch else v)
    out: list[int | None] = []
    for d in dims:
        if d is None:
            out.append(None)
        else:
            x = _as_int(d)
            if x is None or x < 0:
                return None
            out.append(x)
    return tuple(out)


def _prod(dims) -> int | None:
    total = 1
    for d in dims:
        if d is None:
            return None
        total *= d
    return total


def _conv_out(size: int | None, k: int, s: int, d: int, padding: str) -> int | None:
    if size is None:
        return None
    if padding == "same":
        return -(-size // max(s, 1))
    return (size - d * (k - 1) - 1) // max(s, 1) + 1


Shape = tuple  # a layer's output without the batch axis; None where unknown


class ConfigWalk:
    """Declared parameters of a Keras model config, computed from the layer definitions alone (nothing is built).

    Every layer also counts at its own `build_config` input shape, because Keras builds each layer from it when
    loading: a file can declare a Dense layer built for 784 inputs whatever its graph says.
    """

    def __init__(self) -> None:
        self.params = 0
        self.unknown: set[str] = set()

    # -- models
    def model(self, cfg: dict) -> list[Shape | None]:
        inner: dict = cfg["config"] if isinstance(cfg.get("config"), dict) else {}
        layers = inner.get("layers")
        if not isinstance(layers, (list, tuple)):
            self.unknown.add(str(cfg.get("class_name")))
            return [None]
        layers = list(layers)
        if cfg.get("class_name") == "Sequential":
            return [self._sequential(inner, layers)]
        return self._functional(inner, layers)

    def _sequential(self, inner: dict, layers: list) -> Shape | None:
        shape = _shape(inner.get("build_input_shape"))
        for layer in layers:
            if not isinstance(layer, dict):
                continue
            if layer.get("class_name") == "InputLayer":
                shape = self._input_shape(layer)
                continue
            if shape is None:
                shape = _shape((layer.get("build_config") or {}).get("input_shape"))
            shape = self.layer(layer, [shape])
        return shape

    def _functional(self, inner: dict, layers: list) -> list[Shape | None]:
        outputs: dict[str, list[Shape | None]] = {}
        for layer in layers:
            if not isinstance(layer, dict):
                continue
            name = str(layer.get("name") or (layer.get("config") or {}).get("name"))
            if layer.get("class_name") == "InputLayer":
                outputs[name] = [self._input_shape(layer)]
                continue
            nodes = layer.get("inbound_nodes") or [None]
            outs: list[Shape | None] = []
            counted = False
            for node in nodes:
                refs = list(_history_refs(node))
                ins = [self._lookup(outputs, r) for r in refs] or [None]
                before = self.params
                outs.append(self.layer(layer, ins))
                if counted:  # a shared layer owns its weights once
                    self.params = before
                counted = True
            outputs[name] = outs
        result = []
        for ref in _output_refs(inner.get("output_layers")):
            result.append(self._lookup(outputs, ref))
        return result or [None]

    @staticmethod
    def _lookup(outputs: dict, ref: tuple[str, int, int]) -> Shape | None:
        name, node, index = ref
        outs = outputs.get(name)
        if not outs or node >= len(outs) or index != 0:
            return None
        return outs[node]

    @staticmethod
    def _input_shape(layer: dict) -> Shape | None:
        c = layer.get("config") or {}
        return _shape(c.get("batch_shape") or c.get("batch_input_shape"))

    # -- layers
    def layer(self, layer: dict, ins: list[Shape | None]) -> Shape | None:
        cls = str(layer.get("class_name"))
        if cls in ("Functional", "Sequential", "Model"):
            return self.model(layer)[0]
        cfg: dict = layer["config"] if isinstance(layer.get("config"), dict) else {}
        declared = _shape((layer.get("build_config") or {}).get("input_shape"))
        shape = ins[0] if ins else None
        out, params = self._rule(cls, cfg, shape, ins)
        if declared is not None and declared != shape:
            _, p2 = self._rule(cls, cfg, declared, [declared] * max(1, len(ins)))
            params = max(params, p2)
        self.params += params
        return out

    def _rule(
        self, cls: str, cfg: dict, shape: Shape | None, ins: list[Shape | None]
    ) -> tuple[Shape | None, int]:
        last = shape[-1] if shape else None
        bias = 1 if cfg.get("use_bias", True) else 0
        if cls == "Dense":
            units = _as_int(cfg.get("units")) or 0
            out = (*shape[:-1], units) if shape else None
            return out, (last or 0) * units + bias * units
        if cls in ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D", "DepthwiseConv1D",
                   "SeparableConv1D", "Conv2DTranspose", "Conv1DTranspose", "Conv3DTranspose"):  # fmt: skip
            rank = 1 if "1D" in cls else 3 if "3D" in cls else 2
            if cfg.get("data_format", "channels_last") != "channels_last":
                self.unknown.add(f"{cls} (channels_first)")
                return None, 0
            k = _ints(cfg.get("kernel_size"), rank)
            s = _ints(cfg.get("strides", 1), rank) or (1,) * rank
            d = _ints(cfg.get("dilation_rate", 1), rank) or (1,) * rank
            if k is None:
                self.unknown.add(cls)
                return None, 0
            c = last or 0
            kk = _prod(k) or 0
            dm = _as_int(cfg.get("depth_multiplier")) or 1
            filters = _as_int(cfg.get("filters")) or 0
            if cls.startswith("Depthwise"):
                params, ch = kk * c * dm + bias * c * dm, c * dm
            elif cls.startswith("Separable"):
                params, ch = kk * c * dm + c * dm * filters + bias * filters, filters
            else:
                groups = _as_int(cfg.get("groups")) or 1
                params, ch = kk * (c // max(groups, 1)) * filters + bias * filters, filters
            if shape is None or len(shape) != rank + 1:
                return None, params
            pad = str(cfg.get("padding", "valid")).lower()
            if cls.endswith("Transpose"):
                spatial = tuple(
                    None if n is None else (n * si if pad == "same" else (n - 1) * si + ki)
                    for n, ki, si in zip(shape[:-1], k, s, strict=True)
                )
            else:
                spatial = tuple(
                    _conv_out(n, ki, si, di, pad) for n, ki, si, di in zip(shape[:-1], k, s, d, strict=True)
                )
            if any(n is not None and n <= 0 for n in spatial):
                return None, params
            return (*spatial, ch), params
        if cls in ("MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
                   "AveragePooling3D", "MaxPool2D", "AvgPool2D"):  # fmt: skip
            rank = 1 if "1D" in cls else 3 if "3D" in cls else 2
            pool = _ints(cfg.get("pool_size", 2), rank)
            step = _ints(cfg.get("strides"), rank) if cfg.get("strides") is not None else pool
            if pool is None or step is None or shape is None or len(shape) != rank + 1:
                return None, 0
            pad = str(cfg.get("padding", "valid")).lower()
            spatial = tuple(
                _conv_out(n, pi, si, 1, pad) for n, pi, si in zip(shape[:-1], pool, step, strict=True)
            )
            if any(n is not None and n <= 0 for n in spatial):
                return None, 0
            return (*spatial, last), 0
        if cls.startswith("Global") and "Pooling" in cls:
            if shape is None:
                return None, 0
            return ((1,) * (len(shape) - 1) + (last,) if cfg.get("keepdims") else (last,)), 0
        if cls == "Flatten":
            return ((_prod(shape),) if shape else None), 0
        if cls == "Reshape":
            return _shape(cfg.get("target_shape"), drop_batch=False), 0
        if cls in ("BatchNormalization", "LayerNormalization", "GroupNormalization"):
            per = (
                (2 if cls == "BatchNormalization" else 0)
                + bool(cfg.get("center", True))
                + bool(cfg.get("scale", True))
            )
            return shape, per * (last or 0)
        if cls == "Normalization":
            return shape, 2 * (last or 0) + 1
        if cls == "PReLU":
            return shape, (_prod(shape) or 0) if shape else 0
        if cls == "Embedding":
            n_in, n_out = _as_int(cfg.get("input_dim")) or 0, _as_int(cfg.get("output_dim")) or 0
            return ((*shape, n_out) if shape is not None else None), n_in * n_out
        if cls in ("Resizing", "CenterCrop", "RandomCrop"):
            h, w = _as_int(cfg.get("height")), _as_int(cfg.get("width"))
            return ((h, w, last) if shape is not None and len(shape) == 3 else None), 0
        if cls in ("ZeroPadding2D", "Cropping2D", "UpSampling2D"):
            return self._pad_like(cls, cfg, shape), 0
        if cls in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"):
            return shape, 0
        if cls == "Concatenate":
            if any(i is None for i in ins) or _as_int(cfg.get("axis", -1)) not in (-1, len(shape or ())):
                return None, 0
            total = sum(int(i[-1] or 0) for i in ins if i is not None)
            return (*shape[:-1], total), 0  # type: ignore[index]
        if cls in _SHAPE_KEEPING:
            return shape, 0
        self.unknown.add(cls)
        return None, 0

    @staticmethod
    def _pad_like(cls: str, cfg: dict, shape: Shape | None) -> Shape | None:
        if shape is None or len(shape) != 3:
            return None
        h, w, c = shape
        if h is None or w is None:
            return None
        if cls == "UpSampling2D":
            size = _ints(cfg.get("size", 2), 2)
            return None if size is None else (h * size[0], w * size[1], c)
        key = "padding" if cls == "ZeroPadding2D" else "cropping"
        raw = cfg.get(key, 1 if cls == "ZeroPadding2D" else 0)
        if isinstance(raw, (list, tuple)) and raw and isinstance(raw[0], (list, tuple)):
            pairs = [_ints(p, 2) for p in raw]
        else:
            one = _ints(raw, 2)
            pairs = [(one[0], one[0]), (one[1], one[1])] if one else [None]
        if len(pairs) != 2 or any(p is None for p in pairs):
            return None
        sign = 1 if cls == "ZeroPadding2D" else -1
        dh, dw = sum(pairs[0]), sum(pairs[1])  # type: ignore[arg-type]
        return (h + sign * dh, w + sign * dw, c)


_SHAPE_KEEPING = frozenset(
    {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
     "AlphaDropout", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "Rescaling", "Identity", "Masking",
     "ActivityRegularization", "UnitNormalization", "RandomFlip", "RandomRotation", "RandomZoom", "RandomContrast",
     "RandomTranslation", "RandomBrightness", "RandomGrayscale", "RandomHue", "RandomSaturation", "RandomSharpness",
     "RandomColorJitter", "RandomShear", "RandomPosterization", "RandomInvert", "RandomErasing",
     "RandomGaussianBlur", "RandomPerspective", "RandomElasticTransform", "RandomColorDegeneration",
     "Solarization", "AutoContrast", "Equalization"}
)  # fmt: skip


def _history_refs(node: Any):
    """(layer, node, tensor) references in one inbound node, Keras 3 (`keras_history`) or Keras 2 (lists) style."""
    if isinstance(node, dict):
        if node.get("class_name") == "__keras_tensor__":
            hist = (node.get("config") or {}).get("keras_history")
            if isinstance(hist, (list, tuple)) and len(hist) >= 3 and isinstance(hist[0], str):
                yield hist[0], _as_int(hist[1]) or 0, _as_int(hist[2]) or 0
            return
        for v in node.values():
            yield from _history_refs(v)
    elif isinstance(node, (list, tuple)):
        if len(node) >= 3 and isinstance(node[0], str) and _as_int(node[1]) is not None:
            yield node[0], _as_int(node[1]) or 0, _as_int(node[2]) or 0
            return
        for v in node:
            yield from _history_refs(v)


def _output_refs(spec: Any) -> list[tuple[str, int, int]]:
    if isinstance(spec, (list, tuple)) and len(spec) >= 3 and isinstance(spec[0], str):
        return [(spec[0], _as_int(spec[1]) or 0, _as_int(spec[2]) or 0)]
    if isinstance(spec, (list, tuple)):
        return [r for item in spec for r in _output_refs(item)]
    if isinstance(spec, dict):
        return [r for v in spec.values() for r in _output_refs(v)]
    return []


def declared_params(config: dict) -> tuple[int, set[str]]:
    """Parameters a model config declares (as Keras would allocate them on load) and the layer types not followed."""
    walk = ConfigWalk()
    walk.model(config)
    return walk.params, walk.unknown


def _big_ints(node: Any, key: str = "") -> int:
    """Largest size-like integer anywhere in a config (units, filters, kernel sizes, shapes ...)."""
    best = 0
    if isinstance(node, dict):
        for k, v in node.items():
            best = max(best, _big_ints(v, k))
    elif isinstance(node, list):
        for v in node:
            best = max(best, _big_ints(v, key))
    elif key in _SIZE_KEYS:
        n = _as_int(node)
        best = abs(n) if n is not None else 0
    return best


def _has_lambda(node: Any) -> bool:
    if isinstance(node, dict):
        if node.get("class_name") in ("Lambda", "TFOpLambda"):
            return True
        return any(_has_lambda(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_lambda(v) for v in node)
    return False


def h5_sizes(path: Path) -> tuple[int, int]:
    """(layer parameters, bytes of every array) from a weights file's dataset shapes; no array is read."""
    import h5py

    params = 0
    nbytes = 0

    def visit(name: str, obj) -> None:
        nonlocal params, nbytes
        if isinstance(obj, h5py.Dataset):
            n = int(math.prod(obj.shape or ()))
            nbytes += n * obj.dtype.itemsize
            if not name.startswith("optimizer"):
                params += n

    with h5py.File(path, "r") as h5:
        h5.visititems(visit)
    return params, nbytes


def check_model_archive(path: Path, name: str) -> dict:
    """Refuse a .keras file whose members, config or declared weights exceed our caps; return its config.

    Runs before Keras sees the file, so nothing is built or allocated for a hostile one.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise UserError(f"{name} is not a .keras model file") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise UserError(
                f"{name} has {len(infos):,} entries inside (limit {MAX_MEMBERS}); not a model file"
            )
        for info in infos:
            cap = _member_cap(info.filename)
            if info.file_size > cap:
                raise UserError(
                    f"{name}: {info.filename} inside declares {human(info.file_size)} (limit {human(cap)}); refused"
                )
        try:
            cfg_info = zf.getinfo("config.json")
        except KeyError:
            raise UserError(f"{name} is not a .keras model file (no config.json inside)") from None
        try:
            raw = _read_member(zf, cfg_info, MAX_CONFIG_BYTES, name)
            config = json.loads(raw)
        except UserError:
            raise
        except (
            ValueError,
            RecursionError,
            zipfile.BadZipFile,
            OSError,
            EOFError,
            NotImplementedError,
            RuntimeError,
        ):
            raise UserError(f"{name} has an unreadable config.json; not a .keras model file") from None
        if not isinstance(config, dict):
            raise UserError(f"{name} has an unreadable config.json; not a .keras model file")
        if _has_lambda(config):
            raise UserError(f"{name} contains a Lambda layer (arbitrary code); refused for safety")
        params, unknown = declared_params(config)
        if params > MAX_PARAMS:
            raise UserError(
                f"{name} declares {params:,} parameters (limit {MAX_PARAMS:,}); refused before building it"
            )
        if unknown and _big_ints(config) > MAX_INT_IN_UNKNOWN:
            raise UserError(
                f"{name} declares a layer size over {MAX_INT_IN_UNKNOWN:,} in layers we cannot check "
                f"({', '.join(sorted(unknown))}); refused"
            )
        for info in infos:
            if info.is_dir() or info.filename == "config.json":
                continue
            cap = _member_cap(info.filename)
            try:
                if info.filename == _WEIGHTS_MEMBER:
                    _check_weights_member(zf, info, cap, name)
                else:
                    _copy_member(zf, info, cap)
            except _Oversize:
                raise UserError(
                    f"{name}: {info.filename} inside expands past {human(cap)}; refused"
                ) from None
            except UserError:
                raise
            except Exception:  # CRC errors, unsupported compression, encrypted members, broken h5
                raise UserError(f"{name} is damaged ({info.filename} cannot be read)") from None
    return config


def _check_weights_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        h5_path = Path(tmp) / _WEIGHTS_MEMBER
        with open(h5_path, "wb") as out:
            _copy_member(zf, info, cap, out)
        params, nbytes = h5_sizes(h5_path)
    if params > MAX_PARAMS:
        raise UserError(f"{name} holds {params:,} weights (limit {MAX_PARAMS:,}); refused")
    if nbytes > MAX_WEIGHT_BYTES:
        raise UserError(f"{name} holds {human(nbytes)} of weights (limit {human(MAX_WEIGHT_BYTES)}); refused")


def load_model(path: Path, name: str | None = None):
    """Load with safe_mode=True after our caps: Lambda layers (arbitrary code) and oversized files are refused.

    `name` is what the person calls the file (an upload's own name), used in every message instead of a temp path.
    """
    import keras

    path = Path(path)
    name = name or path.name
    regular_file(path, MAX_MODEL_FILE_BYTES, "model file", name)
    if not zipfile.is_zipfile(path):
        raise UserError(f"{name} is not a .keras model file")
    check_model_archive(path, name)
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:
        first = first_line(exc, 200)
        first = first.replace(str(path), name)
        if "Lambda" in first or "safe_mode" in first:
            raise UserError(
                f"{name} contains code that cannot be loaded safely (Lambda layer); refused"
            ) from None
        raise UserError(f"could not load {name}: {first}") from None


@dataclass
class LoadedModel:
    """A model plus what its outputs mean."""

    model: Any
    class_names: list[str]
    input_shape: tuple[int, int, int]
    output_kind: str
    source: str
    temperature: float = (
        1.0  # from the run's calibration: logits are divided by it (core.analysis.calibration)
    )
    detector: Any = (
        None  # the run's unfamiliar-image detector (core.analysis.unfamiliar.Detector), when fitted
    )


def infer_output_kind(model) -> str:
    """For a foreign model: softmax if the last layer applies it, sigmoid for one unit, else logits."""
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    name = getattr(act, "__name__", "") if act else ""
    units = int(model.outputs[0].shape[-1])
    if units == 1:
        return "sigmoid"
    if name == "softmax" or type(last).__name__ == "Softmax":
        return "softmax"
    return "logits"


def describe(model, meta: dict[str, Any], source: str, class_names: list[str] | None = None) -> LoadedModel:
    shape = tuple(int(d) if d else 0 for d in model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[2] not in (1, 3) or 0 in shape[:2]:
        raise UserError(f"{source}: expected an image model with input (height, width, 1 or 3); got {shape}")
    if max(shape[:2]) > MAX_INPUT_SIDE:
        raise UserError(
            f"{source}: input {shape[0]}x{shape[1]} is over {MAX_INPUT_SIDE} pixels a side; refused"
        )
    kind = meta.get("output_kind") or infer_output_kind(model)
    units = int(model.outputs[0].shape[-1])
    k = 2 if kind == "sigmoid" else units
    names = list(class_names or meta.get("class_names") or [f"class {i}" for i in range(k)])
    if len(names) != k:
        raise UserError(f"{source} has {k} outputs but {len(names)} class names were given")
    return LoadedModel(model, names, shape, kind, source)  # type: ignore[arg-type]


def load_uploaded(data: bytes, name: str, class_names: list[str] | None = None) -> LoadedModel:
    """A `.keras` file someone uploaded: written to a temp file (Keras loads from paths), loaded safely."""
    if not data:
        raise UserError(f"{name} is empty")
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "upload.keras"
        p.write_bytes(data)
        model = load_model(p, name)
        meta = read_meta(p)
    return describe(model, meta, name, class_names)


def load_run_model(run) -> LoadedModel:
    if not run.has_model:
        raise UserError(f"run {run.run_id} has no saved model yet")
    from core.analysis import calibration, unfamiliar

    model = load_model(run.model_path)
    lm = describe(model, run.config.to_dict(), run.run_id)
    lm.temperature = calibration.temperature(run.path)
    lm.detector = unfamiliar.load_detector(run.path)
    return lm
