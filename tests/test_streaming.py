"""Streaming folder datasets from disk: the same pixels as the in-memory path, a cache file, a model that works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core import paths
from core.data import datasets, streaming
from core.errors import UserError
from core.models import loading
from core.training import runs, trainer
from tests.helpers import make_dataset, make_image_folder, train_tiny_run


def _with_broken_file(name: str) -> None:
    (paths.data_dir() / name / "circle" / "broken.png").write_bytes(b"not a png at all")


def _batches(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_streamed_pipeline_yields_exactly_the_pixels_load_splits_decodes(monkeypatch, tmp_path):
    make_image_folder(paths.data_dir() / "rgb", per_class=9, size=16, rgb=True)
    _with_broken_file("rgb")
    cfg = trainer.resolve(trainer.TrainRequest(dataset="rgb", image_size=(12, 10), channels=3, limit=20))
    monkeypatch.setenv(streaming.STREAM_ENV, "1e12")
    train_mem, val_mem, streamed = streaming.training_splits(cfg, tmp_path / "cache")
    assert not streamed and isinstance(train_mem, datasets.SplitData)
    monkeypatch.setenv(streaming.STREAM_ENV, "100")
    train, val, streamed = streaming.training_splits(cfg, tmp_path / "cache")
    assert streamed and isinstance(train, streaming.StreamSplit)
    readable = lambda split: sorted(p for p in split.paths if not p.endswith("broken.png"))  # noqa: E731
    assert readable(train) == sorted(train_mem.paths) and readable(val) == sorted(val_mem.paths)
    assert len(train.paths) + len(val.paths) == len(train_mem) + len(val_mem) + 1
    # validation keeps its order: batch for batch the very arrays load_splits decoded (with core.data.images)
    x, y = _batches(streaming.make_dataset(val, 4, shuffle=False, num_classes=3))
    np.testing.assert_array_equal(x, val_mem.x.astype(np.float32))
    np.testing.assert_array_equal(y, val_mem.y)
    # fixed parallelism, no autotuner (datasets.without_autotune: it stalled every new epoch's iterator)
    assert streaming.make_dataset(train, 4, shuffle=True, num_classes=3).options().autotune.enabled is False
    # training mixes its files once before the cache; per file, the same pixels and label; the broken file dropped
    x, y = _batches(streaming.make_dataset(train, 4, shuffle=False, num_classes=3, label_mode="categorical"))
    kept = [p for p in train.paths if not p.endswith("broken.png")]
    assert len(x) == len(train_mem) == len(kept) and y.shape == (len(kept), 3)
    by_path = {p: (a, lbl) for p, a, lbl in zip(train_mem.paths, train_mem.x, train_mem.y, strict=True)}
    for p, a, onehot in zip(kept, x, y, strict=True):
        np.testing.assert_array_equal(a, by_path[p][0].astype(np.float32))
        assert int(np.argmax(onehot)) == by_path[p][1]
    assert [f.name for f in streaming.cache_files(train)] == ["train.data-00000-of-00001", "train.index"]
    # a second pass reads the cache file, not the images
    for p in train.paths:
        Path(p).unlink()
    x2, _ = _batches(streaming.make_dataset(train, 4, shuffle=False, num_classes=3, label_mode="categorical"))
    np.testing.assert_array_equal(x2, x)


def test_training_over_the_limit_streams_caches_on_disk_and_gives_a_working_model(monkeypatch):
    make_dataset("big", per_class=10)
    _with_broken_file("big")
    monkeypatch.setenv(streaming.STREAM_ENV, "64")
    run = train_tiny_run("big", epochs=3, learning_rate=0.01)
    assert run.status["streamed"] is True and run.status["state"] == "completed"
    cache = sorted(p.name for p in (run.path / "cache").iterdir())
    assert {"train.index", "val.index"} <= set(cache) and any(n.startswith("train.data-") for n in cache)
    assert (run.path / "cache" / "train.data-00000-of-00001").stat().st_size >= 16 * 16 * 20
    epochs, _ = runs.read_progress(run.path)
    assert len(epochs) == 3 and epochs[-1]["accuracy"] > 0.6  # the blob's place is easy to learn
    lm = loading.load_run_model(run)
    data = datasets.load_splits("big", (16, 16), 1, splits=("train",))["train"]
    probs = np.asarray(lm.model(data.x.astype(np.float32), training=False))
    assert probs.shape == (len(data), 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert (probs.argmax(axis=1) == data.y).mean() > 0.6


def test_the_limit_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv(streaming.STREAM_ENV, raising=False)
    assert streaming.stream_limit() == streaming.DEFAULT_STREAM_ABOVE == 2 * 1024**3
    assert streaming.decoded_bytes(1000, (224, 224), 3) == 150_528_000
    monkeypatch.setenv(streaming.STREAM_ENV, "lots")
    with pytest.raises(UserError, match="number of bytes"):
        streaming.stream_limit()
    monkeypatch.setenv(streaming.STREAM_ENV, "-1")
    with pytest.raises(UserError, match="negative"):
        streaming.stream_limit()
