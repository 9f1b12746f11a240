"""Preset architectures from the source notebooks, layer for layer, plus a small builder and our `fast` preset.

Every model is Functional (built from `keras.Input`) so sub-models over any layer work for inspection, and every
model takes raw pixels in 0..255: the notebooks' scaling step lives inside the model as a layer.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import UserError, first_line
from core.lazy import LazyModule

if TYPE_CHECKING:
    import keras
    from keras import layers
else:
    # imported on first use: the catalog of presets (names, sources, sizes) and argument checks need no TensorFlow
    keras = LazyModule("keras")
    layers = LazyModule("keras.layers")

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class Preset:
    """What a preset builds and how the notebook trained it; the Train page starts from these defaults."""

    name: str
    title: str
    source: str
    build: Callable[..., keras.Model]
    image_size: tuple[int, int] | None = None  # None: the dataset's own size
    channels: int | None = None  # None: the dataset's own channels; 3 forces RGB
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    epochs: int = 10
    batch_size: int = 32
    head: str = "softmax"  # softmax | logits | binary (sigmoid for two classes, softmax otherwise)
    label_mode: str = "sparse"  # sparse | categorical (one-hot, as the MNIST lab does)
    class_weights: str = "none"  # none | notebook | balanced
    transfer: str | None = None  # "mobilenet_v2" | "xception": needs ImageNet weights
    min_image_size: int = 8
    # the training recipe a preset carries (ours only; the notebooks trained at a constant rate, hard labels)
    lr_schedule: str = "constant"
    label_smoothing: float = 0.0
    notes: str = ""
    extra: dict = field(default_factory=dict)


def _notebook_augmentation(x):
    """The Jedi/Sith notebooks' four augmentation layers (inactive at inference)."""
    x = layers.RandomFlip("horizontal_and_vertical", name="random_flip")(x)
    x = layers.RandomRotation(0.2, name="random_rotation")(x)
    x = layers.RandomContrast(0.2, name="random_contrast")(x)
    return layers.RandomZoom(height_factor=(-0.3, -0.2), name="random_zoom")(x)


def augmentation_layers(preset: str = "jedi-sith-binary") -> list[keras.layers.Layer]:
    """The exact augmentation layers a preset uses, for the Datasets page preview."""
    if preset in ("cats-dogs-2", "cats-dogs-3", "mobilenetv2-transfer"):
        return [layers.RandomFlip("horizontal_and_vertical"), layers.RandomRotation(0.2)]
    return [
        layers.RandomFlip("horizontal_and_vertical"),
        layers.RandomRotation(0.2),
        layers.RandomContrast(0.2),
        layers.RandomZoom(height_factor=(-0.3, -0.2)),
    ]


def _head(x, num_classes: int, head: str):
    """Output layer: the notebook's head, adapted to the dataset's class count."""
    if head == "binary" and num_classes == 2:
        return layers.Dense(1, activation="sigmoid", name="output")(x)
    if head == "logits":
        return layers.Dense(num_classes, name="output")(x)
    return layers.Dense(num_classes, activation="softmax", name="output")(x)


def _jedi_stack(x):
    x = layers.Rescaling(1.0 / 255, name="rescaling")(x)
    x = layers.Conv2D(16, 3, activation="relu", name="conv2d")(x)
    x = layers.Dropout(0.2)(x)
    x = layers.MaxPooling2D(2, 2)(x)
    for i, filters in enumerate((32, 64, 64, 64), start=1):
        x = layers.Conv2D(filters, 3, activation="relu", name=f"conv2d_{i}")(x)
        x = layers.MaxPooling2D(2, 2)(x)
    return layers.Flatten()(x)


def _build_jedi(input_shape: Shape, num_classes: int, dense_units: int, head: str, name: str) -> keras.Model:
    """Both Jedi/Sith notebooks: augmentation + conv stack, then Dropout, Dense(units), Dropout and the head."""
    inputs = keras.Input(input_shape)
    x = _jedi_stack(_notebook_augmentation(inputs))
    x = layers.Dropout(0.2)(x)
    x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(0.2)(x)
    return keras.Model(inputs, _head(x, num_classes, head), name=name)


def build_jedi_sith_binary(input_shape: Shape, num_classes: int, **_) -> keras.Model:
    return _build_jedi(input_shape, num_classes, 512, "binary", "jedi_sith_binary")


def build_jedi_sith_ternary(input_shape: Shape, num_classes: int, **_) -> keras.Model:
    return _build_jedi(input_shape, num_classes, 3201, "softmax", "jedi_sith_ternary")


