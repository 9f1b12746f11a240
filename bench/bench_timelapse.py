"""What recording the time-lapse and the training dynamics costs, measured side by side in one process.

The `fast` preset trains on the embedded Fashion-MNIST sample (the trainer's split, seed and batch size) with
the two recorders (core.training.timelapse.TimeLapse with the default pinned images, one per class, and
core.training.dynamics.Dynamics). On a shared CPU, separate fits drift apart by more than the cost being
measured, so the main figure interleaves: in one fit the recorders do their end-of-epoch work on every other
epoch only, and epochs with and without are compared (each epoch timed from its start to the next one's, so all
end-of-epoch work is inside), by the process's CPU time (what other processes disturb least) and wall time.
Two rounds swap which epochs record. Also reported: the recorders' own time on the
training thread per epoch, their one-time start (building and tracing the recording functions, the frame
before training), and whole fits with and without, alternating. Goal: <= 5% of an epoch.

Writes bench/results/timelapse.json. Usage: python bench/bench_timelapse.py [--quick]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = REPO / "bench" / "results"
DATASET = "fashion-mnist-sample"


def _callbacks():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """First in the list: an epoch lasts from its start to the next one's (or the end of training)."""

        def on_train_begin(self, logs=None):
            self.marks: list[tuple[float, float]] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.marks.append((time.perf_counter(), time.process_time()))

        def on_train_end(self, logs=None):
            self.marks.append((time.perf_counter(), time.process_time()))

        @property
        def seconds(self) -> list[float]:
            return [b[0] - a[0] for a, b in zip(self.marks, self.marks[1:], strict=False)]

        @property
        def cpu_seconds(self) -> list[float]:
            """CPU time of this process (all its threads) per epoch: what other processes' load disturbs least."""
            return [b[1] - a[1] for a, b in zip(self.marks, self.marks[1:], strict=False)]

    class EveryOther(keras.callbacks.Callback):
        """The wrapped recorder's end-of-epoch work on epochs whose index has the given parity only."""

        def __init__(self, inner, parity: int) -> None:
            super().__init__()
            self.inner, self.parity = inner, parity
            self.cpu: list[float] = []  # process CPU time of each end-of-epoch call

        def set_model(self, model):
            super().set_model(model)
            self.inner.set_model(model)

        def on_train_begin(self, logs=None):
            self.inner.on_train_begin(logs)

        def on_epoch_end(self, epoch, logs=None):
            if epoch % 2 == self.parity:
                t0 = time.process_time()
                self.inner.on_epoch_end(epoch, logs)
                self.cpu.append(time.process_time() - t0)

        def on_train_end(self, logs=None):
            self.inner.on_train_end(logs)

    return EpochTimer, EveryOther


