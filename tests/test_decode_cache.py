"""The decode cache: a second load opens no image, gives the very same arrays, and any file change invalidates it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data import datasets, decode_cache
from core.errors import UserError
from core.training import runs
from tests.helpers import make_dataset, train_tiny_run


def _no_decoding(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("an image was decoded although the cache should have had it")

    monkeypatch.setattr(datasets, "decode_file", refuse)


def _uncached(name: str, size, channels: int, **kwargs) -> dict[str, datasets.SplitData]:
    old = os.environ.get(decode_cache.CACHE_ENV)
    os.environ[decode_cache.CACHE_ENV] = "0"
    try:
        return datasets.load_splits(name, size, channels, **kwargs)
    finally:
        if old is None:
            del os.environ[decode_cache.CACHE_ENV]
        else:
            os.environ[decode_cache.CACHE_ENV] = old


def _same(a: dict[str, datasets.SplitData], b: dict[str, datasets.SplitData]) -> None:
    assert a.keys() == b.keys()
    for s in a:
        assert np.array_equal(a[s].x, b[s].x), s
        assert a[s].x.dtype == np.uint8
        assert np.array_equal(a[s].y, b[s].y), s
        assert a[s].paths == b[s].paths, s


def _entries() -> list[Path]:
    return sorted(decode_cache.cache_dir().glob("*.npy"))


def test_second_load_is_a_hit_that_opens_no_image_and_matches_an_uncached_decode(monkeypatch):
    name = make_dataset("cached", rgb=True, per_class=6, split=True)
    expected = _uncached(name, (12, 10), 3, val_split=0.25, seed=3)
    assert not _entries()  # cap 0: nothing written

    first = datasets.load_splits(name, (12, 10), 3, val_split=0.25, seed=3)
    _same(first, expected)
    assert len(_entries()) == 1
    assert decode_cache.cache_dir().is_relative_to(Path(os.environ["CONVNET_RUNS_DIR"]))

    _no_decoding(monkeypatch)
    second = datasets.load_splits(name, (12, 10), 3, val_split=0.25, seed=3)
    _same(second, expected)
    assert not isinstance(second["train"].x, np.memmap)  # a copy in RAM, not a view of the cache file
    # a subset (one split, a limit) comes from the same entry too
    only_val = datasets.load_splits(name, (12, 10), 3, val_split=0.25, seed=3, splits=("val",))
    _same(only_val, {"val": expected["val"]})


def test_unreadable_files_are_dropped_exactly_as_without_the_cache(monkeypatch):
    name = make_dataset("messy", per_class=5)
    root = Path(os.environ["CONVNET_DATA_DIR"]) / name
    (root / "circle" / "broken.png").write_bytes(b"not a png")
    expected = _uncached(name, (16, 16), 1, val_split=0.0, splits=("train",))
    assert len(expected["train"]) == 15
    datasets.load_splits(name, (16, 16), 1, val_split=0.0, splits=("train",))
    _no_decoding(monkeypatch)
    _same(datasets.load_splits(name, (16, 16), 1, val_split=0.0, splits=("train",)), expected)


def _load(name: str, size=(8, 8), channels: int = 1) -> dict[str, datasets.SplitData]:
    return datasets.load_splits(name, size, channels, splits=("train", "val"))


def test_a_changed_added_or_removed_file_invalidates_the_entry():
    name = make_dataset("moving", per_class=4)
    root = Path(os.environ["CONVNET_DATA_DIR"]) / name
    _load(name)
    keys = {p.stem for p in _entries()}
    assert len(keys) == 1

    changed = root / "square" / "square_000.png"
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on a coarse clock
    after_change = _load(name)
    keys_after_change = {p.stem for p in _entries()}
    assert len(keys_after_change) == 2
    row = [i for s in ("train", "val") for i, p in enumerate(after_change[s].paths) if p == str(changed)]
    assert row  # the changed file's new pixels are what is served
    split = "train" if str(changed) in after_change["train"].paths else "val"
    assert after_change[split].x[after_change[split].paths.index(str(changed))].min() == 255

    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "square" / "square_new.png")
    added = _load(name)
    assert sum(len(d) for d in added.values()) == 13
    assert len({p.stem for p in _entries()}) == 3

    (root / "circle" / "circle_000.png").unlink()
    removed = _load(name)
    assert sum(len(d) for d in removed.values()) == 12
    assert len({p.stem for p in _entries()}) == 4


def test_each_size_and_channel_count_is_its_own_entry(monkeypatch):
    name = make_dataset("sizes", rgb=True, per_class=3)
    a = _load(name, (8, 8), 1)
    b = _load(name, (8, 8), 3)
    c = _load(name, (10, 6), 3)
    assert len(_entries()) == 3
    assert a["train"].x.shape[1:] == (8, 8, 1) and b["train"].x.shape[1:] == (8, 8, 3)
    assert c["train"].x.shape[1:] == (10, 6, 3)
    _no_decoding(monkeypatch)
    _same(_load(name, (8, 8), 1), a)
    _same(_load(name, (10, 6), 3), c)


def test_lru_eviction_under_a_small_cap_keeps_the_most_recently_used(monkeypatch):
    names = [make_dataset(f"set{i}", per_class=3, seed=i) for i in range(3)]
    _load(names[0])
    (npy,) = _entries()
    one_entry = npy.stat().st_size + npy.with_suffix(".json").stat().st_size
    monkeypatch.setenv(decode_cache.CACHE_ENV, str(int(2.5 * one_entry)))  # room for two entries, not three
    time.sleep(0.01)
    _load(names[1])
    time.sleep(0.01)
    real_decode = datasets.decode_file
    _no_decoding(monkeypatch)
    _load(names[0])  # a hit: now names[1] is the least recently used
    monkeypatch.setattr(datasets, "decode_file", real_decode)
    time.sleep(0.01)
    _load(names[2])
    assert len(_entries()) == 2
    _no_decoding(monkeypatch)
    _load(names[0])
    _load(names[2])
    with pytest.raises(AssertionError, match="decoded"):
        _load(names[1])  # evicted


def test_a_dataset_bigger_than_the_cap_and_cap_zero_are_not_cached(monkeypatch):
    name = make_dataset("big", per_class=3)
    monkeypatch.setenv(decode_cache.CACHE_ENV, "100")  # 9 images of 8x8 = 576 bytes
    assert len(_load(name)["train"]) > 0
    assert not _entries()
    monkeypatch.setenv(decode_cache.CACHE_ENV, "0")
    _load(name)
    assert not decode_cache.cache_dir().exists() or not _entries()
    monkeypatch.setenv(decode_cache.CACHE_ENV, "lots")
    with pytest.raises(UserError, match=decode_cache.CACHE_ENV):
        _load(name)


@pytest.mark.parametrize(
    "damage", ["truncated npy", "garbage npy", "garbage json", "wrong shape json", "no json"]
)
def test_a_damaged_entry_is_a_miss_and_is_rewritten(damage):
    name = make_dataset("damaged", rgb=True, per_class=3)
    expected = _load(name, (8, 8), 3)
    (npy,) = _entries()
    meta = npy.with_suffix(".json")
    if damage == "truncated npy":
        npy.write_bytes(npy.read_bytes()[:200])
    elif damage == "garbage npy":
        npy.write_bytes(b"\x93NUMPY nonsense" * 20)
    elif damage == "garbage json":
        meta.write_text('{"shape": [9, 8')
    elif damage == "wrong shape json":
        text = meta.read_text().replace('"shape": [\n    9,', '"shape": [\n    10,')
        assert text != meta.read_text()
        meta.write_text(text)
    else:
        meta.unlink()
    info = datasets.get_dataset(name)
    files = [p for per in info.files.values() for fs in per.values() for p in fs]
    assert decode_cache.lookup(npy.stem, decode_cache.relative_paths(info.path, files)) is None
    _same(_load(name, (8, 8), 3), expected)  # decoded again, same pixels
    assert np.load(npy, mmap_mode="r").shape == (9, 8, 8, 3)  # and the entry is whole again


def test_a_small_sample_on_a_miss_decodes_only_what_it_needs(monkeypatch):
    name = make_dataset("sampled", per_class=10)
    few = datasets.load_splits(name, (8, 8), 1, splits=("test", "val"), limit=2)
    assert len(few["val"]) == 2 and not _entries()  # 2 of 30 images: not worth decoding all 30
    _load(name)
    _no_decoding(monkeypatch)
    again = datasets.load_splits(name, (8, 8), 1, splits=("test", "val"), limit=2)
    _same(again, few)  # now served from the entry the full load wrote


def test_progress_reports_fractions_up_to_one_on_a_miss():
    name = make_dataset("progress", per_class=3)
    seen: list[float] = []
    datasets.load_splits(name, (8, 8), 1, progress=seen.append)
    assert seen and seen[-1] == 1.0 and all(0 < f <= 1 for f in seen)


def test_eviction_never_touches_anything_outside_the_cache_folder(monkeypatch):
    name = make_dataset("neighbours", per_class=3)
    _load(name)
    runs_dir = Path(os.environ["CONVNET_RUNS_DIR"])
    outside = [
        runs_dir / "keep.npy",
        runs_dir / ".cache" / "other.npy",
        decode_cache.cache_dir().parent / "x.json",
    ]
    for p in outside:
        p.write_bytes(b"precious")
    monkeypatch.setenv(decode_cache.CACHE_ENV, "1")
    assert decode_cache.evict() and not _entries()
    assert all(p.read_bytes() == b"precious" for p in outside)


def test_a_second_training_run_reads_the_cache_and_the_first_reported_preparing(monkeypatch):
    name = make_dataset("trained", per_class=6)
    first = train_tiny_run(name)
    assert first.status.get("preparing") == 1.0  # the decode was followed in status.json
    assert len(_entries()) == 1
    _no_decoding(monkeypatch)
    second = train_tiny_run(name)
    assert second.status["train_images"] == first.status["train_images"]
    assert {r.run_id for r in runs.list_runs()} == {first.run_id, second.run_id}  # .cache is not a run


def test_eviction_clears_a_json_left_without_its_npy():
    name = make_dataset("lonely", per_class=3)
    _load(name)
    (npy,) = _entries()
    npy.unlink()
    stray = decode_cache.cache_dir() / "elsewhere.txt"
    stray.write_text("not ours to judge")
    decode_cache.evict()
    assert not list(decode_cache.cache_dir().glob("*.json")) and stray.exists()


def test_taking_rows_from_a_mapped_entry_reads_runs_and_survives_eviction(tmp_path):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 256, (40, 6, 5, 3), dtype=np.uint8)
    np.save(tmp_path / "e.npy", data)
    entry = decode_cache.Entry("k", np.load(tmp_path / "e.npy", mmap_mode="r"), np.ones(40, bool), [])
    rows = np.array(
        [0, 1, 2, 7, 8, 3, 39, 39, 20, 21, 22, 23, 5]
    )  # runs, gaps, a step back, a repeat, the last row
    taken = entry.take(rows)
    assert isinstance(taken, np.ndarray) and not isinstance(taken, np.memmap)
    assert np.array_equal(taken, data[rows])
    shuffled = rng.permutation(40)[
        :30
    ]  # a split's rows in file-list order: read in file order, put back in theirs
    assert np.array_equal(entry.take(shuffled), data[shuffled])
    assert entry.take(np.arange(0)).shape == (0, 6, 5, 3)
    if os.name != "nt":  # Windows refuses to remove a mapped file
        (tmp_path / "e.npy").unlink()  # another process evicted the entry: the mapping still holds the rows
        assert np.array_equal(entry.take(rows), data[rows])
