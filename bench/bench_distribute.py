"""Two workers vs one: same preset, same data, same seed, same global batch; accuracy should agree within a point.

Run from the repo root: `.venv/bin/python bench/bench_distribute.py [--epochs N] [--preset fast]`. Trains the embedded
Fashion-MNIST sample once with the default strategy and once as two MultiWorkerMirroredStrategy workers on 127.0.0.1
(separate processes, exactly `python -m core train --run ID --strategy multiworker` as on two machines), scores both
models on the sample's 1,000 test images, prints a table and writes bench/results/distribute.json. Goal: the
two-worker test accuracy within 1 point of the single worker's. Runs live in a temporary runs dir, not runs/.

Not a timing benchmark of scale-out: here both workers share one machine's cores, so two workers are not faster;
the times are reported so a slowdown from the all-reduce is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results" / "distribute.json"
DATASET = "fashion-mnist-sample"
GOAL_POINTS = 1.0


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _train(run_id: str, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "core", "train", "--run", run_id], cwd=REPO, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)  # fmt: skip


def _wait(procs: list[subprocess.Popen], logs: list[Path]) -> None:
    for p, log in zip(procs, logs, strict=True):
        if p.wait() != 0:
            sys.exit(
                f"training failed (exit {p.returncode}); last lines of {log}:\n{log.read_text()[-1500:]}"
            )


def _test_accuracy(run_id: str, test) -> float:
    import numpy as np

    from core.models import loading
    from core.training import runs

    lm = loading.load_run_model(runs.get_run(run_id))
    preds = []
    for i in range(0, len(test), 256):
        preds.append(
            np.asarray(lm.model(test.x[i : i + 256].astype(np.float32), training=False)).argmax(axis=1)
        )
    return float((np.concatenate(preds) == test.y).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=None, help="global batch (default: the preset's)")
    ap.add_argument("--seed", type=int, default=213)
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-distribute-"))
    os.environ["CONVNET_RUNS_DIR"] = str(workdir / "runs")
    from core.data import datasets
    from core.training import runs, trainer

    def create(strategy: str) -> runs.Run:
        req = trainer.TrainRequest(dataset=DATASET, preset=args.preset, epochs=args.epochs,
                                    batch_size=args.batch_size, seed=args.seed, strategy=strategy)  # fmt: skip
        return trainer.start_run(req)

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TF_CONFIG", None)
    rows = []
    single = create("default")
    t0 = time.perf_counter()
    _wait([_train(single.run_id, env, workdir / "single.log")], [workdir / "single.log"])
    rows.append(("single worker", single.run_id, time.perf_counter() - t0))

    multi = create("multiworker")
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    logs = [workdir / f"worker{i}.log" for i in range(2)]
    t0 = time.perf_counter()
    procs = []
    for i, log in enumerate(logs):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(_train(multi.run_id, {**env, "TF_CONFIG": tf_config}, log))
    _wait(procs, logs)
    rows.append(("two workers (127.0.0.1)", multi.run_id, time.perf_counter() - t0))

    cfg = single.config
    h, w, c = cfg.input_shape
    test = datasets.load_splits(DATASET, (h, w), c, seed=args.seed, splits=("test",))["test"]
    results = []
    for label, run_id, wall in rows:
        run = runs.get_run(run_id)
        st = run.status
        results.append({
            "mode": label, "run_id": run_id, "state": st.get("state"), "replicas": st.get("replicas"),
            "wall_s": round(wall, 1), "train_s": round(st["ended"] - st["started"], 1),
            "val_accuracy": st.get("best_val_accuracy"), "test_accuracy": _test_accuracy(run_id, test),
        })  # fmt: skip
    diff = 100 * (results[1]["test_accuracy"] - results[0]["test_accuracy"])
    val_diff = 100 * ((results[1]["val_accuracy"] or 0) - (results[0]["val_accuracy"] or 0))

    print(f"\n{args.preset} on {DATASET}: {args.epochs} epochs, global batch {cfg.batch_size}, "
          f"seed {args.seed}; accuracy on {len(test)} test images")  # fmt: skip
    print(f"{'mode':26s} {'replicas':>8s} {'wall s':>8s} {'train s':>8s} {'val acc':>8s} {'test acc':>9s}")
    for r in results:
        print(f"{r['mode']:26s} {r['replicas']!s:>8s} {r['wall_s']:8.1f} {r['train_s']:8.1f} "
              f"{r['val_accuracy']:8.4f} {r['test_accuracy']:9.4f}")  # fmt: skip
    ok = abs(diff) <= GOAL_POINTS
    print(f"test accuracy difference (two - one): {diff:+.2f} points (validation {val_diff:+.2f}); "
          f"goal |diff| <= {GOAL_POINTS:.0f} point: {'met' if ok else 'NOT met'}")  # fmt: skip

    from core.atomic import write_json

    write_json(RESULTS, {
        "benchmark": "distribute", "dataset": DATASET, "preset": args.preset, "epochs": args.epochs,
        "global_batch_size": cfg.batch_size, "seed": args.seed, "test_images": len(test),
        "results": results, "test_accuracy_diff_points": round(diff, 2),
        "val_accuracy_diff_points": round(val_diff, 2),
        "goal_points": GOAL_POINTS, "goal_met": ok,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "note": "both workers share this machine's cores, so times show the all-reduce overhead, not a speed-up",
    })  # fmt: skip
    print(f"wrote {RESULTS.relative_to(REPO)}")
    shutil.rmtree(workdir, ignore_errors=True)  # kept only when training failed (its logs are there)


if __name__ == "__main__":
    main()
