"""What the sweep queue costs: a K-trial sweep vs the same K runs started one after another with `python -m core train`.

Both train the same settings on the embedded sample, each trial in its own process (as the UI does), in fresh
runs folders, alternated (sweep, plain, sweep, plain ...) so a busy machine hurts both alike. Printed: wall-clock
seconds of each, their ratio (goal: the queue adds <= 5%), and the time from the sweep's end to its results table.
Run from the repo root: `.venv/bin/python bench/bench_sweep.py [--rounds 2] [--epochs 2] [--limit 2000]`.
Writes bench/results/sweep.json.
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

from core.atomic import write_json  # noqa: E402

DATASET = "fashion-mnist-sample"
LRS = ("1e-3", "2e-3", "4e-3")


def _env(tmp: str) -> dict[str, str]:
    runs = Path(tmp) / "runs"
    runs.mkdir()
    return {**os.environ, "CONVNET_RUNS_DIR": str(runs), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=3600)  # fmt: skip
    if out.returncode:
        raise SystemExit(f"{' '.join(args)} failed: {out.stderr[-500:]}")
    return out


def sweep_once(epochs: int, limit: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = _env(tmp)
        t = time.perf_counter()
        _cli(["sweep", "--dataset", DATASET, "--grid", "lr=" + ",".join(LRS), "--epochs", str(epochs),
              "--limit", str(limit), "--quiet"], env)  # fmt: skip
        total = time.perf_counter() - t
        t = time.perf_counter()
        out = _cli(["sweep", "--status"], env)
        sweep_id = out.stdout.split()[0]
        _cli(["sweep", "--status", sweep_id], env)
        return total, time.perf_counter() - t


def plain_once(epochs: int, limit: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = _env(tmp)
        t = time.perf_counter()
        for lr in LRS:
            _cli(["train", "--dataset", DATASET, "--lr", lr, "--epochs", str(epochs), "--limit", str(limit),
                  "--quiet"], env)  # fmt: skip
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=2000)
    args = ap.parse_args()
    sweeps, tables, plains = [], [], []
    for i in range(args.rounds):
        s, tbl = sweep_once(args.epochs, args.limit)
        p = plain_once(args.epochs, args.limit)
        sweeps.append(s)
        tables.append(tbl)
        plains.append(p)
        print(f"round {i + 1}: sweep of {len(LRS)} trials {s:.1f} s, {len(LRS)} plain runs {p:.1f} s, "
              f"ratio {s / p:.3f}", flush=True)  # fmt: skip
    ratio = statistics.median(s / p for s, p in zip(sweeps, plains, strict=True))
    print(f"median sweep / plain: {ratio:.3f} (goal <= 1.05); results table {statistics.median(tables):.2f} s "
          f"(two CLI calls: list, then the table)")  # fmt: skip
    write_json(ROOT / "bench" / "results" / "sweep.json", {
        "trials": len(LRS), "epochs": args.epochs, "limit": args.limit, "sweep_s": sweeps, "plain_s": plains,
        "median_ratio": ratio, "table_s": tables, "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg")
        else None})  # fmt: skip


if __name__ == "__main__":
    main()
