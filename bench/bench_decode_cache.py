"""Time to the first batch's arrays: decoding a photo folder every run vs once (core.data.decode_cache) vs the notebooks.

Run from the repo root: `.venv/bin/python bench/bench_decode_cache.py [--images N]`. Builds a folder of 800x600 JPEGs
(random crops and flips of scikit-image's sample photos, 3 classes) in a temp dir, reads every file once so all paths
start from the OS page cache, then times, side by side in one process, at 160x160x3:
  (0) today: `load_splits` with the cache off (CONVNET_DECODE_CACHE_BYTES=0), what every run paid before;
  (a) the first `load_splits` with the cache on (a miss: decode every image, store the entry);
  (b) the second `load_splits` (a hit: slice the stored arrays, no image opened);
  (c) the notebooks' way, `keras.utils.image_dataset_from_directory(...).cache()` iterated once (what each of their
      runs pays, since `.cache()` lives in memory only).
Prints a table and the ratios, writes bench/results/decode_cache.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "decode_cache.json"
SIZE = (160, 160)
CHANNELS = 3
PHOTO_SIZE = (800, 600)  # width, height
CLASSES = ("alpha", "beta", "gamma")
DATASET = "bench-photos"


def _photos() -> list[np.ndarray]:
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        try:
            a = getattr(data, name)()
        except Exception:  # noqa: BLE001  (a sample that would need a download is skipped)
            continue
        if a.ndim == 3 and a.shape[-1] == 3:
            out.append(a)
    if not out:
        raise SystemExit("no scikit-image sample photo available")
    return out


def build_folder(root: Path, n: int, seed: int = 0) -> float:
    """n JPEGs of 800x600 under root/<class>/; returns the seconds it took."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    photos = _photos()
    for c in CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = photos[i % len(photos)]
        h, w = a.shape[:2]
        ch, cw = int(h * rng.uniform(0.5, 1.0)), int(w * rng.uniform(0.5, 1.0))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = a[y0 : y0 + ch, x0 : x0 + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if rng.random() < 0.5:
            crop = crop[::-1]
        img = Image.fromarray(np.ascontiguousarray(crop)).resize(PHOTO_SIZE, Image.BILINEAR)
        img.save(root / CLASSES[i % len(CLASSES)] / f"img_{i:05d}.jpg", quality=90)
    return time.perf_counter() - t0


def warm_page_cache(root: Path) -> int:
    total = 0
    for p in root.rglob("*.jpg"):
        total += len(p.read_bytes())
    return total


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000, help="photos in the folder (default 3000)")
    args, _ = parser.parse_known_args()  # run_all.py passes every script the same arguments

    tmp = Path(tempfile.mkdtemp(prefix="bench-decode-cache-"))
    try:
        os.environ["CONVNET_DATA_DIR"] = str(tmp / "data")
        os.environ["CONVNET_RUNS_DIR"] = str(tmp / "runs")
        os.environ.pop("CONVNET_DECODE_CACHE_BYTES", None)
        root = tmp / "data" / DATASET
        build_s = build_folder(root, args.images)
        folder_bytes = warm_page_cache(root)

        from core.data import datasets, decode_cache

        def load():
            return datasets.load_splits(DATASET, SIZE, CHANNELS)

        os.environ[decode_cache.CACHE_ENV] = "0"
        today_s, today = timed(load)
        del os.environ[decode_cache.CACHE_ENV]
        miss_s, miss = timed(load)
        hit_s, hit = timed(load)
        same = all(
            np.array_equal(today[s].x, hit[s].x) and np.array_equal(miss[s].x, hit[s].x) for s in today
        )
        n_loaded = sum(len(d) for d in hit.values())
        entry_bytes = sum(p.stat().st_size for p in decode_cache.cache_dir().glob("*"))

        t0 = time.perf_counter()
        import keras

        keras_import_s = time.perf_counter() - t0

        def notebook_way() -> int:
            ds = keras.utils.image_dataset_from_directory(
                root, image_size=SIZE, batch_size=32, seed=123, verbose=False
            ).cache()
            return sum(int(x.shape[0]) for x, _ in ds)

        keras_s, keras_n = timed(notebook_way)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = [
        ("(0) today: load_splits, cache off", today_s),
        ("(a) load_splits, first run (miss + store)", miss_s),
        ("(b) load_splits, next runs (hit)", hit_s),
        ("(c) notebooks: image_dataset_from_directory.cache", keras_s),
    ]
    print(f"{args.images} JPEGs {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} ({folder_bytes / 1e6:.0f} MB, built in {build_s:.1f} s) "
          f"-> {SIZE[0]}x{SIZE[1]}x{CHANNELS}; cache entry {entry_bytes / 1e6:.1f} MB; {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'path':<52}{'seconds':>9}{'images/s':>10}")
    for label, s in rows:
        print(f"{label:<52}{s:>9.2f}{n_loaded / s:>10.0f}")
    ratios = {
        "today_over_hit": today_s / hit_s,
        "miss_over_today": miss_s / today_s,
        "notebook_over_hit": keras_s / hit_s,
        "miss_over_hit": miss_s / hit_s,
    }
    print(f"today/hit = {ratios['today_over_hit']:.1f}x; notebooks/hit = {ratios['notebook_over_hit']:.1f}x; "
          f"first run costs {ratios['miss_over_today']:.2f}x today's decode; identical arrays: {same}")  # fmt: skip
    print(f"(keras import, not counted above: {keras_import_s:.1f} s; notebook images: {keras_n})")

    from core.atomic import write_json

    write_json(
        RESULTS,
        {
            "images": args.images,
            "photo_size": list(PHOTO_SIZE),
            "input_shape": [*SIZE, CHANNELS],
            "images_loaded": n_loaded,
            "seconds": {"today": today_s, "miss": miss_s, "hit": hit_s, "notebook": keras_s},
            "ratios": ratios,
            "identical_arrays": same,
            "cache_entry_bytes": entry_bytes,
            "keras_import_s": keras_import_s,
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
            },
        },
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
