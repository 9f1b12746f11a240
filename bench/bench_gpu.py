"""On a machine with a GPU: is the GPU used, does memory growth hold, and would mixed precision pay for `fast`?

A benchmark, not a test (no GPU in CI). Bare `model.fit` of the `fast` preset on full Fashion-MNIST (Debian copy;
else the embedded sample), batch 128, 3 epochs per dtype policy (float32, mixed_float16, mixed_bfloat16), each in
its own process so one policy's graphs and memory do not carry into the next; steady epoch throughput and test
accuracy side by side. XLA is off, as in a run (`architectures.jit_setting`); `--xla` sets CONVNET_XLA=1 for the
children (Keras' default on a GPU: the README's mixed-precision row was measured that way, and shows its first-epoch
compile). Writes bench/results/gpu.json.
Usage: python bench/bench_gpu.py [--epochs N] [--batch B] [--xla]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
RESULTS = REPO / "bench" / "results"
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def one_policy(policy: str, epochs: int, batch: int) -> dict:
    """Runs in a child process: configure devices as a job does, set the policy, fit, score."""
    import keras
    import tensorflow as tf
    from bench_train import _steady  # this folder is on sys.path when a bench script runs

    from core.analysis.prediction import batched_outputs
    from core.data import datasets, keras_datasets
    from core.models import architectures
    from core.training.trainer import configure_devices

    devices = configure_devices()
    growth = [tf.config.experimental.get_memory_growth(g) for g in tf.config.list_physical_devices("GPU")]
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(213)
    name = "fashion_mnist" if keras_datasets.is_available("fashion_mnist") else "fashion-mnist-sample"
    info = datasets.get_dataset(name)
    h, w, c = datasets.default_input_shape(info)
    data = datasets.load_splits(name, (h, w), c, val_split=0.0)
    k = len(info.class_names)
    p = architectures.get_preset("fast")
    kind = architectures.output_kind("fast", k)
    model = architectures.build_model("fast", (h, w, c), k)
    architectures.compile_model(model, kind, p.label_mode, p.optimizer, p.learning_rate)
    train_ds = datasets.make_tf_dataset(data["train"], batch, shuffle=True, seed=213)
    seconds = []
    for _ in range(epochs):
        t = time.perf_counter()
        model.fit(train_ds, epochs=1, verbose=0, shuffle=False)
        seconds.append(time.perf_counter() - t)
    out = batched_outputs(model, data["test"].x.astype("float32"), batch_size=1000)
    acc = float((out.argmax(1) == data["test"].y).mean())
    steady = _steady(seconds)
    return {"policy": policy, "devices": devices, "memory_growth": growth, "dataset": name,
            "epoch_s": [round(s, 2) for s in seconds], "images_per_s": round(len(data["train"].y) / steady),
            "test_accuracy": round(acc, 4)}  # fmt: skip


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] == "--child":
        print(json.dumps(one_policy(args[1], int(args[2]), int(args[3]))))
        return
    epochs = int(args[args.index("--epochs") + 1]) if "--epochs" in args else 3
    batch = int(args[args.index("--batch") + 1]) if "--batch" in args else 128
    env = {**os.environ, **({"CONVNET_XLA": "1"} if "--xla" in args else {})}
    rows = []
    for policy in POLICIES:
        done = subprocess.run([sys.executable, __file__, "--child", policy, str(epochs), str(batch)],
                              cwd=REPO, env=env, capture_output=True, text=True)  # fmt: skip
        if done.returncode:
            print(f"  {policy}: failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"  {policy}: {r['devices']}, memory growth {r['memory_growth']}, epochs {r['epoch_s']} s, "
              f"{r['images_per_s']:,} img/s, test {r['test_accuracy']:.2%}", flush=True)  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gpu.json").write_text(
        json.dumps({"rows": rows, "when": time.strftime("%Y-%m-%d %H:%M")}, indent=2)
    )


if __name__ == "__main__":
    main()
