"""Tune and compare: the learning-rate finder's wall-clock time (goal ≤ 30 s for `fast` on the embedded sample,
process start to exit), and the test-time augmentation gain and the compare figures on two sample runs.

Run from the repo root: `.venv/bin/python bench/bench_tune.py [--rounds N]`. Prints a table and writes
bench/results/tune.json. Runs are trained into a temporary runs folder, so nothing is left behind.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.atomic import write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "tune.json"
DATASET = "fashion-mnist-sample"


def _cli(*args: str, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(args)} failed: {out.stderr.strip()}")
    return time.perf_counter() - t0, out


def main() -> None:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 2
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        env = {**os.environ, "CONVNET_RUNS_DIR": tmp}
        walls, lines = [], []
        for _ in range(rounds):
            wall, out = _cli("lr-find", "--dataset", DATASET, "--preset", "fast", env=env)
            walls.append(wall)
            lines.append(out.stderr.strip().splitlines()[-1])
            print(f"lr-find fast on {DATASET}: {wall:.1f} s wall (process start to exit); {lines[-1]}", flush=True)
        _, a = _cli("train", "--dataset", DATASET, "--preset", "fast", "--quiet", env=env)
        _, b = _cli("train", "--dataset", DATASET, "--preset", "fashion-cnn", "--epochs", "3", "--quiet", env=env)
        run_a, run_b = a.stdout.strip().splitlines()[-1], b.stdout.strip().splitlines()[-1]
        _, ev = _cli("evaluate", "--run", run_a, "--tta", env=env)
        tta_line = ev.stdout.strip().splitlines()[-1]
        print(tta_line, flush=True)
        _, cmp = _cli("compare", run_a, run_b, env=env)
        print(cmp.stdout, flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    write_json(RESULTS, {"lr_find_wall_s": walls, "lr_find_median_s": statistics.median(walls),
                         "lr_find": lines, "tta": tta_line, "compare": cmp.stdout, "cpus": os.cpu_count(),
                         "load_avg_1m": load})  # fmt: skip
    print(f"lr-find median {statistics.median(walls):.1f} s (goal ≤ 30 s); load {load}")


if __name__ == "__main__":
    main()
