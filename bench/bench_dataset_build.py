"""What building and tending a dataset costs: core.data.editing on a 7,000-image copy of the embedded sample.

Run from the repo root: `.venv/bin/python bench/bench_dataset_build.py`. In a temp data folder it copies the sample
(28x28 PNGs, train/test split layout), then times, median of a few repeats:
  - `tree` (classes and counts, what every page run and every edit reads) and `images` of one class (700 files);
  - one grid page: 24 thumbnails decoded and fitted to 96 px;
  - adding pictures one call at a time as the page does: 200 small PNGs, and 20 webcam-sized 640x480 JPEGs, side by
    side with the importer storing the same 200 PNGs from a folder (the same check and re-encoding, one pass);
  - move one image, remove one and restore it.
Prints a table and writes bench/results/dataset_build.json.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "dataset_build.json"


def _median(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(i).integers(0, 255, (28, 28), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(i: int) -> bytes:
    buf = io.BytesIO()
    a = np.random.default_rng(i).integers(0, 255, (480, 640, 3), np.uint8)
    Image.fromarray(a).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        os.environ["CONVNET_DATA_DIR"] = str(Path(tmp) / "data")
        from core import paths
        from core.data import editing
        from core.data.importer import import_dataset

        data = paths.data_dir()
        shutil.copytree(paths.embedded_dataset_dir(), data / "fm")
        rows: dict[str, float] = {}
        rows["tree, 7,000 images (ms)"] = 1000 * _median(lambda: editing.tree("fm"))
        rows["images of one class, 700 (ms)"] = 1000 * _median(lambda: editing.images("fm", "Bag"))
        page = editing.images("fm", "Bag")[:24]
        rows["grid page, 24 thumbnails (ms)"] = 1000 * _median(
            lambda: [editing.thumbnail("fm", r, 96) for r in page], 3
        )

        pngs = [(f"p{i}.png", _png(i)) for i in range(200)]
        editing.new_dataset("built", ["a", "b"])
        t0 = time.perf_counter()
        for name, blob in pngs:  # one call per picture: the webcam's way, the slowest case
            editing.add_images("built", "a", [(name, blob)])
        rows["add one small PNG per call (ms/image)"] = 1000 * (time.perf_counter() - t0) / len(pngs)
        t0 = time.perf_counter()
        editing.add_images("built", "b", pngs)
        rows["add 200 small PNGs in one call (ms/image)"] = 1000 * (time.perf_counter() - t0) / len(pngs)
        src = Path(tmp) / "src"
        for c in ("a", "b"):
            (src / c).mkdir(parents=True)
            for name, blob in pngs[:100]:
                (src / c / name).write_bytes(blob)
        t0 = time.perf_counter()
        import_dataset(src, "imported")
        rows["importer, same 200 PNGs from a folder (ms/image)"] = 1000 * (time.perf_counter() - t0) / 200
        shots = [(f"webcam{i}.jpg", _jpeg(i)) for i in range(20)]
        t0 = time.perf_counter()
        for shot in shots:
            editing.add_images("built", "a", [shot])
        rows["add one 640x480 webcam JPEG (ms/image)"] = 1000 * (time.perf_counter() - t0) / len(shots)

        moved = iter(editing.images("built", "a")[:5])
        rows["move one image (ms)"] = 1000 * _median(lambda: editing.move_image("built", next(moved), "b"))

        def remove_restore() -> None:
            entry = editing.remove_image("built", "b/p0.png")
            editing.restore("built", entry)

        rows["remove + restore one image (ms)"] = 1000 * _median(remove_restore)

    width = max(map(len, rows))
    for k, v in rows.items():
        print(f"{k:{width}s} {v:9.2f}")
    ratio = (
        rows["add 200 small PNGs in one call (ms/image)"]
        / rows["importer, same 200 PNGs from a folder (ms/image)"]
    )
    print(f"add_images / importer per image: {ratio:.2f}x")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows, "add_vs_import": ratio, "machine": platform.platform(),
                                   "cpus": os.cpu_count()}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