def build_mnist_lab(input_shape: Shape, num_classes: int, **_) -> keras.Model:
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_to_pm1")(inputs)
    x = layers.Conv2D(64, (8, 8), activation="relu", name="conv2d")(x)
    x = layers.Conv2D(128, (8, 8), activation="relu", name="conv2d_1")(x)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    x = layers.Dropout(0.5)(x)
    return keras.Model(inputs, _head(x, num_classes, "softmax"), name="mnist_lab")


def _cats_dogs_tail(x, num_classes: int):
    x = layers.Dropout(0.2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    x = layers.Dropout(0.2)(x)
    return _head(x, num_classes, "logits")


def _cats_dogs_flip_rotate(x):
    x = layers.RandomFlip("horizontal_and_vertical", name="random_flip")(x)
    return layers.RandomRotation(0.2, name="random_rotation")(x)


def _build_cats_dogs_12(input_shape: Shape, num_classes: int, augment: bool, name: str) -> keras.Model:
    inputs = keras.Input(input_shape)
    x = _cats_dogs_flip_rotate(inputs) if augment else inputs
    x = layers.Conv2D(32, (3, 3), activation="relu", name="conv2d")(x)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Conv2D(64, (3, 3), activation="relu", name="conv2d_1")(x)
    x = layers.MaxPooling2D((2, 2))(x)
    return keras.Model(inputs, _cats_dogs_tail(x, num_classes), name=name)


def build_cats_dogs_1(input_shape: Shape, num_classes: int, **_) -> keras.Model:
    return _build_cats_dogs_12(input_shape, num_classes, augment=False, name="cats_dogs_1")


def build_cats_dogs_2(input_shape: Shape, num_classes: int, **_) -> keras.Model:
    return _build_cats_dogs_12(input_shape, num_classes, augment=True, name="cats_dogs_2")


def _mobilenet_preprocess(x):
    """mobilenet_v2.preprocess_input is x/127.5 - 1; a Rescaling layer does exactly that and serialises safely."""
    return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="mobilenet_v2_preprocess")(x)


def build_cats_dogs_3(input_shape: Shape, num_classes: int, **_) -> keras.Model:
    inputs = keras.Input(input_shape)
    x = _cats_dogs_flip_rotate(_mobilenet_preprocess(inputs))
    for i, filters in enumerate((32, 32, 64)):
        x = layers.Conv2D(filters, (3, 3), activation="relu", name="conv2d" + (f"_{i}" if i else ""))(x)
        x = layers.MaxPooling2D((2, 2))(x)
    return keras.Model(inputs, _cats_dogs_tail(x, num_classes), name="cats_dogs_3")


def imagenet_weights_file(kind: str, input_shape: Shape) -> Path:
    """Where Keras caches the no-top ImageNet weights it would download for this base and input size."""
    models_dir = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    if kind == "xception":
        return models_dir / "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
    rows = (
        input_shape[0]
        if input_shape[0] == input_shape[1] and input_shape[0] in (96, 128, 160, 192, 224)
        else 224
    )
    return models_dir / f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"


IMAGENET_ORIGIN = (
    "https://storage.googleapis.com/tensorflow/keras-applications/"  # where keras.applications fetch
)


def imagenet_weights_url(kind: str, input_shape: Shape) -> str:
    return f"{IMAGENET_ORIGIN}{kind}/{imagenet_weights_file(kind, input_shape).name}"


def offline_weights_message(kind: str, input_shape: Shape, reason: str = "no internet") -> str:
    path = imagenet_weights_file(kind, input_shape)
    return (
        f"cannot download the ImageNet weights for {kind}: the network is unreachable ({reason}). "
        f"On a machine with internet, download {imagenet_weights_url(kind, input_shape)} and put it at {path} "
        "(Keras looks there first); or choose random initialisation (weights: random), "
        "or give the path of a local weights file (.h5)."
    )