def _fit(data, cfg, epochs: int, recorded: bool, parity: int | None = None) -> dict:
    """One fit; with `parity`, the recorders work only after the epochs of that parity (0-based index)."""
    import keras

    from core.data import datasets
    from core.models import architectures
    from core.training import pinned
    from core.training.dynamics import Dynamics
    from core.training.timelapse import TimeLapse

    EpochTimer, EveryOther = _callbacks()
    keras.utils.set_random_seed(cfg.seed)
    model = architectures.build_model(cfg.preset, cfg.input_shape, cfg.num_classes)
    architectures.compile_model(model, cfg.output_kind, cfg.label_mode, cfg.optimizer, cfg.learning_rate)
    train, val = data["train"], data["val"]
    k, mode = cfg.num_classes, cfg.label_mode
    train_ds = datasets.make_tf_dataset(train, cfg.batch_size, shuffle=True, seed=cfg.seed, num_classes=k,
                                        label_mode=mode)  # fmt: skip
    val_ds = datasets.make_tf_dataset(val, cfg.batch_size, shuffle=False, num_classes=k, label_mode=mode)
    timer = EpochTimer()
    callbacks: list = [timer]
    with tempfile.TemporaryDirectory() as run_dir:
        if recorded:
            h, w, c = cfg.input_shape
            tl = TimeLapse(Path(run_dir), pinned.choose(cfg, val), list(cfg.class_names), cfg.output_kind)
            dyn = Dynamics(Path(run_dir), pinned.probe_images(train, cfg.seed, (h, w), c))
            wrapped = [EveryOther(tl, parity or 0), EveryOther(dyn, parity or 0)]
            callbacks += [tl, dyn] if parity is None else wrapped
        start = time.perf_counter()
        model.fit(
            train_ds, validation_data=val_ds, epochs=epochs, shuffle=False, callbacks=callbacks, verbose=0
        )
        out: dict = {
            "epoch_s": timer.seconds,
            "epoch_cpu_s": timer.cpu_seconds,
            "total_s": time.perf_counter() - start,
        }
        if recorded:
            cpu = [a + b for a, b in zip(wrapped[0].cpu, wrapped[1].cpu, strict=True)]
            out.update(timelapse_s=tl.seconds, dynamics_s=[r["seconds"] for r in dyn.rows], frame_bytes=tl.sizes,
                       pinned=len(tl.pins), recorder_cpu_s=cpu)  # fmt: skip
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def main() -> None:
    from core.data import datasets
    from core.training import trainer

    quick = "--quick" in sys.argv
    epochs, whole_epochs = (7, 3) if quick else (13, 5)
    cfg = trainer.resolve(trainer.TrainRequest(dataset=DATASET, preset="fast", epochs=epochs))
    h, w, c = cfg.input_shape
    data = datasets.load_splits(DATASET, (h, w), c, val_split=cfg.val_split, seed=cfg.seed,
                                splits=("train", "val"))  # fmt: skip
    _fit(data, cfg, 1, False)  # warm-up: the first fit in a process pays TensorFlow's one-time set-up

    # 1. interleaved: epoch 0 (tracing, warm-up) left out; the recorders' first epoch traces Dynamics, so the
    # epochs compared are those after it
    split: dict[str, list[float]] = {"with": [], "without": [], "cpu_with": [], "cpu_without": []}
    own: list[float] = []
    own_cpu: list[float] = []
    interleaved = []
    for parity in (1, 0):
        run = _fit(data, cfg, epochs, True, parity)
        interleaved.append(run)
        for i, (s, cpu) in enumerate(zip(run["epoch_s"], run["epoch_cpu_s"], strict=True)):
            if i >= 2 + parity:  # past warm-up and the recorders' first (tracing) epoch
                kind = "with" if i % 2 == parity else "without"
                split[kind].append(s)
                split[f"cpu_{kind}"].append(cpu)
        own += [t + d for t, d in zip(run["timelapse_s"][2:], run["dynamics_s"][1:], strict=False)]
        own_cpu += run["recorder_cpu_s"][1:]
    bare, rec = median(split["without"]), median(split["with"])
    cpu_bare, cpu_rec = median(split["cpu_without"]), median(split["cpu_with"])
    per_epoch, per_epoch_cpu = median(own), median(own_cpu)
    start = median(r["timelapse_s"][0] + r["dynamics_s"][0] - _mean(r["dynamics_s"][1:]) for r in interleaved)

    # 2. whole fits, alternating: everything included (start, tracing), but drifting with the machine's load
    whole: dict[str, list[float]] = {"without": [], "with": []}
    for mode in ("without", "with", "with", "without"):
        whole[mode].append(_fit(data, cfg, whole_epochs, mode == "with")["total_s"])

    summary = {
        "dataset": DATASET, "preset": "fast", "batch": cfg.batch_size, "train_images": len(data["train"]),
        "pinned": interleaved[0]["pinned"], "interleaved_epochs": epochs,
        "epochs": split, "median_epoch_without_s": bare, "median_epoch_with_s": rec, "epoch_ratio": rec / bare,
        "median_epoch_cpu_without_s": cpu_bare, "median_epoch_cpu_with_s": cpu_rec, "epoch_cpu_ratio": cpu_rec / cpu_bare,
        "recorder_s_per_epoch": per_epoch, "recorder_share_of_epoch": per_epoch / bare,
        "recorder_cpu_s_per_epoch": per_epoch_cpu, "recorder_cpu_share_of_epoch": per_epoch_cpu / cpu_bare,
        "start_cost_s": start, "whole_fit_epochs": whole_epochs, "whole_fit_s": whole,
        "whole_fit_ratio": median(whole["with"]) / median(whole["without"]),
        "frame_bytes": interleaved[0]["frame_bytes"][-1], "runs": interleaved,
    }  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "timelapse.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"fast on {DATASET}: {summary['train_images']} training images, batch {cfg.batch_size}, "
          f"{summary['pinned']} pinned images")  # fmt: skip
    print(f"{'':52s} {'without':>9s} {'with':>9s} {'ratio':>7s}")
    print(f"{'epoch CPU time, interleaved in one fit (median, s)':52s} {cpu_bare:9.3f} {cpu_rec:9.3f} "
          f"{cpu_rec / cpu_bare:7.3f}")  # fmt: skip
    print(
        f"{'epoch wall time, interleaved in one fit (median, s)':52s} {bare:9.3f} {rec:9.3f} {rec / bare:7.3f}"
    )
    print(f"{f'whole fit of {whole_epochs} epochs, alternating (median, s)':52s} "
          f"{median(whole['without']):9.2f} {median(whole['with']):9.2f} {summary['whole_fit_ratio']:7.3f}")  # fmt: skip
    print(f"recorders' own time on the training thread: {per_epoch * 1000:.1f} ms an epoch = "
          f"{per_epoch / bare:.1%} of an epoch's wall time (goal <= 5%)")  # fmt: skip
    print(f"recorders' CPU time: {per_epoch_cpu * 1000:.1f} ms an epoch = {per_epoch_cpu / cpu_bare:.1%} of an "
          "epoch's CPU time (the write thread's share is in the interleaved ratio)")  # fmt: skip
    print(f"one-time start (build + trace + frame before training): {start:.2f} s; "
          f"a frame file: {summary['frame_bytes']:,} bytes")  # fmt: skip


if __name__ == "__main__":
    main()
