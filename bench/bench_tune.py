"""Tune and compare: the learning-rate finder's wall-clock time (goal ≤ 30 s for `fast` on the embedded sample,
process start to exit), and the test-time augmentation gain and the compare figures on two sample runs.

Run from the repo root: `.venv/bin/python bench/bench_tune.py [--rounds N]`. Prints a table and writes
bench/results/tune.json. Runs are trained into a temporary runs folder, so nothing is left behind.
"""

from __future__ import annotations

import os
import resource
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


def _cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _cli(*args: str, env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of the child, result): on a CPU shared with other jobs the CPU time is the steadier figure."""
    t0, c0 = time.perf_counter(), _cpu()
    out = subprocess.run(
        [sys.executable, "-m", "core", *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"{' '.join(args)} failed: {out.stderr.strip()}")
    return time.perf_counter() - t0, _cpu() - c0, out


def main() -> None:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 2
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        env = {**os.environ, "CONVNET_RUNS_DIR": tmp}
        walls, cpus, lines = [], [], []
        for _ in range(rounds):
            load = os.getloadavg()[0]
            wall, cpu, out = _cli("lr-find", "--dataset", DATASET, "--preset", "fast", env=env)
            walls.append(wall)
            cpus.append(cpu)
            lines.append(out.stderr.strip().splitlines()[-1])
            print(f"lr-find fast on {DATASET}: {wall:.1f} s wall, {cpu:.1f} s CPU (process start to exit, load "
                  f"{load:.1f} before); {lines[-1]}", flush=True)  # fmt: skip
        _, _, a = _cli("train", "--dataset", DATASET, "--preset", "fast", "--quiet", env=env)
        _, _, b = _cli(
            "train", "--dataset", DATASET, "--preset", "fashion-cnn", "--epochs", "3", "--quiet", env=env
        )
        run_a, run_b = a.stdout.strip().splitlines()[-1], b.stdout.strip().splitlines()[-1]
        _, _, ev = _cli("evaluate", "--run", run_a, "--tta", env=env)
        tta_line = ev.stdout.strip().splitlines()[-1]
        print(tta_line, flush=True)
        _, _, cmp = _cli("compare", run_a, run_b, env=env)
        print(cmp.stdout, flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    write_json(RESULTS, {"lr_find_wall_s": walls, "lr_find_median_s": statistics.median(walls),
                         "lr_find_cpu_s": cpus,
                         "lr_find": lines, "tta": tta_line, "compare": cmp.stdout, "cpus": os.cpu_count(),
                         "load_avg_1m": load})  # fmt: skip
    print(
        f"lr-find median {statistics.median(walls):.1f} s wall, {statistics.median(cpus):.1f} s CPU "
        f"(goal ≤ 30 s wall on 2 cores); load {load}"
    )


if __name__ == "__main__":
    main()