def load_base(kind: str, input_shape: Shape, weights: str | None) -> keras.Model:
    """An ImageNet base without its top. weights: "imagenet" (download once, cached in ~/.keras),
    None (random initialisation) or a path to a local weights file."""
    from core.data.keras_datasets import network_problem

    ctor = {"mobilenet_v2": keras.applications.MobileNetV2, "xception": keras.applications.Xception}[kind]
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise UserError(f"weights file not found: {weights}")
    if weights == "imagenet" and not imagenet_weights_file(kind, input_shape).is_file():
        problem = network_problem(imagenet_weights_url(kind, input_shape))
        if problem:
            raise UserError(offline_weights_message(kind, input_shape, problem))
    try:
        return ctor(input_shape=input_shape, include_top=False, weights=weights)
    except UserError:
        raise
    except Exception as exc:  # Keras wraps URL errors in a bare Exception ("URL fetch failure on ...")
        first = first_line(exc, 200)
        if weights == "imagenet":
            raise UserError(offline_weights_message(kind, input_shape, first)) from None
        raise UserError(f"could not load {kind} weights from {weights}: {first}") from None


def build_mobilenetv2_transfer(
    input_shape: Shape, num_classes: int, weights: str | None = "imagenet"
) -> keras.Model:
    base = load_base("mobilenet_v2", input_shape, weights)
    base.trainable = False
    inputs = keras.Input(input_shape)
    x = _cats_dogs_flip_rotate(_mobilenet_preprocess(inputs))
    x = base(x, training=False)
    x = layers.GlobalMaxPooling2D()(x)
    x = layers.Dropout(0.2)(x)
    return keras.Model(inputs, _head(x, num_classes, "logits"), name="mobilenetv2_transfer")


def build_xception_transfer(
    input_shape: Shape, num_classes: int, weights: str | None = "imagenet"
) -> keras.Model:
    base = load_base("xception", input_shape, weights)
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="xception_preprocess")(inputs)
    x = base(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(30, activation="relu", name="dense")(x)
    return keras.Model(inputs, _head(x, num_classes, "softmax"), name="xception_transfer")


def build_fashion_dense(input_shape: Shape, num_classes: int, **_) -> keras.Model:
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1.0 / 255, name="rescaling")(inputs)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    return keras.Model(inputs, _head(x, num_classes, "softmax"), name="fashion_dense")


def build_fashion_conv64(input_shape: Shape, num_classes: int, **_) -> keras.Model:
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1.0 / 255, name="rescaling")(inputs)
    x = layers.Conv2D(64, (3, 3), activation="relu", name="conv2d")(x)
    x = layers.MaxPooling2D(2, 2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    return keras.Model(inputs, _head(x, num_classes, "softmax"), name="fashion_conv64")


def build_fashion_cnn(input_shape: Shape, num_classes: int, **_) -> keras.Model:
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1.0 / 255, name="rescaling")(inputs)
    x = layers.Conv2D(32, (3, 3), activation="relu", name="conv2d")(x)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Conv2D(64, (3, 3), activation="relu", name="conv2d_1")(x)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Conv2D(64, (3, 3), activation="relu", name="conv2d_2")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu", name="dense")(x)
    return keras.Model(inputs, _head(x, num_classes, "logits"), name="fashion_cnn")


def build_horses_humans(input_shape: Shape, num_classes: int, **_) -> keras.Model:
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1.0 / 255, name="rescaling")(inputs)
    for i, filters in enumerate((16, 32, 64)):
        x = layers.Conv2D(filters, (3, 3), activation="relu", name="conv2d" + (f"_{i}" if i else ""))(x)
        x = layers.MaxPooling2D(2, 2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu", name="dense")(x)
    return keras.Model(inputs, _head(x, num_classes, "binary"), name="horses_humans")


def build_fast(input_shape: Shape, num_classes: int, **_) -> keras.Model:
    """Our preset for small images on a CPU. Measured on full Fashion-MNIST with 2 cores (bench/bench_train.py):
    16 and 32 same-padded filters, each block pooled at once, reach 90% test accuracy in 4-5 epochs (Adam 2e-3, batch 128) at a
    quarter of the FLOPs of a 32/64 stack; batch norm converged no faster and cost 2x per epoch on the CPU,
    and its moving averages lag badly in short runs on small datasets."""
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1.0 / 255, name="rescaling")(inputs)
    for i, filters in enumerate((16, 32)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv2d_{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    return keras.Model(inputs, _head(x, num_classes, "softmax"), name="fast")


def build_small_best(input_shape: Shape, num_classes: int, **_) -> keras.Model:
    """Our best model under 100k parameters for small grey images: three blocks of two batch-normalised 3x3 convs
    (16, 32, 64 filters), max-pooled between blocks, global average pooling and the head (73,114 params at
    28x28x1). Training-time augmentation suits clothes and most small objects: a left-right flip and a shift of at
    most 2 px (7%), both inactive at inference. Batch norm with momentum 0.9 (Keras' default 0.99 lags in runs
    of a few thousand steps) and no conv bias (the norm's offset replaces it)."""
    inputs = keras.Input(input_shape)
    x = layers.RandomFlip("horizontal", name="random_flip")(inputs)
    shift = 2.0 / max(min(input_shape[0], input_shape[1]), 2)
    x = layers.RandomTranslation(shift, shift, fill_mode="constant", name="random_shift")(x)
    x = layers.Rescaling(1.0 / 255, name="rescaling")(x)
    for i, filters in enumerate((16, 32, 64)):
        for j in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv2d_{i}_{j}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"bn_{i}_{j}")(x)
            x = layers.ReLU(name=f"relu_{i}_{j}")(x)
        if i < 2:
            x = layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, _head(x, num_classes, "softmax"), name="small_best")


