"""Training a photo folder the seeds' way vs ours: time to the first batch, per-epoch time, end to end.

Run from the repo root: `.venv/bin/python bench/bench_seed_baseline.py [--images N] [--epochs E]` (defaults 3000, 3).
Builds a folder of 800x600 JPEGs (bench_decode_cache.build_folder: crops of scikit-image photos, 3 classes), reads
every file once so all paths start from the OS page cache, runs one throwaway `import tensorflow` so every timed
process finds TensorFlow's libraries warm, then trains the `fast` preset at 160x160x3 in three fresh processes, one
after another, each timed from the moment it is spawned:
  (A) seeds: the notebooks' pipeline, `keras.utils.image_dataset_from_directory(folder, validation_split=0.2,
      subset="both", seed, image_size=(160, 160), batch_size)` then `.cache().prefetch(AUTOTUNE)` and
      `model.fit(train, validation_data=val, epochs)`, on `architectures.build_model("fast", ...)` compiled by
      `architectures.compile_model` exactly as our trainer compiles it;
  (B1) ours, first run on the folder: `trainer.start_run(TrainRequest(...))` + `trainer.train_run(run.path)`, the
      code `python -m core train` and the Train page's job run; the decode cache is empty (a miss);
  (B2) ours, second run on the same folder: the same, the decode cache now holds the folder (a hit).
Same model, optimizer, learning rate, batch size (the preset's 128), epochs, seed, 80/20 split, bilinear resize,
no augmentation (the `fast` preset has none). What differs is the product around fit: A decodes JPEGs inside
tf.data during epoch 1 (`.cache()` keeps them in memory for epochs 2+, and is lost when the process ends), its
shuffle order is fixed after the first epoch; ours decodes with PIL (core.data.images) into uint8 arrays before
fit (or slices the decode cache), reshuffles every epoch, writes progress.jsonl and saves model.keras atomically
after every epoch, and keeps the best epoch's weights in memory. The split picks different files (same sizes).
To see "first batch" in ours, the child wraps `streaming.training_splits` and `keras.Model.fit` with timers (the
real functions run); the marks are those of a callback added last to fit's list, so an epoch's time includes our
per-epoch save. "First step done" (the first batch's end) is the fair first-batch mark: in A the batch begins
before its images are decoded. Each mark also records the process's CPU seconds (all threads): on a shared machine
they move far less with other load than wall seconds do, and the load average is printed beside them.
Prints a table and the ratios, writes bench/results/seed_baseline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

RESULTS = HERE / "results" / "seed_baseline.json"
SIZE = (160, 160)
PRESET = "fast"
DATASET = "bench-photos"  # as bench_decode_cache builds it
SPAWN_ENV = "BENCH_SPAWN_T"
GOAL_FIRST_BATCH_S = 3.0


# --- the child processes ------------------------------------------------------------------------------------------


def _since(t0: float) -> float:
    return time.time() - t0


_CPU: dict[str, float] = {}  # this process's CPU seconds (all threads) at each mark: less moved by other load


def _at(t0: float, name: str) -> float:
    _CPU[name] = time.process_time()
    return _since(t0)


def _timer(t0: float):
    """A callback recording, in seconds since the process was spawned, the first batch and every epoch's ends."""
    import keras

    class Timer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.marks: dict[str, float] = {}
            self.epoch_begin: list[float] = []
            self.epoch_end: list[float] = []
            self.logs: list[dict] = []
            self.cpu_begin: list[float] = []
            self.cpu_end: list[float] = []

        def on_train_begin(self, logs=None):
            self.marks["fit_begin"] = _at(t0, "fit_begin")

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_begin.append(_since(t0))
            self.cpu_begin.append(time.process_time())

        def on_train_batch_begin(self, batch, logs=None):
            if "first_batch_begin" not in self.marks:
                self.marks["first_batch_begin"] = _at(t0, "first_batch_begin")

        def on_train_batch_end(self, batch, logs=None):
            if "first_step_done" not in self.marks:
                self.marks["first_step_done"] = _at(t0, "first_step_done")

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_end.append(_since(t0))
            self.cpu_end.append(time.process_time())
            self.logs.append({k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)})

        def report(self) -> dict:
            def durations(begin: list[float], end: list[float]) -> list[float]:
                return [end[0] - begin[0]] + [b - a for a, b in zip(end, end[1:], strict=False)]

            return {**self.marks, "epoch_seconds": durations(self.epoch_begin, self.epoch_end),
                    "epoch_cpu_seconds": durations(self.cpu_begin, self.cpu_end), "epoch_logs": self.logs,
                    "cpu": dict(_CPU), "loadavg_end": os.getloadavg()[0]}  # fmt: skip

    return Timer()


