"""Every choice a person can make by name, in one place: the CLI's `choices=`, the Train page's select boxes and
the checks in `core.training.trainer.resolve` all read these, so a new optimizer or format is added once."""

from __future__ import annotations

OPTIMIZERS = ("adam", "rmsprop", "sgd")
CLASS_WEIGHT_METHODS = ("none", "balanced", "notebook")  # notebook: the Jedi/Sith notebooks' hand-set weights
STRATEGIES = (
    "default",
    "mirrored",
    "multiworker",
)  # tf.distribute: one device, every local device, several hosts
CHANNELS = (1, 3)

EXPORT_FORMATS = ("keras", "savedmodel", "tflite", "tflite-quant", "bundle")
BUNDLE_FORMATS = ("keras", "savedmodel", "tflite", "tflite-quant")  # what a bundle zip holds
EXPORT_FORMAT_LABELS = {
    "keras": ".keras model",
    "savedmodel": "TensorFlow SavedModel (folder, zipped for download)",
    "tflite": "TFLite float32",
    "tflite-quant": "TFLite dynamic-range quantised",
    "bundle": "Bundle zip: all formats + config + README + checks",
}

EVALUATION_SPLITS = ("test", "val")
DEFAULT_SEED = 213  # the Jedi/Sith notebooks' split seed
DEFAULT_VAL_SPLIT = 0.2
DEFAULT_PRESET = "fast"
DEFAULT_AUDIT_FOLDS = 3  # cross-validation folds of `python -m core audit` and the Improve page
