"""Built-in array datasets: Keras' MNIST / Fashion-MNIST / CIFAR-10 and scikit-learn's digits.

Keras datasets download once into ~/.keras/datasets, and only when a person asks for it; offline and absent, the
message names the file and where to put it. Fashion-MNIST is read from Debian's package when installed.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import UserError

DEBIAN_FASHION = Path(os.environ.get("CONVNET_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_CLASSES = [
    "T-shirt_top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle_boot",
]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
DIGITS = [str(i) for i in range(10)]


@dataclass(frozen=True)
class ArraySource:
    name: str
    title: str
    class_names: list[str]
    shape: tuple[int, int, int]
    counts: tuple[int, int]  # train, test
    cache_file: str  # what must exist under ~/.keras/datasets (or "" when always available)
    url: str
    size_note: str


SOURCES: dict[str, ArraySource] = {
    s.name: s
    for s in [
        ArraySource("mnist", "MNIST digits (Keras)", DIGITS, (28, 28, 1), (60000, 10000), "mnist.npz",
                    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz", "11 MB"),
        ArraySource("fashion_mnist", "Fashion-MNIST (Keras)", FASHION_CLASSES, (28, 28, 1), (60000, 10000),
                    "fashion-mnist", "https://storage.googleapis.com/tensorflow/tf-keras-datasets/", "30 MB"),
        ArraySource("cifar10", "CIFAR-10 (Keras)", CIFAR10_CLASSES, (32, 32, 3), (50000, 10000),
                    "cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "163 MB"),
        ArraySource("digits", "scikit-learn digits (8x8, offline)", DIGITS, (8, 8, 1), (1797, 0), "", "", "bundled"),
    ]
}  # fmt: skip


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def _debian_fashion_present() -> bool:
    return all((DEBIAN_FASHION / f).is_file() for pair in FASHION_FILES.values() for f in pair)


def is_available(name: str) -> bool:
    """True when the data can be read without the network."""
    src = SOURCES[name]
    if not src.cache_file:
        return True
    if name == "fashion_mnist" and _debian_fashion_present():
        return True
    return (keras_cache_dir() / src.cache_file).exists()


def missing_message(name: str) -> str:
    src = SOURCES[name]
    where = keras_cache_dir() / src.cache_file
    extra = " or `apt-get install dataset-fashion-mnist`" if name == "fashion_mnist" else ""
    return (
        f"{src.title} is not downloaded: {where} is missing. Click Download on the Datasets page "
        f"(needs internet, {src.size_note}), run `python -m core download {name}`{extra}, "
        f"or put the file from {src.url} there."
    )


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_arrays(name: str, *, allow_download: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (x uint8 (N,H,W,C), y int64), "test": ...}; raises UserError when absent and not allowed."""
    if name not in SOURCES:
        raise UserError(f"unknown built-in dataset {name!r}")
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
        return {"train": (x, d.target.astype(np.int64))}
    if name == "fashion_mnist" and _debian_fashion_present():
        out = {}
        for split, (img, lab) in FASHION_FILES.items():
            out[split] = (
                _read_idx(DEBIAN_FASHION / img)[..., None],
                _read_idx(DEBIAN_FASHION / lab).astype(np.int64),
            )
        return out
    if not is_available(name) and not allow_download:
        raise UserError(missing_message(name))
    import keras

    loader = {
        "mnist": keras.datasets.mnist,
        "fashion_mnist": keras.datasets.fashion_mnist,
        "cifar10": keras.datasets.cifar10,
    }
    try:
        (xtr, ytr), (xte, yte) = loader[name].load_data()
    except Exception as exc:  # urllib errors, partial files, ...
        raise UserError(f"{missing_message(name)} ({type(exc).__name__})") from None

    def fix(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = x if x.ndim == 4 else x[..., None]
        return x.astype(np.uint8), y.reshape(-1).astype(np.int64)

    return {"train": fix(xtr, ytr), "test": fix(xte, yte)}
