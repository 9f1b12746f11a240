"""Cold start of the CLI and of the UI's first page.

CLI: commands that list or refuse vs `import tensorflow`, side by side in one run. Run from the repo root:
`.venv/bin/python bench/bench_cold_start.py [--reps N] [--page-reps M]`. Each command runs as a fresh process, as a
person types it; the median wall-clock time of N runs is printed with its ratio to a bare
`python -c "import tensorflow"` measured in the same run. Goal (issue 11): `datasets`, `runs` and any argument
error <= 1 s. Writes bench/results/cold_start.json.

UI: `streamlit run app.py`, health check, then the Datasets page in Chromium (bench/bench_page_paint.py, M fresh
server starts; skipped with the reason when playwright or chromium is missing; --page-reps 0 leaves it out).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_page_paint  # noqa: E402

from core.atomic import write_json  # noqa: E402

COMMANDS = {
    "python -m core datasets": ["-m", "core", "datasets"],
    "python -m core runs": ["-m", "core", "runs"],
    "train --dataset no-such (argument error)": ["-m", "core", "train", "--dataset", "no-such"],
    "train --lr inf (argument error)": [
        "-m",
        "core",
        "train",
        "--dataset",
        "fashion-mnist-sample",
        "--lr",
        "inf",
    ],
    'python -c "import tensorflow" (baseline)': ["-c", "import tensorflow"],
}


def _median_s(args: list[str], reps: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, timeout=300)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--page-reps", type=int, default=3)
    args = ap.parse_args()
    reps = args.reps
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CONVNET_RUNS_DIR": tmp, "TF_CPP_MIN_LOG_LEVEL": "2"}
        results = {name: _median_s(args, reps, env) for name, args in COMMANDS.items()}
    base = results['python -c "import tensorflow" (baseline)']
    print(f"{'command':45s} {'median s':>9s} {'vs import tensorflow':>21s}")
    for name, s in results.items():
        print(f"{name:45s} {s:9.2f} {s / base:20.2f}x")
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    write_json(ROOT / "bench" / "results" / "cold_start.json", {"reps": reps, "median_s": results})
    if args.page_reps > 0:
        print()
        reason = bench_page_paint.missing()
        if reason:
            print(f"Datasets page paint skipped: {reason}")
        else:
            bench_page_paint.report(bench_page_paint.measure([ROOT], args.page_reps), args.page_reps)


if __name__ == "__main__":
    main()