def worker_seeds(folder: Path, epochs: int, batch_size: int, seed: int) -> dict:
    t0 = float(os.environ[SPAWN_ENV])
    marks = {"python_up": _at(t0, "python_up")}
    import tensorflow as tf

    marks["tf_imported"] = _at(t0, "tf_imported")
    import keras

    from core.models import architectures

    marks["core_imported"] = _at(t0, "core_imported")
    keras.utils.set_random_seed(seed)
    marks["data_start"] = _at(t0, "data_start")
    train, val = keras.utils.image_dataset_from_directory(
        folder, validation_split=0.2, subset="both", seed=seed, image_size=SIZE, batch_size=batch_size,
        verbose=False,
    )  # fmt: skip
    k = len(train.class_names)
    n_train, n_val = len(train.file_paths), len(val.file_paths)
    train = train.cache().prefetch(tf.data.AUTOTUNE)
    val = val.cache().prefetch(tf.data.AUTOTUNE)
    marks["data_ready"] = _at(t0, "data_ready")  # files listed only: decoding happens during epoch 1
    model = architectures.build_model(PRESET, (*SIZE, 3), k)
    preset = architectures.get_preset(PRESET)
    architectures.compile_model(model, architectures.output_kind(PRESET, k), preset.label_mode, preset.optimizer,
                                preset.learning_rate)  # fmt: skip
    timer = _timer(t0)
    model.fit(train, validation_data=val, epochs=epochs, callbacks=[timer], verbose=0)
    marks["done"] = _at(t0, "done")
    return {**marks, **timer.report(), "train_images": n_train, "val_images": n_val,
            "preset_batch_size": preset.batch_size}  # fmt: skip


def worker_ours(epochs: int, batch_size: int, seed: int) -> dict:
    t0 = float(os.environ[SPAWN_ENV])
    marks = {"python_up": _at(t0, "python_up")}
    import tensorflow  # noqa: F401

    marks["tf_imported"] = _at(t0, "tf_imported")
    import keras

    from core.data import streaming
    from core.training import trainer

    marks["core_imported"] = _at(t0, "core_imported")
    timer = _timer(t0)
    real_splits, real_fit = streaming.training_splits, keras.Model.fit

    def timed_splits(*args, **kwargs):
        marks["data_start"] = _at(t0, "data_start")
        out = real_splits(*args, **kwargs)
        marks["data_ready"] = _at(t0, "data_ready")
        return out

    def fit_with_timer(self, *args, callbacks=None, **kwargs):
        return real_fit(self, *args, callbacks=[*(callbacks or []), timer], **kwargs)

    streaming.training_splits = timed_splits
    keras.Model.fit = fit_with_timer
    marks["run_start"] = _at(t0, "run_start")
    run = trainer.start_run(trainer.TrainRequest(dataset=DATASET, preset=PRESET, epochs=epochs,
                                                 batch_size=batch_size, seed=seed, image_size=SIZE, channels=3))  # fmt: skip
    marks["run_created"] = _at(t0, "run_created")
    status = trainer.train_run(run.path)
    marks["done"] = _at(t0, "done")
    if status.get("state") != "completed":
        raise SystemExit(f"our run ended {status.get('state')}: {status.get('error')}")
    return {**marks, **timer.report(), "train_images": status.get("train_images"),
            "val_images": status.get("val_images")}  # fmt: skip


