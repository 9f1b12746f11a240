"""Epochs with tf.data's autotuner on vs off: the stall at the start of each epoch (a benchmark, not a timed test).

Keras makes a new iterator for every epoch. With the autotuner on, destroying the last one waits until the
autotuner's model thread wakes from a timed sleep that doubles while the iterator lives (10 ms, 20 ms, ...), so a
new epoch can wait up to about as long as an epoch took, with the CPU idle. Our pipelines turn it off
(`core.data.datasets.without_autotune`). This bench trains the same preset on the same arrays in two fresh
processes, one after the other: (on) our pipeline with the autotuner left on, as it was before; (off) our pipeline
as it is. Per epoch it records the wall seconds, the process's CPU seconds and the wait before the epoch's first
batch ends (`first step`); idle = wall - CPU / cores is time the machine did nothing.

Run from the repo root: `.venv/bin/python bench/bench_epoch_stalls.py [--preset small-best] [--images 60000]
[--epochs 4]`. Full Fashion-MNIST (Debian copy) when installed, else the embedded sample. Writes
bench/results/epoch_stalls.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
RESULTS = HERE / "results" / "epoch_stalls.json"


def worker(args: argparse.Namespace) -> None:
    """One fit of `args.epochs` epochs; prints one JSON line of per-epoch marks."""
    import keras

    from core.data import datasets, keras_datasets
    from core.models import architectures

    if args.autotune == "on":  # the pipeline as it was: the autotuner left on
        datasets.without_autotune = lambda ds: ds  # type: ignore[assignment]
    name = "fashion_mnist" if keras_datasets.is_available("fashion_mnist") else "fashion-mnist-sample"
    data = datasets.load_splits(name, (28, 28), 1, val_split=0.0, splits=("train",), limit=args.images)[
        "train"
    ]
    keras.utils.set_random_seed(1)
    preset = architectures.get_preset(args.preset)
    model = architectures.build_model(args.preset, (28, 28, 1), 10)
    architectures.compile_model(model, "softmax", "categorical", preset.optimizer, preset.learning_rate, 0.1)
    ds = datasets.make_tf_dataset(data, preset.batch_size, shuffle=True, seed=1, num_classes=10,
                                  label_mode="categorical")  # fmt: skip

    class Marks(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.rows: list[dict] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t, self._c, self._first = time.perf_counter(), time.process_time(), None

        def on_train_batch_end(self, batch, logs=None):
            if self._first is None:
                self._first = time.perf_counter() - self._t

        def on_epoch_end(self, epoch, logs=None):
            self.rows.append({"wall": time.perf_counter() - self._t, "cpu": time.process_time() - self._c,
                              "first_step": self._first})  # fmt: skip

    marks = Marks()
    model.fit(ds, epochs=args.epochs, callbacks=[marks], verbose=0)
    print(json.dumps({"dataset": name, "images": len(data), "epochs": marks.rows}))


def spawn(args: argparse.Namespace, autotune: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--autotune", autotune, "--preset", args.preset,
           "--images", str(args.images), "--epochs", str(args.epochs)]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"worker failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small-best")
    parser.add_argument("--images", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="12,000 images, 3 epochs (shows little)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--autotune", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.quick:
        args.images, args.epochs = 12000, 3
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print(f"== {args.preset}, {args.images} images, {args.epochs} epochs, {cores} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")  # fmt: skip
    runs = {mode: spawn(args, mode) for mode in ("on", "off")}
    print("\n| autotuner | epoch | wall s | CPU s | idle s | first step s |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for mode, run in runs.items():
        rows = run["epochs"]
        for i, r in enumerate(rows, 1):
            r["idle"] = max(0.0, r["wall"] - r["cpu"] / cores)
            print(
                f"| {mode} | {i} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['idle']:.1f} | {r['first_step']:.2f} |"
            )
        later = rows[1:] or rows
        summary[mode] = {
            "wall_epochs_2plus": sum(r["wall"] for r in later),
            "cpu_epochs_2plus": sum(r["cpu"] for r in later),
            "worst_first_step": max(r["first_step"] for r in later),
        }
    on, off = summary["on"], summary["off"]
    print(f"\nepochs 2+: wall {on['wall_epochs_2plus']:.1f} s with the autotuner, {off['wall_epochs_2plus']:.1f} s "
          f"without ({on['wall_epochs_2plus'] / off['wall_epochs_2plus']:.2f}x); CPU {on['cpu_epochs_2plus']:.1f} vs "
          f"{off['cpu_epochs_2plus']:.1f} s; worst wait for an epoch's first step {on['worst_first_step']:.1f} vs "
          f"{off['worst_first_step']:.1f} s")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "cores": cores, "runs": runs, "summary": summary,
                                   "when": time.strftime("%Y-%m-%d %H:%M")}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
