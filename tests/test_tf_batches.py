"""Batches gathered by index (datasets.make_tf_dataset) are the batches slicing the arrays into TensorFlow gave:
same order under the same seed, every epoch, with sparse and one-hot labels, and a last partial batch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from core.data import datasets


def _sliced(x: np.ndarray, y: np.ndarray, batch: int, shuffle: bool, seed: int):
    """What make_tf_dataset built before: the whole arrays copied into TensorFlow, then shuffled and batched."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(min(len(x), 20000), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch).map(lambda a, b: (tf.cast(a, tf.float32), b))


def _epochs(ds, n: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    return [[(a.numpy(), b.numpy()) for a, b in ds] for _ in range(n)]


def test_gathered_batches_equal_the_sliced_ones_epoch_after_epoch():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (103, 5, 4, 3), dtype=np.uint8)
    y = rng.integers(0, 4, 103).astype(np.int64)
    data = datasets.SplitData(x, y)
    for shuffle in (True, False):
        got = _epochs(datasets.make_tf_dataset(data, 16, shuffle=shuffle, seed=7), 3)
        want = _epochs(_sliced(x, y, 16, shuffle, 7), 3)
        assert [len(e) for e in got] == [7, 7, 7] and got[0][-1][0].shape == (7, 5, 4, 3)
        for ge, we in zip(got, want, strict=True):
            for (gx, gy), (wx, wy) in zip(ge, we, strict=True):
                assert gx.dtype == np.float32
                np.testing.assert_array_equal(gx, wx)
                np.testing.assert_array_equal(gy, wy)
        if shuffle:
            assert not np.array_equal(got[0][0][1], got[1][0][1]), "every epoch reshuffles"
    onehot = _epochs(
        datasets.make_tf_dataset(data, 50, shuffle=False, num_classes=4, label_mode="categorical"), 1
    )
    np.testing.assert_array_equal(np.concatenate([b for _a, b in onehot[0]]), np.eye(4, dtype=np.float32)[y])


def test_the_training_pipelines_run_without_the_autotuner():
    """Keras makes a new iterator every epoch; with tf.data's autotuner on, destroying the last one waited for
    the autotuner's sleeping thread, 15-17 s at the start of most epochs of long runs (datasets.without_autotune).
    """
    data = datasets.SplitData(np.zeros((10, 4, 4, 1), np.uint8), np.arange(10) % 2)
    for shuffle in (True, False):
        ds = datasets.make_tf_dataset(data, 4, shuffle=shuffle, seed=1)
        assert ds.options().autotune.enabled is False
        assert sum(len(b) for _x, b in ds) == 10
