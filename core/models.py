"""Loading models safely: our runs' models and `.keras` files people bring from elsewhere.

Our `.keras` files carry an extra member, `convnet_studio.json` (class names, input shape, head), so a model
downloaded from this app and uploaded again, or used in a notebook, knows what its outputs mean.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import atomic
from core.errors import UserError

META_MEMBER = "convnet_studio.json"
META_KEYS = ("class_names", "input_shape", "output_kind", "preset", "dataset", "run_id", "label_mode")


def save_model(model, path: Path, meta: dict[str, Any] | None = None, make_parents: bool = True) -> None:
    """model.save needs a .keras name, so the temp file keeps that suffix; the rename makes it atomic.

    `make_parents=False` (training jobs) refuses to recreate a run folder deleted under the job.
    """
    with atomic.atomic_path(path, suffix=".keras", make_parents=make_parents) as tmp:
        model.save(tmp)
        if meta:
            with zipfile.ZipFile(tmp, "a") as zf:
                zf.writestr(META_MEMBER, json.dumps({k: meta[k] for k in META_KEYS if k in meta}))


def read_meta(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as zf:
            if META_MEMBER in zf.namelist():
                return json.loads(zf.read(META_MEMBER))
    except (OSError, zipfile.BadZipFile, ValueError, KeyError):
        pass
    return {}


def load_model(path: Path):
    """Load with safe_mode=True: Lambda layers (arbitrary code) are refused, as are files that fail to load."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file not found: {path.name}")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path.name} is not a .keras model file")
    try:
        with zipfile.ZipFile(path) as zf:
            cfg_text = zf.read("config.json").decode("utf-8", "replace")
    except (KeyError, zipfile.BadZipFile, OSError):
        raise UserError(f"{path.name} is not a .keras model file (no config.json inside)") from None
    if '"class_name": "Lambda"' in cfg_text or '"class_name":"Lambda"' in cfg_text:
        raise UserError(f"{path.name} contains a Lambda layer (arbitrary code); refused for safety")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        if "Lambda" in first or "safe_mode" in first:
            raise UserError(
                f"{path.name} contains code that cannot be loaded safely (Lambda layer); refused"
            ) from None
        raise UserError(f"could not load {path.name}: {first}") from None


@dataclass
class LoadedModel:
    """A model plus what its outputs mean."""

    model: Any
    class_names: list[str]
    input_shape: tuple[int, int, int]
    output_kind: str
    source: str


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
        model = load_model(p)
        meta = read_meta(p)
    return describe(model, meta, name, class_names)


def load_run_model(run) -> LoadedModel:
    if not run.has_model:
        raise UserError(f"run {run.run_id} has no saved model yet")
    model = load_model(run.model_path)
    return describe(model, run.config, run.run_id)