@dataclass(frozen=True)
class BuilderSpec:
    """The small builder: stacked conv blocks, each Conv2D -> MaxPool, then dense units."""

    conv_blocks: int = 2
    filters: int = 32
    filter_growth: float = 2.0
    kernel_size: int = 3
    dropout: float = 0.2
    dense_units: int = 128
    augmentation: bool = False
    batch_norm: bool = False


def build_custom(input_shape: Shape, num_classes: int, spec: BuilderSpec | None = None, **_) -> keras.Model:
    spec = spec or BuilderSpec()
    inputs = keras.Input(input_shape)
    x = _notebook_augmentation(inputs) if spec.augmentation else inputs
    x = layers.Rescaling(1.0 / 255, name="rescaling")(x)
    filters = float(spec.filters)
    for i in range(spec.conv_blocks):
        if min(x.shape[1], x.shape[2]) < spec.kernel_size:
            raise UserError(
                f"image too small for {spec.conv_blocks} conv blocks; use fewer blocks or larger images"
            )
        x = layers.Conv2D(
            int(filters), spec.kernel_size, padding="same", activation="relu", name=f"conv2d_{i}"
        )(x)
        if spec.batch_norm:
            x = layers.BatchNormalization(name=f"bn_{i}")(x)
        if min(x.shape[1], x.shape[2]) >= 2:
            x = layers.MaxPooling2D(2, name=f"pool_{i}")(x)
        filters *= spec.filter_growth
    x = layers.Flatten()(x)
    if spec.dropout:
        x = layers.Dropout(spec.dropout)(x)
    if spec.dense_units:
        x = layers.Dense(spec.dense_units, activation="relu", name="dense")(x)
    return keras.Model(inputs, _head(x, num_classes, "softmax"), name="custom")


