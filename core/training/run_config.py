"""What a run was asked to do, with every default filled in: written once to `runs/<id>/config.json`.

A typed record instead of a dict, so a misspelt key is an error where it is written, not a `None` three modules
later. `to_dict()` is exactly the JSON layout runs have always had (old run folders still read), and keys this
version does not know are kept in `extra` and written back unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core import options

PREPROCESSING = "float32 raw pixels 0..255, resized (bilinear) to input_shape; scaling is inside the model"


RECIPE_DEFAULTS: dict[str, Any] = {"lr_schedule": "constant", "label_smoothing": 0.0}


@dataclass(frozen=True)
class RunConfig:
    dataset: str = ""
    preset: str = options.DEFAULT_PRESET
    class_names: list[str] = field(default_factory=list)
    input_shape: tuple[int, int, int] = (0, 0, 0)
    output_kind: str = "softmax"
    label_mode: str = "int"
    epochs: int = 1
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    seed: int = options.DEFAULT_SEED
    val_split: float = options.DEFAULT_VAL_SPLIT
    class_weights: str = "none"
    early_stopping: int = 0  # patience in epochs; 0 = off
    restore_best: bool = True
    target_accuracy: float | None = None
    weights: str | None = None  # transfer presets: "imagenet", a weights file, or None (random)
    builder: dict[str, Any] | None = None  # the small builder's numbers (preset "custom")
    limit: int | None = None  # at most this many images per split
    lr_schedule: str = "constant"  # options.LR_SCHEDULES; runs from before schedules were constant
    label_smoothing: float = 0.0  # targets (1 - s) on the class, s spread over all classes
    strategy: str = "default"
    pinned: list[str] | None = None  # time-lapse images (validation split); None = one per class, [] = none
    dataset_title: str = ""
    # core.data.fingerprint of the data when the run was created; None in runs from before fingerprints
    dataset_fingerprint: str | None = None
    preset_title: str = ""
    preprocessing: str = PREPROCESSING
    run_id: str = ""
    sweep: str = ""  # the sweep this run is a trial of (core.training.sweeps); "" = an ordinary run
    sweep_trial: int | None = None  # its trial number in that sweep, from 0
    extra: dict[str, Any] = field(default_factory=dict)  # keys written by another version, kept as they were

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out["input_shape"] = list(self.input_shape)
        out["class_names"] = list(self.class_names)
        # Defaults are left out, so a config written before a field existed reads back unchanged.
        if self.pinned is None:
            del out["pinned"]
        if self.dataset_fingerprint is None:  # likewise: runs from before fingerprints read back unchanged
            del out["dataset_fingerprint"]
        if not self.sweep:  # likewise: only a sweep's trials say so
            del out["sweep"], out["sweep_trial"]
        for name in (
            "lr_schedule",
            "label_smoothing",
        ):  # the recipe's defaults: old configs read back unchanged
            if out[name] == RECIPE_DEFAULTS[name]:
                del out[name]
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, data: RunConfig | Mapping[str, Any]) -> RunConfig:
        """Read config.json as written by any version; a key of the wrong kind is refused, not guessed."""
        if isinstance(data, RunConfig):
            return data
        if not isinstance(data, Mapping):
            raise ValueError("config is not a JSON object")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        if "input_shape" in values:
            shape = values["input_shape"]
            if (
                not isinstance(shape, list | tuple)
                or len(shape) != 3
                or not all(isinstance(v, int) for v in shape)
            ):
                raise ValueError(f"input_shape must be three integers; got {shape!r}")
            values["input_shape"] = tuple(int(v) for v in shape)
        if "class_names" in values:
            names = values["class_names"]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError("class_names must be a list of strings")
            values["class_names"] = list(names)
        if not isinstance(values.get("sweep", ""), str):
            raise ValueError("sweep must be a sweep id")
        if values.get("sweep_trial") is not None and not isinstance(values["sweep_trial"], int):
            raise ValueError("sweep_trial must be a whole number")
        if values.get("pinned") is not None:
            pins = values["pinned"]
            if not isinstance(pins, list) or not all(isinstance(n, str) for n in pins):
                raise ValueError("pinned must be a list of strings")
            values["pinned"] = list(pins)
        if values.get("dataset_fingerprint") is not None and not isinstance(
            values["dataset_fingerprint"], str
        ):
            raise ValueError("dataset_fingerprint must be a string")
        if "lr_schedule" in values and not isinstance(values["lr_schedule"], str):
            raise ValueError("lr_schedule must be a string")
        if "label_smoothing" in values:
            smoothing = values["label_smoothing"]
            if isinstance(smoothing, bool) or not isinstance(smoothing, int | float):
                raise ValueError("label_smoothing must be a number")
            values["label_smoothing"] = float(smoothing)
        return cls(**values, extra=extra)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)
