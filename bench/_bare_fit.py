"""The baseline: the same preset and data trained by a bare `model.fit` on numpy arrays, no ConvNet Studio harness.

Prints one JSON line: per-epoch seconds and images per epoch."""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from core.data import datasets  # noqa: E402
from core.models import architectures


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t)


def main() -> None:
    dataset, preset, epochs, batch, limit = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        int(sys.argv[4]),
        sys.argv[5],
    )
    limit = int(limit) or None
    keras.utils.set_random_seed(213)
    info = datasets.get_dataset(dataset)
    h, w, c = datasets.default_input_shape(info)
    data = datasets.load_splits(dataset, (h, w), c, splits=("train", "val"), limit=limit)
    k = len(info.class_names)
    model = architectures.build_model(preset, (h, w, c), k)
    kind = architectures.output_kind(preset, k)
    p = architectures.get_preset(preset)
    architectures.compile_model(model, kind, p.label_mode, p.optimizer, p.learning_rate)
    timer = EpochTimer()
    xtr, ytr = data["train"].x.astype("float32"), data["train"].y
    val = (data["val"].x.astype("float32"), data["val"].y)
    model.fit(xtr, ytr, batch_size=batch, epochs=epochs, validation_data=val, callbacks=[timer], verbose=0)
    print(json.dumps({"seconds": timer.seconds, "images": len(ytr)}))


if __name__ == "__main__":
    main()
