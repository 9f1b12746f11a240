"""Embedding projector cost: PCA vs t-SNE vs UMAP on 2,000 and 10,000 points, and the model pass feeding them.

Run from the repo root: `.venv/bin/python bench/bench_projector.py [--sizes 2000 10000]`. Prints a table and
writes bench/results/projector.json. Features are 10 Gaussian clusters in 128 dimensions (the width of the `fast`
preset's penultimate Dense); t-SNE and UMAP see their first 50 principal components, as in the app. UMAP's first
call in a process compiles numba code, so it is timed on its own (a 200-point warm-up) before the sized runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from core.analysis import projector  # noqa: E402
from core.atomic import write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "projector.json"


def clusters(n: int, d: int = 128, k: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, d))
    return np.maximum(0, centres[rng.integers(0, k, n)] + rng.normal(0, 1, (n, d))).astype(np.float32)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def model_pass(n: int) -> float:
    """The `fast` preset's penultimate outputs for n 28×28 gray images (what a run's features cost)."""
    from core.analysis import evaluation
    from core.models import architectures

    model = architectures.build_model("fast", (28, 28, 1), 10)
    x = np.random.default_rng(0).integers(0, 256, (n, 28, 28, 1)).astype(np.uint8)
    evaluation._embeddings(model, x[:256], 256, None)  # trace once
    return timed(lambda: evaluation._embeddings(model, x, 256, None))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--dims", type=int, default=2)
    args = ap.parse_args()
    rows: dict[str, dict[str, float]] = {}
    methods = ["pca", "tsne"] + (["umap"] if projector.umap_available() else [])
    extra: dict[str, float] = {}
    if "umap" in methods:
        extra["umap_first_call_200_points_s"] = timed(
            lambda: projector.reduce(clusters(200), "umap", args.dims)
        )
        print(f"UMAP first call in this process (numba compiles), 200 points: "
              f"{extra['umap_first_call_200_points_s']:.1f} s", flush=True)  # fmt: skip
    for n in args.sizes:
        x = clusters(n)
        rows[str(n)] = {m: timed(lambda m=m, x=x: projector.reduce(x, m, args.dims)) for m in methods}
        rows[str(n)]["model_pass_fast_28x28"] = model_pass(n)
        print(f"{n:>6} points: " + "  ".join(f"{k} {v:.1f} s" for k, v in rows[str(n)].items()), flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"\n{os.cpu_count()} CPUs, load average {load:.1f}" if load is not None else "")
    write_json(RESULTS, {"dims": args.dims, "seconds": rows, **extra, "cpus": os.cpu_count(), "load_avg_1m": load,
                         "python": platform.python_version()})  # fmt: skip


if __name__ == "__main__":
    main()
