"""The network at a glance: cost of one overview (one sub-model pass + numpy tiling) beside a plain forward pass.

Run from the repo root: `.venv/bin/python bench/bench_overview.py [--reps N]`. Prints a table and writes
bench/results/overview.json. Models: `jedi-sith-binary` at its default 200×200×3 (two classes, sigmoid head) and
`fast` at Fashion-MNIST's 28×28×1 (ten classes), built with random weights (speed does not depend on them).
The forward pass is `model(x, training=False)` on one image, what Classify pays per image; "sub-model" is the
overview's own pass over every layer's output, so overview minus sub-model is the numpy tiling; the ratio is
overview over forward. Goal: the overview costs about one forward pass (ratio <= 1.5).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from core.analysis import overview  # noqa: E402
from core.atomic import write_json  # noqa: E402
from core.models.architectures import build_model  # noqa: E402

CASES = [("jedi-sith-binary", (200, 200, 3), 2, "sigmoid"), ("fast", (28, 28, 1), 10, "softmax")]
RESULTS = Path(__file__).resolve().parent / "results" / "overview.json"


def timed(fn, reps: int) -> list[float]:
    fn()  # warm-up: the first call traces
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def measure(name: str, shape: tuple[int, int, int], k: int, kind: str, reps: int) -> dict:
    model = build_model(name, shape, k)
    x = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    t0 = time.perf_counter()
    net = overview.NetworkOverview(model)
    build_ms = (time.perf_counter() - t0) * 1000.0
    paths = {
        "forward": lambda: model(x[None], training=False),
        "sub_model": lambda: net._model(x[None], training=False),
        "overview": lambda: net(x, kind),
    }
    ms: dict[str, list[float]] = {key: [] for key in paths}
    for fn in paths.values():
        fn()  # warm-up: the first call traces
    for _ in range(reps):  # one of each in turn, so a busy shared CPU slows all three alike
        for key, fn in paths.items():
            t0 = time.perf_counter()
            fn()
            ms[key].append((time.perf_counter() - t0) * 1000.0)
    forward, side, glance_ms = ms["forward"], ms["sub_model"], ms["overview"]
    glance = net(x, kind)
    widest = max((g for g in glance.layers if g.spatial), key=lambda g: g.activations.size)
    open_ms = timed(lambda: overview.full_grid(widest), max(1, reps // 3))
    med = {"forward": statistics.median(forward), "sub_model": statistics.median(side),
           "overview": statistics.median(glance_ms), "open_widest_layer": statistics.median(open_ms)}  # fmt: skip
    ratio = med["overview"] / med["forward"]
    print(f"{name:<18}{'×'.join(map(str, shape)):>12}{len(glance.layers):>8}{build_ms:>10.1f}"
          f"{med['forward']:>12.1f}{med['sub_model']:>11.1f}{med['overview']:>13.1f}{ratio:>7.2f}"
          f"{med['open_widest_layer']:>9.1f}")  # fmt: skip
    return {
        "input_shape": list(shape),
        "layers": len(glance.layers),
        "build_ms": round(build_ms, 2),
        "median_ms": {key: round(v, 2) for key, v in med.items()},
        "ratio_overview_over_forward": round(ratio, 2),
        "widest_layer": widest.name,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15, help="timed repetitions (after a warm-up)")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    print(f"{'model':<18}{'input':>12}{'layers':>8}{'build ms':>10}{'forward ms':>12}{'sub-model':>11}"
          f"{'overview ms':>13}{'ratio':>7}{'open ms':>9}")  # fmt: skip
    rows = {name: measure(name, shape, k, kind, args.reps) for name, shape, k, kind in CASES}
    write_json(
        RESULTS,
        {
            "benchmark": "network at a glance: one overview vs one forward pass",
            "cases": rows,
            "goal_ratio": 1.5,
            "machine": {
                "python": platform.python_version(),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
            },
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