_SEEDS = "../shared/seeds"
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "fast", "Fast CNN (ours, default for small images)", "ConvNet Studio", build_fast,
            learning_rate=5e-3, epochs=3, batch_size=128, lr_schedule="one-cycle", label_smoothing=0.1,
            notes="one-cycle to 5e-3, label smoothing 0.1: 91.1% test on full Fashion-MNIST in 3 epochs on 2 CPU cores",
        ),
        Preset(
            "small-best", "Best small CNN (ours, < 100k params)", "ConvNet Studio", build_small_best,
            learning_rate=5e-3, epochs=6, batch_size=128, lr_schedule="one-cycle", label_smoothing=0.1,
            min_image_size=4,
            notes="3x2 batch-normalised convs + global pooling, flip and ±2 px shifts; 73k params at 28x28x1; "
            "91.85% test on full Fashion-MNIST in 6 epochs (156 s on 2 cores)",
        ),
        Preset(
            "jedi-sith-binary", "Jedi vs Sith binary CNN", "jedi_sith_binary", build_jedi_sith_binary,
            image_size=(200, 200), channels=3, optimizer="rmsprop", learning_rate=1e-4, epochs=29, head="binary",
            min_image_size=94,
            notes="augmentation + 5 conv blocks; 622,753 params at 200x200x3; 80/20 split seed 213",
        ),
        Preset(
            "jedi-sith-ternary", "Jedi / Sith / Neither ternary CNN", "jedi_sith_neither_ternary",
            build_jedi_sith_ternary, image_size=(400, 400), channels=3, epochs=95, class_weights="notebook",
            min_image_size=94,
            notes="Dense(3201); 20,596,647 params at 400x400x3 with 3 classes; class weights (1/n_c)(N/2)",
        ),
        Preset(
            "mnist-lab", "MNIST CNN lab", "mnist_cnn_lab_transfer_xception", build_mnist_lab,
            epochs=5, batch_size=512, label_mode="categorical", min_image_size=16,
            notes="two 8x8 convs; inputs scaled to [-1, 1]; 99.16% MNIST test",
        ),
        Preset(
            "cats-dogs-1", "Cats vs dogs model 1", "cats_vs_dogs_blog", build_cats_dogs_1,
            image_size=(160, 160), epochs=20, head="logits", min_image_size=10,
            notes="no input scaling, as in the blog",
        ),
        Preset(
            "cats-dogs-2", "Cats vs dogs model 2 (augmentation)", "cats_vs_dogs_blog", build_cats_dogs_2,
            image_size=(160, 160), epochs=20, head="logits", min_image_size=10,
        ),
        Preset(
            "cats-dogs-3", "Cats vs dogs model 3 (preprocessing)", "cats_vs_dogs_blog", build_cats_dogs_3,
            image_size=(160, 160), channels=3, epochs=20, head="logits", min_image_size=32,
        ),
        Preset(
            "mobilenetv2-transfer", "MobileNetV2 transfer learning", "cats_vs_dogs_blog",
            build_mobilenetv2_transfer, image_size=(160, 160), channels=3, epochs=20, head="logits",
            transfer="mobilenet_v2", min_image_size=32, notes="frozen ImageNet base; 96% cats-vs-dogs test",
        ),
        Preset(
            "xception-transfer", "Xception transfer learning", "mnist_cnn_lab_transfer_xception",
            build_xception_transfer, image_size=(299, 299), channels=3, epochs=10, label_mode="categorical",
            transfer="xception", min_image_size=71, notes="early stopping recommended",
        ),
        Preset(
            "fashion-dense", "Fashion-MNIST dense network", "tensorflow_intro_fashion_mnist", build_fashion_dense,
            epochs=5, notes="/255 scaling; pair with stop-at-target accuracy",
        ),
        Preset(
            "fashion-conv64", "Fashion-MNIST first convolution", "tensorflow_intro_fashion_mnist",
            build_fashion_conv64, epochs=5,
        ),
        Preset(
            "fashion-cnn", "Fashion-MNIST CNN", "tensorflow_intro_fashion_mnist", build_fashion_cnn,
            epochs=10, head="logits", min_image_size=20,
        ),
        Preset(
            "horses-humans", "Horses or humans CNN", "tensorflow_intro_fashion_mnist", build_horses_humans,
            image_size=(150, 150), optimizer="rmsprop", epochs=15, head="binary", min_image_size=22,
            notes="300x300 in the intro, 150x150 when shrunk; rescale 1/255",
        ),
        Preset("custom", "Custom (builder)", "ConvNet Studio", build_custom),
    ]
}  # fmt: skip


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


def output_kind(preset: str, num_classes: int) -> str:
    """The head a preset gets for this many classes: sigmoid, softmax or logits."""
    head = get_preset(preset).head
    if head == "binary":
        return "sigmoid" if num_classes == 2 else "softmax"
    return head


def build_model(
    preset: str,
    input_shape: Shape,
    num_classes: int,
    *,
    weights: str | None = "imagenet",
    builder: BuilderSpec | None = None,
) -> keras.Model:
    """Build (not compile) a preset for this dataset's input shape and class count."""
    p = get_preset(preset)
    if num_classes < 2:
        raise UserError("need at least two classes to train a classifier")
    h, w, c = input_shape
    floor = min_image_side(preset, builder if preset == "custom" else None)
    if min(h, w) < floor:
        raise UserError(f"images too small for {preset}: it needs at least {floor}x{floor}; got {h}x{w}")
    if p.transfer and c != 3:
        raise UserError(f"{preset} needs 3-channel (RGB) input")
    kwargs: dict = {"weights": weights} if p.transfer else {}
    if preset == "custom":
        kwargs["spec"] = builder
    try:
        return p.build(tuple(input_shape), num_classes, **kwargs)
    except ValueError as exc:  # e.g. feature maps shrink below the kernel size
        raise UserError(f"{preset} does not fit {h}x{w}x{c} images: {first_line(exc)}") from None


TRANSFER_MIN_SIDE = {"mobilenet_v2": 32, "xception": 71}  # what keras.applications documents and enforces


def _custom_min_side(spec: BuilderSpec) -> int:
    """build_custom's own rule: each block needs a side of at least the kernel, then halves it when it can."""
    for side in range(1, 4097):
        s, ok = side, True
        for _ in range(spec.conv_blocks):
            if s < spec.kernel_size:
                ok = False
                break
            if s >= 2:
                s //= 2
        if ok:
            return side
    return 4097


