"""Built-in array datasets: Keras' MNIST / Fashion-MNIST / CIFAR-10 and scikit-learn's digits.

Keras datasets download once into ~/.keras/datasets, and only when a person asks for it; offline and absent, the
message names the file and where to put it. Fashion-MNIST is read from Debian's package when installed.
"""

from __future__ import annotations

import gzip
import os
import socket
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import UserError, first_line

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
CIFAR_ARCHIVE = (
    "cifar-10-batches-py-target_archive"  # keras.datasets.cifar10 downloads its .tar.gz to this name
)


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


def placements(name: str) -> list[tuple[str, Path]]:
    """(URL, where it must lie) for every file Keras needs to load `name` without the network.

    CIFAR-10's archive keeps the name Keras 3 gives its download (`<fname>_archive`); Keras unpacks it on load.
    """
    src = SOURCES[name]
    root = keras_cache_dir()
    if name == "fashion_mnist":
        return [(src.url + f, root / src.cache_file / f) for pair in FASHION_FILES.values() for f in pair]
    if name == "cifar10":
        return [(src.url, root / CIFAR_ARCHIVE)]
    return [(src.url, root / src.cache_file)] if src.cache_file else []


def _debian_fashion_present() -> bool:
    return all((DEBIAN_FASHION / f).is_file() for pair in FASHION_FILES.values() for f in pair)


def is_available(name: str) -> bool:
    """True when the data can be read without the network."""
    src = SOURCES[name]
    if not src.cache_file:
        return True
    if name == "fashion_mnist" and _debian_fashion_present():
        return True
    return all(path.is_file() for _, path in placements(name))


def _place_hint(name: str) -> str:
    """Exactly which file goes where, so a machine without internet can be given the data by hand."""
    files = placements(name)
    if name == "cifar10":
        url, path = files[0]
        return f"put {url} at {path} (that exact name; Keras unpacks it)"
    if len(files) == 1:
        url, path = files[0]
        return f"put the file {url} at {path}"
    folder = files[0][1].parent
    return f"put the files {', '.join(p.name for _, p in files)} from {SOURCES[name].url} in {folder}"


def missing_message(name: str) -> str:
    src = SOURCES[name]
    extra = " or `apt-get install dataset-fashion-mnist`" if name == "fashion_mnist" else ""
    missing = next((p for _, p in placements(name) if not p.is_file()), keras_cache_dir() / src.cache_file)
    label = "cifar-10-batches-py" if name == "cifar10" else missing.name
    return (
        f"{src.title} is not downloaded: {label} is missing ({missing}). Click Download on the Datasets page "
        f"(needs internet, {src.size_note}), run `python -m core download {name}`{extra}, "
        f"or {_place_hint(name)}."
    )


def offline_message(name: str, reason: str) -> str:
    """What to do when a download cannot reach its server: no loop back to "click Download"."""
    src = SOURCES[name]
    return (
        f"cannot download {src.title}: the network is unreachable ({reason}). "
        f"On a machine with internet, download it and {_place_hint(name)}; then try again."
    )


def network_problem(url: str, timeout: float = 5.0) -> str | None:
    """None when url's server accepts a connection, else why not. CONVNET_OFFLINE=1 says offline at once.

    getaddrinfo ignores socket timeouts and can hang for ~25 s offline, so the probe runs in a daemon thread.
    """
    if os.environ.get("CONVNET_OFFLINE") == "1":
        return "CONVNET_OFFLINE=1"
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return f"bad address {url}"
    result: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except OSError as exc:
            result.append(f"cannot connect to {host}:{port}: {exc.strerror or type(exc).__name__}")

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 1.0)
    return result[0] if result else f"no answer from {host}:{port} within {timeout:g} s"


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
    if not is_available(name):
        if not allow_download:
            raise UserError(missing_message(name))
        for url in dict.fromkeys(url for url, _ in placements(name)):
            problem = network_problem(url)
            if problem:
                raise UserError(offline_message(name, problem))
    import keras

    loader = {
        "mnist": keras.datasets.mnist,
        "fashion_mnist": keras.datasets.fashion_mnist,
        "cifar10": keras.datasets.cifar10,
    }
    try:
        (xtr, ytr), (xte, yte) = loader[name].load_data()
    except Exception as exc:  # Keras wraps URL errors in a bare Exception; partial files, bad hashes, ...
        first = first_line(exc, 200)
        if "URL fetch failure" in first or isinstance(exc, OSError):
            raise UserError(offline_message(name, first)) from None
        raise UserError(f"could not load {SOURCES[name].title} ({first}); {_place_hint(name)}") from None

    def fix(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = x if x.ndim == 4 else x[..., None]
        return x.astype(np.uint8), y.reshape(-1).astype(np.int64)

    return {"train": fix(xtr, ytr), "test": fix(xte, yte)}
