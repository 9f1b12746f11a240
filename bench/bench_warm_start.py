"""Clicking Train a second time on the same photo folder: a fresh job process vs the warm spare (a benchmark).

Run from the repo root: `.venv/bin/python bench/bench_warm_start.py [--images N] [--reps R]` (defaults 3000, 2).
Builds a folder of 800x600 JPEGs (bench_decode_cache.build_folder), trains the `fast` preset on it once at
160x160x3 so the decode cache holds it, then starts second runs the way the Train page does, alternating:
  (cold) `jobs.start(req)` with no spare: a new `python -m core train --run ID` process imports TensorFlow first;
  (warm) the same call after `spare.ensure()` had a spare process import TensorFlow and start its runtime (the Train
         page starts one while the form is filled in; the wait for it is not counted).
The clock starts when Train is clicked (`jobs.start`: the run is created and handed over) and stops at the end of
the first training batch, as the job itself records it in progress.jsonl; each run is then stopped. Seconds after
the job process started are printed too (for the warm spare that process started long before the click).
Goal (issue "Speed where users wait"): a second training's first batch <= 3 s. Writes bench/results/warm_start.json.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from core.atomic import write_json  # noqa: E402

RESULTS = HERE / "results" / "warm_start.json"
DATASET = "bench-photos"
GOAL_S = 3.0
MODES = ("cold", "warm", "prepared")


def first_batch(req, mode: str) -> dict:
    """One second run started as the Train page starts it; seconds from the click to its first batch's end."""
    import psutil

    from core.training import jobs, runs, spare, trainer

    os.environ[spare.SWITCH_ENV] = "0" if mode == "cold" else "1"
    (spare.spare_root() / spare.REQUEST_FILE).unlink(missing_ok=True)
    if mode != "cold":
        spare.ensure(prepare=trainer.resolve(req).to_dict() if mode == "prepared" else None)
        if not _wait(lambda: any(p == "ready" for _h, p, _i in spare.spares()), 180):
            raise SystemExit("the spare did not get ready in 180 s")
        if mode == "prepared" and not _wait(lambda: any((h / spare.PREPARED_FILE).is_file()
                                                        for h, _p, _i in spare.spares()), 180):  # fmt: skip
            raise SystemExit("the spare did not prepare the run in 180 s")
        time.sleep(1.0)
    load = os.getloadavg()[0]
    t0 = time.time()
    run = jobs.start(req)
    handed = time.time() - t0

    def first() -> dict | None:
        return next((r for r in _progress(run.path) if r.get("type") == "batch"), None)

    if not _wait(
        lambda: first() is not None or runs.get_run(run.run_id).state not in runs.ACTIVE_STATES, 300
    ):
        raise SystemExit("no first batch in 300 s")
    rec = first()
    if rec is None:
        raise SystemExit(f"the run ended before a batch: {runs.get_run(run.run_id).status.get('error')}")
    status = runs.get_run(run.run_id).status
    jobs.stop(run.run_id)
    jobs.wait(run.run_id, timeout_s=120)
    started = status.get("pid_start") or psutil.Process(status["pid"]).create_time()
    return {"mode": mode, "prepared": "prepared_s" in status, "click_to_first_batch_s": rec["t"] - t0, "click_to_handed_s": handed,
            "process_start_to_first_batch_s": rec["t"] - started, "warm_start": bool(status.get("warm_start")),
            "load_at_click": load}  # fmt: skip


def _progress(path: Path) -> list[dict]:
    from core.training import runs

    epochs, batch = runs.read_progress(path)
    return [*epochs, *([batch] if batch else [])]


def _wait(pred, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=2)
    args, _ = parser.parse_known_args()  # run_all.py passes every script the same arguments
    from bench_decode_cache import build_folder, warm_page_cache

    tmp = Path(tempfile.mkdtemp(prefix="bench-warm-start-"))
    rows = []
    try:
        os.environ["CONVNET_DATA_DIR"] = str(tmp / "data")
        os.environ["CONVNET_RUNS_DIR"] = str(tmp / "runs")
        for name in ("CONVNET_DECODE_CACHE_BYTES", "CONVNET_STREAM_ABOVE_BYTES", "CONVNET_LOGICAL_CPUS"):
            os.environ.pop(name, None)
        build_s = build_folder(tmp / "data" / DATASET, args.images)
        warm_page_cache(tmp / "data" / DATASET)
        from core.training import jobs, runs, spare, trainer

        req = trainer.TrainRequest(
            dataset=DATASET, preset="fast", epochs=1, image_size=(160, 160), channels=3
        )
        print(
            f"{args.images} JPEGs built in {build_s:.1f} s; first run (fills the decode cache) ...",
            flush=True,
        )
        os.environ[spare.SWITCH_ENV] = "0"
        first = jobs.start(req)
        if jobs.wait(first.run_id, timeout_s=1800).state != "completed":
            raise SystemExit(f"first run failed: {runs.get_run(first.run_id).status.get('error')}")
        for rep in range(args.reps):
            for mode in MODES:
                row = first_batch(req, mode)
                rows.append(row)
                print(f"  rep {rep + 1} {row['mode']}: click -> first batch {row['click_to_first_batch_s']:.2f} s "
                      f"(job process start -> first batch {row['process_start_to_first_batch_s']:.1f} s, "
                      f"load {row['load_at_click']:.1f})", flush=True)  # fmt: skip
        os.environ[spare.SWITCH_ENV] = "1"
        for home, _p, _i in spare.spares():
            (home / "leave").touch()
    finally:
        time.sleep(1.5)
        shutil.rmtree(tmp, ignore_errors=True)
    med = {m: statistics.median(r["click_to_first_batch_s"] for r in rows if r["mode"] == m) for m in MODES}
    cold, warm, ready = med["cold"], med["warm"], med["prepared"]
    print(f"\nsecond run on {args.images} photos at 160x160, click -> first batch (median of {args.reps}):")
    print(f"| fresh job process | warm spare | spare prepared the form's run | ratio (fresh / prepared) | goal |\n"
          f"|---|---|---|---|---|\n| {cold:.2f} s | {warm:.2f} s | {ready:.2f} s | {cold / ready:.1f}x faster | "
          f"<= {GOAL_S:.0f} s: {'met' if ready <= GOAL_S else 'not met'} |")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS, {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "images": args.images,
                         "rows": rows, "median_cold_s": cold, "median_warm_s": warm, "median_prepared_s": ready, "when": time.strftime("%Y-%m-%d %H:%M")})  # fmt: skip


if __name__ == "__main__":
    main()
