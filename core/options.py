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

EXPORT_FORMATS = ("keras", "savedmodel", "tflite", "tflite-quant", "onnx", "bundle")
BUNDLE_FORMATS = ("keras", "savedmodel", "tflite", "tflite-quant", "onnx")  # what a bundle zip holds
EXPORT_FORMAT_LABELS = {
    "keras": ".keras model",
    "savedmodel": "TensorFlow SavedModel (folder, zipped for download)",
    "tflite": "TFLite float32",
    "tflite-quant": "TFLite dynamic-range quantised",
    "onnx": "ONNX (checked with ONNX Runtime)",
    "bundle": "Bundle zip: all formats + config + README + checks",
}
ONNX_OPSET = 17  # tf2onnx 1.17 converts up to 18; ONNX Runtime 1.32 runs both
ONNX_MAX_ABS_DIFF = 1e-3  # an ONNX export whose probabilities drift further from Keras' is refused
TF2ONNX_VERSION = "1.17.0"  # the converter pinned in requirements.txt, named in its errors
ONNXRUNTIME_VERSION = "1.32.0"

EVALUATION_SPLITS = ("test", "val")
DEFAULT_SEED = 213  # the Jedi/Sith notebooks' split seed
DEFAULT_VAL_SPLIT = 0.2
DEFAULT_PRESET = "fast"

CALIBRATION_BINS = 15  # equal-width confidence bins of the reliability diagram and the ECE
DEFAULT_TARGET_ACCURACY = 0.95  # "accuracy >= X on what is accepted" until a person picks another X
UNFAMILIAR_METHODS = ("knn", "energy")  # distance to the nearest training embeddings; energy of the logits
UNFAMILIAR_PASS_SHARE = 0.95  # the share of validation images that must pass as familiar
LR_FIND_STEPS = 200  # batches of the learning-rate range test, one learning rate each
DATASET_LAYOUTS = ("flat", "splits")  # data/<name>/<class>/ or data/<name>/{train,validation,test}/<class>/
# Sweeps (core.training.sweeps): what a sweep can vary, by the name the CLI's --grid and the form use. dropout and
# filters are the builder's (preset "custom"); the notebook presets stay exactly as the notebooks define them.
SWEEP_PARAMS = ("learning_rate", "batch_size", "epochs", "optimizer", "preset", "dropout", "filters")
SWEEP_ALIASES = {"lr": "learning_rate", "batch": "batch_size", "epoch": "epochs", "opt": "optimizer"}
SWEEP_MODES = ("grid", "random")
MAX_SWEEP_TRIALS = 100
DEFAULT_AUDIT_FOLDS = 3  # cross-validation folds of `python -m core audit` and the Improve page
LR_SCHEDULES = ("constant", "one-cycle")  # one-cycle: linear warm-up to the rate, then half-cosine decay
MAX_LABEL_SMOOTHING = 0.5  # beyond this the targets say little about the true class
