"""Training benchmarks, measured side by side in one run (a benchmark, not a timed test).

1. Harness overhead: the same preset and data trained by `python -m core train` (our job: tf.data, callbacks,
   progress file, per-epoch atomic model save) and by a bare `model.fit` script -> throughput ratio (goal >= 0.98).
2. Time to 90% test accuracy on full Fashion-MNIST (Debian copy; else the embedded sample, said so): our `fast`
   preset vs the notebook CNN (`fashion-cnn`), both trained by our code, test accuracy checked after each epoch.

Writes bench/results/train.json and prints a table. Usage: python bench/bench_train.py [--quick]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = REPO / "bench" / "results"


def _steady(seconds: list[float]) -> float:
    """Mean epoch time without the first epoch (tracing and warm-up)."""
    rest = seconds[1:] or seconds
    return sum(rest) / len(rest)


def overhead(dataset: str, preset: str, epochs: int, batch: int, limit: int, rounds: int = 2) -> dict:
    """Alternate bare and ours `rounds` times so background load hits both alike; report the median ratio."""
    results = [_overhead_once(dataset, preset, epochs, batch, limit) for _ in range(rounds)]
    ratios = sorted(r["ratio"] for r in results)
    return {**results[0], "rounds": results, "ratio": ratios[len(ratios) // 2] if len(ratios) % 2 else
            sum(ratios[len(ratios) // 2 - 1 : len(ratios) // 2 + 1]) / 2}  # fmt: skip


def _overhead_once(dataset: str, preset: str, epochs: int, batch: int, limit: int) -> dict:
    env = {**os.environ}
    with tempfile.TemporaryDirectory() as runs_dir:
        env["CONVNET_RUNS_DIR"] = runs_dir
        bare = subprocess.run([sys.executable, str(REPO / "bench" / "_bare_fit.py"), dataset, preset, str(epochs),
                               str(batch), str(limit)], cwd=REPO, env=env, capture_output=True, text=True, check=True)  # fmt: skip
        bare_res = json.loads(bare.stdout.strip().splitlines()[-1])
        ours = subprocess.run([sys.executable, "-m", "core", "train", "--dataset", dataset, "--preset", preset,
                               "--epochs", str(epochs), "--batch-size", str(batch), "--quiet"]
                              + (["--limit", str(limit)] if limit else []),
                              cwd=REPO, env=env, capture_output=True, text=True, check=True)  # fmt: skip
        run_id = ours.stdout.strip().splitlines()[-1]
        from core.training import runs

        os.environ["CONVNET_RUNS_DIR"] = runs_dir
        epochs_rec, _ = runs.read_progress(runs.get_run(run_id).path)
        ours_seconds = [e["seconds"] for e in epochs_rec]
        n = runs.get_run(run_id).status["train_images"]
    bare_ips = bare_res["images"] / _steady(bare_res["seconds"])
    ours_ips = n / _steady(ours_seconds)
    return {"dataset": dataset, "preset": preset, "epochs": epochs, "batch": batch,
            "bare_epoch_s": bare_res["seconds"], "ours_epoch_s": ours_seconds,
            "bare_images_per_s": bare_ips, "ours_images_per_s": ours_ips, "ratio": ours_ips / bare_ips}  # fmt: skip


def time_to_accuracy(dataset: str, preset: str, target: float, max_epochs: int, batch: int) -> dict:
    """Train one epoch at a time with our pipeline; stop when the test accuracy reaches the target."""
    import keras

    from core.data import datasets
    from core.models import architectures

    keras.utils.set_random_seed(213)
    info = datasets.get_dataset(dataset)
    h, w, c = datasets.default_input_shape(info)
    data = datasets.load_splits(dataset, (h, w), c, val_split=0.0)
    test = data["test"]
    k = len(info.class_names)
    p = architectures.get_preset(preset)
    kind = architectures.output_kind(preset, k)
    model = architectures.build_model(preset, (h, w, c), k)
    architectures.compile_model(model, kind, p.label_mode, p.optimizer, p.learning_rate)
    train_ds = datasets.make_tf_dataset(data["train"], batch, shuffle=True, seed=213)
    xt = test.x.astype("float32")
    fit_s, history = 0.0, []
    for epoch in range(1, max_epochs + 1):
        t = time.perf_counter()
        model.fit(train_ds, epochs=1, verbose=0, shuffle=False)
        fit_s += time.perf_counter() - t
        from core.analysis.prediction import batched_outputs
        from core.analysis.probabilities import to_probabilities

        probs = to_probabilities(batched_outputs(model, xt, batch_size=1000), kind)
        acc = float((probs.argmax(1) == test.y).mean())
        history.append({"epoch": epoch, "train_s": round(fit_s, 2), "test_accuracy": round(acc, 4)})
        print(f"  {preset}: epoch {epoch} {fit_s:6.1f} s  test acc {acc:.4f}", flush=True)
        if acc >= target:
            break
    reached = history[-1]["test_accuracy"] >= target
    return {"preset": preset, "dataset": dataset, "target": target, "batch": batch, "reached": reached,
            "seconds_to_target": history[-1]["train_s"] if reached else None, "history": history}  # fmt: skip


def main() -> None:
    quick = "--quick" in sys.argv
    from core.data import keras_datasets

    full = keras_datasets.is_available("fashion_mnist") and not quick
    dataset = "fashion_mnist" if full else "fashion-mnist-sample"
    if not full:
        print("note: full Fashion-MNIST not available (apt-get install dataset-fashion-mnist) or --quick: "
              "using the embedded sample")  # fmt: skip
    print(f"== harness overhead ({dataset}, fast preset)")
    ov = overhead(dataset, "fast", epochs=3 if full else 4, batch=128, limit=0)
    for r in ov["rounds"]:
        print(f"  bare model.fit: {r['bare_images_per_s']:.0f} img/s   python -m core train: "
              f"{r['ours_images_per_s']:.0f} img/s   ratio {r['ratio']:.3f}")  # fmt: skip
    print(f"  median ratio {ov['ratio']:.3f} (goal >= 0.98)")
    print(f"== time to 90% test accuracy ({dataset})")
    target = 0.90 if full else 0.85
    fast = time_to_accuracy(dataset, "fast", target, max_epochs=15, batch=128)
    notebook = time_to_accuracy(dataset, "fashion-cnn", target, max_epochs=15, batch=32)
    out = {"machine": {"cpus": os.cpu_count()}, "dataset": dataset, "overhead": ov, "fast": fast,
           "notebook_cnn": notebook, "when": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train.json").write_text(json.dumps(out, indent=2))
    print("\n| measure | value |\n|---|---|")
    print(f"| harness throughput / bare model.fit | {ov['ratio']:.3f} |")
    for name, r in (("fast", fast), ("fashion-cnn (notebook, batch 32)", notebook)):
        v = (
            f"{r['seconds_to_target']:.1f} s"
            if r["reached"]
            else f"not reached in {len(r['history'])} epochs"
        )
        print(f"| {name}: train time to {target:.0%} test acc | {v} |")
    if fast["reached"] and notebook["reached"]:
        print(
            f"| speed-up fast vs notebook CNN | {notebook['seconds_to_target'] / fast['seconds_to_target']:.1f}x |"
        )


if __name__ == "__main__":
    main()
