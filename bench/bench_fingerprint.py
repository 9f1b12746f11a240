"""Dataset fingerprint cost: cold (empty hash cache: every file read and hashed) vs warm (unchanged folder: a scan
and a stat per file), on the embedded 7,000-image sample and on a generated folder of 3,000 JPEGs (640×480).

Run from the repo root: `.venv/bin/python bench/bench_fingerprint.py [--reps N] [--jpegs N]`. Prints a table and
writes bench/results/fingerprint.json. "Cold" empties the hash cache only; the files themselves may sit in the OS
page cache (this benchmark does not drop it, which would disturb everything else on the machine). Goal: warm well
under a second for the 7,000-image sample.
"""

from __future__ import annotations

import argparse
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

from core.atomic import write_json  # noqa: E402
from core.data import fingerprint  # noqa: E402
from core.data.datasets import get_dataset  # noqa: E402
from core.paths import EMBEDDED_DATASET  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "fingerprint.json"


def make_jpegs(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for k in range(n):
        d = root / f"class_{k % 3}"
        d.mkdir(parents=True, exist_ok=True)
        a = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(a).resize((640, 480), Image.BILINEAR).save(d / f"img_{k:05d}.jpg", quality=85)


def measure(name: str, reps: int) -> dict:
    cold, warm, scan = [], [], []
    digest = ""
    files = 0
    for _ in range(reps):
        shutil.rmtree(fingerprint.cache_dir(), ignore_errors=True)
        t0 = time.perf_counter()
        fp = fingerprint.dataset_fingerprint(name)
        cold.append(time.perf_counter() - t0)
        assert fp is not None and fp.hashed == fp.files
        for _ in range(3):
            t0 = time.perf_counter()
            again = fingerprint.dataset_fingerprint(name)
            warm.append(time.perf_counter() - t0)
            assert again is not None and again.digest == fp.digest and again.hashed == 0
            t0 = time.perf_counter()
            get_dataset(name)
            scan.append(time.perf_counter() - t0)
        digest, files = fp.digest, fp.files
    return {
        "dataset": name,
        "files": files,
        "cold_s": statistics.median(cold),
        "warm_s": statistics.median(warm),
        "scan_s": statistics.median(scan),  # the catalog's own folder scan, part of both
        "short": fingerprint.short(digest),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--jpegs", type=int, default=3000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fp-") as tmp:
        os.environ["CONVNET_RUNS_DIR"] = str(Path(tmp) / "runs")
        os.environ["CONVNET_DATA_DIR"] = str(Path(tmp) / "data")
        make_jpegs(Path(tmp) / "data" / "jpegs", args.jpegs)
        mb = sum(p.stat().st_size for p in (Path(tmp) / "data" / "jpegs").rglob("*.jpg")) / 1e6
        rows = [measure(EMBEDDED_DATASET, args.reps), {**measure("jpegs", args.reps), "mb": round(mb, 1)}]
    print(f"{'dataset':24s} {'files':>6s} {'cold s':>8s} {'warm s':>8s} {'of which scan s':>16s}  cold/warm")
    for r in rows:
        print(
            f"{r['dataset']:24s} {r['files']:6d} {r['cold_s']:8.3f} {r['warm_s']:8.3f} {r['scan_s']:16.3f}  {r['cold_s'] / r['warm_s']:.1f}x"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    write_json(RESULTS, {"rows": rows, "machine": platform.platform(), "cpus": os.cpu_count(), "load": load})
    print(f"load average {load}; results in {RESULTS}")


if __name__ == "__main__":
    main()