# The smallest side each fixed preset builds at, as `computed_min_side` finds it (a test keeps them equal): a
# table, so checking a request needs no TensorFlow (building the model to find out cost ~1 s per run).
MIN_IMAGE_SIDE = {
    "fast": 4, "small-best": 4, "jedi-sith-binary": 94, "jedi-sith-ternary": 94, "mnist-lab": 16, "cats-dogs-1": 10,
    "cats-dogs-2": 10, "cats-dogs-3": 22, "fashion-dense": 1, "fashion-conv64": 4, "fashion-cnn": 18,
    "horses-humans": 22,
}  # fmt: skip


@functools.lru_cache(maxsize=64)
def min_image_side(preset: str, builder: BuilderSpec | None = None) -> int:
    """The smallest image side a preset builds at, so a bad size is refused before a run exists.

    Transfer bases have documented minimums; the small builder follows its own rule; the fixed presets are in
    MIN_IMAGE_SIDE.
    """
    p = get_preset(preset)
    if p.transfer:
        return TRANSFER_MIN_SIDE.get(p.transfer, p.min_image_size)
    if preset == "custom":
        return _custom_min_side(builder or BuilderSpec())
    return MIN_IMAGE_SIDE.get(preset) or computed_min_side(preset)


def computed_min_side(preset: str) -> int:
    """Build the preset once at its declared floor (a tiny model) and walk its config's shapes down to the
    smallest side whose every convolution and pooling still has an output."""
    p = get_preset(preset)
    from core.models.loading import ConfigWalk

    try:
        config = keras.saving.serialize_keras_object(p.build((p.min_image_size, p.min_image_size, 3), 3))
    except Exception:
        return p.min_image_size
    inputs = [layer for layer in config["config"]["layers"] if layer.get("class_name") == "InputLayer"]
    for side in range(1, p.min_image_size + 1):
        for layer in inputs:
            layer["config"]["batch_shape"] = [None, side, side, 3]
        if ConfigWalk().model(config)[0] is not None:
            return side
    return p.min_image_size


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    table = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}
    if name not in table:
        raise UserError(f"unknown optimizer {name!r}; choose adam, rmsprop or sgd")
    return table[name](learning_rate=learning_rate)


def loss_for(kind: str, label_mode: str, label_smoothing: float = 0.0) -> keras.losses.Loss:
    """The notebook's loss for this head: binary CE, sparse/categorical CE, from logits where the head is linear.

    Label smoothing needs one-hot targets (Keras' sparse loss has none), so a run with smoothing trains with
    label_mode "categorical" (see `trainer.resolve`)."""
    if kind == "sigmoid":
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
    from_logits = kind == "logits"
    if label_mode == "categorical":
        return keras.losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing)
    if label_smoothing:
        raise UserError("label smoothing needs one-hot (categorical) labels")
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


def compile_model(
    model: keras.Model,
    kind: str,
    label_mode: str,
    optimizer: str,
    learning_rate: float,
    label_smoothing: float = 0.0,
) -> None:
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss=loss_for(kind, label_mode, label_smoothing),
        metrics=["accuracy"],
        jit_compile=jit_setting(),
    )


XLA_ENV = "CONVNET_XLA"  # "1": let Keras compile each training step with XLA where it can (a GPU)


def jit_setting() -> str | bool:
    """XLA off unless asked for. On a GPU, Keras' default ("auto") compiles every step with XLA: measured on an
    H100, the first epoch of `fast` took 124-154 s (5.9 s without XLA) for steady epochs of 1.1 vs 1.8 s, so it
    pays off only after ~100 epochs, and a learner's runs are short. On a CPU "auto" already means no XLA."""
    return "auto" if os.environ.get(XLA_ENV) == "1" else False


def summary_rows(model: keras.Model) -> list[dict]:
    """model.summary() as rows (layer, type, output shape, params) for a table."""
    rows = []
    for layer in model.layers:
        try:
            shape = str(tuple(layer.output.shape))
        except (AttributeError, ValueError):
            shape = "?"
        rows.append(
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "output shape": shape.replace("None", "batch"),
                "params": int(layer.count_params()) if layer.built else 0,
            }
        )
    return rows


def param_counts(model: keras.Model) -> dict[str, int]:
    trainable = sum(int(math.prod(w.shape)) for w in model.trainable_weights)
    total = int(model.count_params())
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable}
