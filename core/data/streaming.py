"""Folder datasets bigger than memory: stream them from disk through tf.data instead of decoding them into RAM.

When the decoded training + validation images (N x H x W x C bytes of uint8) would exceed CONVNET_STREAM_ABOVE_BYTES
(default 2 GiB), training reads file paths and decodes each image with `core.data.datasets`' own decode (the very
`core.data.images` code prediction uses, called through tf.numpy_function), so what the model trains on is pixel for pixel
what it will be shown later. The first epoch writes the decoded images to a cache file on disk
(<run>/cache/train.*, <run>/cache/val.*); later epochs read that file, not the images, and never hold more than a
bounded shuffle buffer in memory. Below the limit nothing changes: `core.data.datasets.load_splits` decodes once into RAM.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core import validation
from core.data import datasets

if TYPE_CHECKING:
    from core.training.run_config import RunConfig

STREAM_ENV = "CONVNET_STREAM_ABOVE_BYTES"
DEFAULT_STREAM_ABOVE = 2 * 1024**3
SHUFFLE_BUFFER_BYTES = 256 * 1024**2  # decoded images held for shuffling, whatever the dataset's size
MAX_SHUFFLE_BUFFER = 20000  # as core.data.datasets.make_tf_dataset


@dataclass
class StreamSplit:
    """A split read from disk: the files and labels; the pixels are decoded by the tf.data pipeline."""

    paths: list[str]
    y: np.ndarray
    image_size: tuple[int, int]
    channels: int
    cache_file: Path

    def __len__(self) -> int:
        return len(self.y)


def stream_limit() -> int:
    """Decoded bytes above which a folder dataset is streamed (CONVNET_STREAM_ABOVE_BYTES)."""
    return validation.env_bytes(STREAM_ENV, DEFAULT_STREAM_ABOVE)


def decoded_bytes(n_images: int, image_size: tuple[int, int], channels: int) -> int:
    h, w = image_size
    return int(n_images) * int(h) * int(w) * int(channels)


def split_items(info: datasets.DatasetInfo, val_split: float, seed: int, splits: tuple[str, ...],
                limit: int | None) -> dict[str, list[tuple[Path, int]]]:  # fmt: skip
    """(path, label) per split, picked exactly as `datasets.load_splits` picks them (same split, same sampling)."""
    lists = datasets.split_file_lists(info, val_split, seed)
    out = {}
    for s in splits:
        items = lists[s]
        if limit and len(items) > limit:
            items = random.Random(seed).sample(items, limit)
        out[s] = items
    return out


def _stream_split(items: list[tuple[Path, int]], image_size, channels: int, cache_file: Path,
                  mix_seed: int | None) -> StreamSplit:  # fmt: skip
    items = list(items)
    if (
        mix_seed is not None
    ):  # classes mixed once, so the cache file is not class by class (shuffle is bounded)
        random.Random(mix_seed).shuffle(items)
    return StreamSplit([str(p) for p, _ in items], np.array([lbl for _, lbl in items], dtype=np.int64),
                       (int(image_size[0]), int(image_size[1])), int(channels), Path(cache_file))  # fmt: skip


def training_splits(cfg: RunConfig, cache_dir: Path,
                    progress: Callable[[float], None] | None = None) -> tuple[Any, Any, bool]:  # fmt: skip
    """(train, val, streamed): StreamSplits over files when the decoded images would exceed the limit,
    else the decoded arrays `datasets.load_splits` returns. Both work with `len()`, `.y` and `make_dataset`.
    `progress(fraction)` follows the decoding of images into RAM (nothing to report when streamed or cached)."""
    h, w, c = cfg.input_shape
    info = datasets.get_dataset(cfg.dataset)
    if info.kind == "folder":
        items = split_items(info, cfg.val_split, cfg.seed, ("train", "val"), cfg.limit)
        total = len(items["train"]) + len(items["val"])
        if decoded_bytes(total, (h, w), c) > stream_limit():
            cache_dir = Path(cache_dir)
            cache_dir.mkdir(parents=True, exist_ok=True)
            for stale in cache_dir.glob("*.lockfile"):  # left by a killed job; one trainer per run directory
                stale.unlink(missing_ok=True)
            train = _stream_split(items["train"], (h, w), c, cache_dir / "train", mix_seed=cfg.seed)
            val = _stream_split(items["val"], (h, w), c, cache_dir / "val", mix_seed=None)
            return train, val, True
    data = datasets.load_splits(cfg.dataset, (h, w), c, val_split=cfg.val_split, seed=cfg.seed,
                                splits=("train", "val"), limit=cfg.limit, progress=progress)  # fmt: skip
    return data["train"], data["val"], False


def make_dataset(data: Any, batch_size: int, *, shuffle: bool, seed: int = 0, num_classes: int = 0,
                 label_mode: str = "sparse"):  # fmt: skip
    """Float32 batches for either kind of split: streamed from disk, or `datasets.make_tf_dataset` for arrays."""
    if not isinstance(data, StreamSplit):
        return datasets.make_tf_dataset(data, batch_size, shuffle=shuffle, seed=seed, num_classes=num_classes,
                                        label_mode=label_mode)  # fmt: skip
    return stream_dataset(data, batch_size, shuffle=shuffle, seed=seed, num_classes=num_classes,
                          label_mode=label_mode)  # fmt: skip


def stream_dataset(split: StreamSplit, batch_size: int, *, shuffle: bool, seed: int = 0, num_classes: int = 0,
                   label_mode: str = "sparse"):  # fmt: skip
    """paths -> decode (core.data.images, in parallel) -> drop unreadable -> cache file -> shuffle -> batch -> prefetch."""
    import tensorflow as tf

    h, w = split.image_size
    c = split.channels

    def decode(path: bytes) -> tuple[np.ndarray, bool]:
        a = datasets.decode_file(Path(path.decode()), (h, w), c)
        if a is None:  # unreadable: dropped below, as load_splits drops it
            return np.zeros((h, w, c), np.uint8), False
        return a, True

    def load(path, label):
        x, ok = tf.numpy_function(decode, [path], (tf.uint8, tf.bool), stateful=False)
        return tf.ensure_shape(x, (h, w, c)), tf.ensure_shape(ok, ()), label

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(split.paths, dtype=tf.string), split.y))

    def readable(x, ok, label):
        return ok

    def drop_flag(x, ok, label):
        return x, label

    ds = ds.map(load, num_parallel_calls=datasets.DECODE_CALLS, deterministic=True)
    ds = ds.filter(readable).map(drop_flag)
    split.cache_file.parent.mkdir(parents=True, exist_ok=True)
    ds = ds.cache(str(split.cache_file))
    if shuffle:
        per_image = max(1, h * w * c)
        buffer = max(1, min(len(split), MAX_SHUFFLE_BUFFER, SHUFFLE_BUFFER_BYTES // per_image))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)

    def to_float(a, b):
        if label_mode == "categorical":
            b = tf.one_hot(b, num_classes, dtype=tf.float32)
        return tf.cast(a, tf.float32), b

    ds = ds.batch(batch_size).map(to_float, num_parallel_calls=datasets.GATHER_CALLS)
    return datasets.without_autotune(ds.prefetch(datasets.PREFETCH_BATCHES))


def cache_files(split: StreamSplit) -> list[Path]:
    """The files tf.data wrote for a split's cache (an index and one or more data shards)."""
    return sorted(split.cache_file.parent.glob(split.cache_file.name + ".*"))
