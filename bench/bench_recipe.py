"""Training recipes side by side, from process start to a saved model (a benchmark, not a timed test).

Each recipe is one `python -m core train --dataset fashion_mnist ...` subprocess (our training path: tf.data,
callbacks, progress file, per-epoch atomic save), timed from before the process starts until it exits with
model.keras written; CPU seconds are the child's user + system time (the reliable number on a shared machine).
The saved model is then scored on the 10,000 test images (not timed). Recipes:

- old `fast`: the recipe `fast` had before (Adam 2e-3 constant, hard labels, batch 128, 4 epochs);
- new `fast`: the preset's own recipe (one-cycle to 5e-3, label smoothing 0.1, 3 epochs);
- `small-best`: its own recipe (one-cycle, smoothing, flips and ±2 px shifts, < 100k params).

All train on the 60,000 training images (--val-split 0). Full Fashion-MNIST (Debian copy) when installed, else
the embedded sample (said so). Writes bench/results/recipe.json.
Usage: python bench/bench_recipe.py [--quick] [--only fast|small-best]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = REPO / "bench" / "results"
OLD_FAST = ["--preset", "fast", "--epochs", "4", "--lr", "2e-3", "--lr-schedule", "constant",
            "--label-smoothing", "0"]  # fmt: skip
RECIPES = {
    "old fast (constant 2e-3, 4 epochs)": OLD_FAST,
    "new fast (one-cycle 5e-3, smoothing 0.1, 3 epochs)": ["--preset", "fast"],
    "small-best (its recipe)": ["--preset", "small-best"],
}
TARGETS = {"new fast": (0.910, 25.0), "small-best": (0.930, 300.0)}  # test accuracy, wall seconds


def train(dataset: str, args: list[str], runs_dir: str, extra: list[str]) -> dict:
    """One training process; wall and CPU seconds from before it starts until model.keras is written."""
    env = {**os.environ, "CONVNET_RUNS_DIR": runs_dir}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "core", "train", "--dataset", dataset, "--val-split", "0",
                           "--quiet", *args, *extra], cwd=REPO, env=env, capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"training failed: {done.stderr.strip().splitlines()[-1:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"run_id": done.stdout.strip().splitlines()[-1], "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}


def test_accuracy(dataset: str, run_id: str, runs_dir: str) -> tuple[float, int]:
    """The saved model's accuracy on the dataset's test split, and its parameter count."""
    os.environ["CONVNET_RUNS_DIR"] = runs_dir
    from core.analysis.prediction import batched_outputs
    from core.analysis.probabilities import to_probabilities
    from core.data import datasets
    from core.models.loading import load_model
    from core.training import runs

    run = runs.get_run(run_id)
    cfg = run.config
    model = load_model(run.path / "model.keras")
    h, w, c = cfg.input_shape
    test = datasets.load_splits(dataset, (h, w), c, val_split=0.0)["test"]
    probs = to_probabilities(
        batched_outputs(model, test.x.astype("float32"), batch_size=1000), cfg.output_kind
    )
    return float((probs.argmax(1) == test.y).mean()), int(model.count_params())


def main() -> None:
    quick = "--quick" in sys.argv
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    from core.data import keras_datasets

    full = keras_datasets.is_available("fashion_mnist") and not quick
    dataset = "fashion_mnist" if full else "fashion-mnist-sample"
    extra = [] if full else ["--epochs", "2"]
    if not full:
        print("note: full Fashion-MNIST not available or --quick: the embedded sample, 2 epochs (no targets)")
    load = os.getloadavg()[0]
    # the CPUs this process may use (taskset narrows them), where the OS says; else the machine's
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"== recipes on {dataset}, {cpus} CPUs, load average {load:.1f} at start")
    rows = []
    with tempfile.TemporaryDirectory() as runs_dir:
        for name, args in RECIPES.items():
            if only and only not in name:
                continue
            r = train(dataset, args, runs_dir, extra if "--epochs" not in args else [])
            r["test_accuracy"], r["params"] = test_accuracy(dataset, r["run_id"], runs_dir)
            r["recipe"], r["args"] = name, args
            rows.append(r)
            print(f"  {name}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} CPU s, test {r['test_accuracy']:.2%}, "
                  f"{r['params']:,} params", flush=True)  # fmt: skip
    out = {"machine": {"cpus": cpus, "load_at_start": load}, "dataset": dataset, "rows": rows,
           "when": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "recipe.json").write_text(json.dumps(out, indent=2))
    print("\n| recipe | wall s (start -> saved model) | CPU s | test accuracy | params | target |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        goal = (
            ""
            if not full
            else next(
                (f"≥ {a:.1%} in ≤ {s:.0f} s" for k, (a, s) in TARGETS.items() if r["recipe"].startswith(k)),
                "",
            )
        )
        print(f"| {r['recipe']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['test_accuracy']:.2%} | "
              f"{r['params']:,} | {goal} |")  # fmt: skip


if __name__ == "__main__":
    main()