# --- the parent ---------------------------------------------------------------------------------------------------


def spawn(worker: str, args: argparse.Namespace, folder: Path, report: Path) -> dict:
    """Run one child; its marks are seconds since this call spawned it (wall clock shared by both processes)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", worker, "--folder", str(folder),
           "--report", str(report), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--seed", str(args.seed)]  # fmt: skip
    load = os.getloadavg()[0]
    env = {**os.environ, SPAWN_ENV: repr(time.time())}
    t = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.time() - t
    if proc.returncode:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{worker} worker failed ({proc.returncode})")
    out = json.loads(report.read_text())
    out["wall_s"] = wall
    out["loadavg_start"] = load
    return out


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarise(r: dict) -> dict:
    later = r["epoch_seconds"][1:]
    mean_later = _mean(later)
    return {
        # phases from spawn to the first step's end; they add up to first_step_done_s
        "python_start_s": r["python_up"],
        "tf_import_s": r["tf_imported"] - r["python_up"],
        "core_import_s": r["core_imported"] - r["tf_imported"],
        "before_data_s": r["data_start"] - r["core_imported"],
        "data_s": r["data_ready"] - r["data_start"],
        "model_to_fit_s": r["fit_begin"] - r["data_ready"],
        "fit_to_first_batch_s": r["first_batch_begin"] - r["fit_begin"],
        "first_step_s": r["first_step_done"] - r["first_batch_begin"],
        "first_batch_begin_s": r["first_batch_begin"],
        "first_step_done_s": r["first_step_done"],
        "first_step_after_tf_s": r["first_step_done"] - r["tf_imported"],
        "data_start_to_first_step_s": r["first_step_done"] - r["data_start"],
        "epoch1_s": r["epoch_seconds"][0],
        "epochs2plus_s": mean_later,
        "epochs2plus_img_s": r["train_images"] / mean_later if mean_later else None,
        "end_to_end_s": r["wall_s"],
        "final_val_accuracy": (r["epoch_logs"][-1] if r["epoch_logs"] else {}).get("val_accuracy"),
        "cpu_tf_import_s": r["cpu"]["tf_imported"] - r["cpu"]["python_up"],
        "cpu_to_first_step_s": r["cpu"]["first_step_done"],
        "cpu_epoch1_s": r["epoch_cpu_seconds"][0],
        "cpu_epochs2plus_s": _mean(r["epoch_cpu_seconds"][1:]),
        "cpu_total_s": r["cpu"]["done"],
        "loadavg_start": r["loadavg_start"],
        "loadavg_end": r["loadavg_end"],
    }


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) and v < 1 else f"{v:.1f}" if isinstance(v, float) else str(v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000, help="photos in the folder (default 3000)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs for every path (default 3)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the fast preset's")
    parser.add_argument("--seed", type=int, default=None, help="default: our trainer's default seed")
    parser.add_argument("--worker", choices=("seeds", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()  # run_all.py passes every script the same arguments

    if args.worker:
        if args.worker == "seeds":
            result = worker_seeds(Path(args.folder), args.epochs, args.batch_size, args.seed)
        else:
            result = worker_ours(args.epochs, args.batch_size, args.seed)
        Path(args.report).write_text(json.dumps(result))
        return

    from bench_decode_cache import build_folder, warm_page_cache

    from core.data.datasets import DEFAULT_SEED

    if args.seed is None:
        args.seed = DEFAULT_SEED
    if args.batch_size is None:
        args.batch_size = 128  # the fast preset's (the seeds child reports the preset's, printed below)

    tmp = Path(tempfile.mkdtemp(prefix="bench-seed-baseline-"))
    try:
        os.environ["CONVNET_DATA_DIR"] = str(tmp / "data")
        os.environ["CONVNET_RUNS_DIR"] = str(tmp / "runs")
        for name in ("CONVNET_DECODE_CACHE_BYTES", "CONVNET_STREAM_ABOVE_BYTES", "CONVNET_LOGICAL_CPUS"):
            os.environ.pop(name, None)
        folder = tmp / "data" / DATASET
        build_s = build_folder(folder, args.images)
        folder_bytes = warm_page_cache(folder)
        t = time.time()
        subprocess.run([sys.executable, "-c", "import tensorflow"], cwd=REPO, check=True, capture_output=True)
        warm_import_s = time.time() - t
        raw = {}
        for label, worker in (("seeds", "seeds"), ("ours_first", "ours"), ("ours_second", "ours")):
            print(f"training: {label} ...", flush=True)
            raw[label] = spawn(worker, args, folder, tmp / f"{label}.json")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    s = {k: summarise(v) for k, v in raw.items()}
    if raw["seeds"]["preset_batch_size"] != args.batch_size:
        print(
            f"note: batch {args.batch_size} is not the {PRESET} preset's {raw['seeds']['preset_batch_size']}"
        )
    rows = [
        ("python start (s)", "python_start_s"),
        ("import tensorflow (s)", "tf_import_s"),
        ("import keras + core (s)", "core_import_s"),
        ("before data: start_run, run lock (s)", "before_data_s"),
        ("data [1] (s)", "data_s"),
        ("build + compile model, until fit (s)", "model_to_fit_s"),
        ("fit begins -> first batch begins (s)", "fit_to_first_batch_s"),
        ("first step: trace + 1 batch [2] (s)", "first_step_s"),
        ("= first step done, after spawn (s)", "first_step_done_s"),
        ("  of which after import tensorflow (s)", "first_step_after_tf_s"),
        ("  of which after data start (s)", "data_start_to_first_step_s"),
        ("epoch 1 (s)", "epoch1_s"),
        ("epochs 2+ (s/epoch)", "epochs2plus_s"),
        ("epochs 2+ (train img/s)", "epochs2plus_img_s"),
        ("end to end, spawn to exit (s)", "end_to_end_s"),
        ("final val_accuracy", "final_val_accuracy"),
        ("CPU s: import tensorflow", "cpu_tf_import_s"),
        ("CPU s: process start to first step done", "cpu_to_first_step_s"),
        ("CPU s: epoch 1", "cpu_epoch1_s"),
        ("CPU s: epochs 2+ (per epoch)", "cpu_epochs2plus_s"),
        ("CPU s: whole process", "cpu_total_s"),
        ("load average (1 min) at spawn", "loadavg_start"),
        ("load average (1 min) at exit", "loadavg_end"),
    ]
    print(f"\n{args.images} JPEGs 800x600 ({folder_bytes / 1e6:.0f} MB, built in {build_s:.1f} s) -> {SIZE[0]}x{SIZE[1]}x3,"
          f" preset {PRESET}, batch {args.batch_size}, {args.epochs} epochs, seed {args.seed}, {os.cpu_count()} CPUs;"
          f" train/val images: seeds {raw['seeds']['train_images']}/{raw['seeds']['val_images']},"
          f" ours {raw['ours_first']['train_images']}/{raw['ours_first']['val_images']}")  # fmt: skip
    print(f"{'wall seconds unless said':<42}{'seeds':>10}{'ours 1st':>10}{'ours 2nd':>10}")
    for label, key in rows:
        print(
            f"{label:<42}" + "".join(f"{_fmt(s[k][key]):>10}" for k in ("seeds", "ours_first", "ours_second"))
        )
    print(
        "[1] seeds: listing the files (decoding happens in epoch 1); ours: decoding (1st run) or the decode cache"
    )
    print("[2] seeds also decode the first batch's JPEGs here")

    ours_later = raw["ours_first"]["epoch_seconds"][1:] + raw["ours_second"]["epoch_seconds"][1:]
    ours_later_mean = _mean(ours_later)
    ours_later_cpu = _mean(
        raw["ours_first"]["epoch_cpu_seconds"][1:] + raw["ours_second"]["epoch_cpu_seconds"][1:]
    )

    def ratio(a, b):
        return a / b if a is not None and b else None

    ratios = {
        "epoch_throughput_ours_over_seeds_epochs2plus": ratio(s["seeds"]["epochs2plus_s"], ours_later_mean),
        "epoch_cpu_ours_over_seeds_epochs2plus": ratio(s["seeds"]["cpu_epochs2plus_s"], ours_later_cpu),
        "first_step_cpu_seeds_over_ours_second": ratio(
            s["seeds"]["cpu_to_first_step_s"], s["ours_second"]["cpu_to_first_step_s"]
        ),
        "epoch1_seeds_over_ours_second": ratio(s["seeds"]["epoch1_s"], s["ours_second"]["epoch1_s"]),
        "first_step_seeds_over_ours_second": ratio(
            s["seeds"]["first_step_done_s"], s["ours_second"]["first_step_done_s"]
        ),
        "first_step_after_tf_seeds_over_ours_second": ratio(
            s["seeds"]["first_step_after_tf_s"], s["ours_second"]["first_step_after_tf_s"]
        ),
        "first_batch_begin_seeds_over_ours_second": ratio(
            s["seeds"]["first_batch_begin_s"], s["ours_second"]["first_batch_begin_s"]
        ),
        "end_to_end_seeds_over_ours_first": ratio(
            s["seeds"]["end_to_end_s"], s["ours_first"]["end_to_end_s"]
        ),
        "end_to_end_seeds_over_ours_second": ratio(
            s["seeds"]["end_to_end_s"], s["ours_second"]["end_to_end_s"]
        ),
    }
    r = {k: _fmt(v) for k, v in ratios.items()}
    print(f"epoch throughput ours/seeds (epochs 2+, both our runs): {r['epoch_throughput_ours_over_seeds_epochs2plus']}x;"
          f" by CPU seconds {r['epoch_cpu_ours_over_seeds_epochs2plus']}x;"
          f" epoch 1 seeds/ours (2nd run): {r['epoch1_seeds_over_ours_second']}x")  # fmt: skip
    print(f"time to first batch seeds/ours (second run): {r['first_step_seeds_over_ours_second']}x from spawn,"
          f" {r['first_step_after_tf_seeds_over_ours_second']}x after import tensorflow"
          f" (batch begins: {r['first_batch_begin_seeds_over_ours_second']}x;"
          f" by CPU seconds: {r['first_step_cpu_seeds_over_ours_second']}x)")  # fmt: skip
    print(f"end to end seeds/ours: {r['end_to_end_seeds_over_ours_first']}x (1st run),"
          f" {r['end_to_end_seeds_over_ours_second']}x (2nd run)")  # fmt: skip
    second = s["ours_second"]
    met = second["first_step_done_s"] <= GOAL_FIRST_BATCH_S
    print(f"goal: second run's first batch <= {GOAL_FIRST_BATCH_S:.0f} s after the process starts: "
          f"{second['first_step_done_s']:.1f} s ({'met' if met else 'not met'}; import tensorflow is "
          f"{second['tf_import_s']:.1f} s of it, the rest {second['first_step_after_tf_s']:.1f} s;"
          f" a throwaway warm-up import took {warm_import_s:.1f} s)")  # fmt: skip

    from core.atomic import write_json

    write_json(
        RESULTS,
        {
            "images": args.images,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "preset": PRESET,
            "input_shape": [*SIZE, 3],
            "folder_bytes": folder_bytes,
            "warm_up_tf_import_s": warm_import_s,
            "summary": s,
            "ratios": ratios,
            "goal_first_batch_s": GOAL_FIRST_BATCH_S,
            "goal_met": met,
            "raw": raw,
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
            },
        },
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
