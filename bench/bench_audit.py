"""Dataset audit cost (`python -m core audit`): the embedded sample (7,000 images; goal <= 2 minutes on 2 cores)
and full Fashion-MNIST written as a folder of 70,000 PNGs (goal <= 15 minutes).

Run from the repo root: `.venv/bin/python bench/bench_audit.py [--full]`. Each audit runs in a fresh runs folder (no
stored audit, no decode cache: every image is decoded), with `use_cache=False`. The 70,000 PNGs are written to a
temp folder first, from Debian's `/usr/share/datasets/fashion-mnist` (not timed). Prints wall and CPU seconds per
stage and the machine's load, and writes bench/results/audit.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.atomic import write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "audit.json"


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def write_full_fashion(root: Path) -> str:
    """Full Fashion-MNIST as train/<class>/*.png and test/<class>/*.png under root/fashion-full."""
    import numpy as np
    from PIL import Image

    from core.data import keras_datasets

    arrays = keras_datasets.load_arrays("fashion_mnist")
    names = [
        c.replace("/", "_").replace(" ", "_") for c in keras_datasets.SOURCES["fashion_mnist"].class_names
    ]
    for split, (x, y) in arrays.items():
        for c in names:
            (root / "fashion-full" / split / c).mkdir(parents=True, exist_ok=True)
        for i, (a, label) in enumerate(zip(x, np.asarray(y), strict=True)):
            Image.fromarray(a[..., 0]).save(
                root / "fashion-full" / split / names[int(label)] / f"{i:05d}.png"
            )
    return "fashion-full"


def audit_once(dataset: str) -> dict:
    from core.analysis import audit

    t0, c0, load0 = time.perf_counter(), cpu_seconds(), os.getloadavg()[0]
    last = {"stage": ""}

    def progress(stage: str, fraction: float) -> None:
        if stage != last["stage"]:
            last["stage"] = stage
            print(f"  {time.perf_counter() - t0:7.1f} s  {fraction:4.0%}  {stage}", flush=True)

    report = audit.run_audit(dataset, progress=progress, use_cache=False)
    return {
        "dataset": dataset, "images": report.meta["images"], "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(cpu_seconds() - c0, 1), "stages_s": report.meta["seconds"], "epochs": report.meta["epochs"],
        "folds": report.meta["folds"], "cv_accuracy": round(report.meta["cv_accuracy"], 4),
        "label_issues": len(report.label_issues), "duplicate_groups": len(report.duplicates),
        "leaks": len(report.leaks), "outliers": len(report.outliers),
        "test_accuracy": report.test_accuracy, "leak_adjusted_accuracy": report.leak_adjusted_accuracy,
        "load_before": round(load0, 1), "load_after": round(os.getloadavg()[0], 1),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="also audit full Fashion-MNIST as 70,000 PNGs")
    ap.add_argument("--only-full", action="store_true", help="only the 70,000-image audit")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CONVNET_RUNS_DIR"] = str(Path(tmp) / "runs")
        os.environ["CONVNET_DATA_DIR"] = str(Path(tmp) / "data")
        if not args.only_full:
            print("embedded sample (7,000 images):", flush=True)
            rows.append(audit_once("fashion-mnist-sample"))
        if args.full or args.only_full:
            t0 = time.perf_counter()
            name = write_full_fashion(Path(tmp) / "data")
            print(f"wrote 70,000 PNGs in {time.perf_counter() - t0:.0f} s (not timed); auditing:", flush=True)
            rows.append(audit_once(name))
            shutil.rmtree(Path(tmp) / "data", ignore_errors=True)
    goals = {"fashion-mnist-sample": 120, "fashion-full": 900}
    print(
        f"\n{'dataset':22s} {'images':>7s} {'wall s':>8s} {'cpu s':>8s} {'goal s':>7s}  stages (s)   [load]"
    )
    for r in rows:
        print(f"{r['dataset']:22s} {r['images']:7d} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} {goals[r['dataset']]:7d}  "
              f"{r['stages_s']}  [{r['load_before']} -> {r['load_after']}]")  # fmt: skip
        print(f"{'':22s} cv accuracy {r['cv_accuracy']:.3f} ({r['folds']} folds x {r['epochs']} epochs); "
              f"{r['label_issues']} label issues, {r['duplicate_groups']} duplicate groups, {r['leaks']} leaks, "
              f"{r['outliers']} outliers; held-out accuracy {r['test_accuracy']:.3f}, leak-adjusted "
              f"{r['leak_adjusted_accuracy']:.3f}")  # fmt: skip
    write_json(RESULTS, {"rows": rows, "machine": platform.platform(), "cpus": os.cpu_count()})


if __name__ == "__main__":
    main()
