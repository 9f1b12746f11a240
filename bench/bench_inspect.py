"""Feature-map display speed: our tiled uint8 images vs the notebooks' matplotlib subplot grid.

Run from the repo root: `.venv/bin/python bench/bench_inspect.py [--reps N]`. Prints a table and writes
bench/results/inspect.json. Both paths use the same extractor output, so the difference is the drawing; the
feature extraction is timed inside both so the numbers are what a person waits for per image. Goal: (a) <= 300 ms.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from core.analysis import inspection  # noqa: E402
from core.atomic import write_json  # noqa: E402

INPUT_SHAPE = (200, 200, 3)
EXPECTED_PARAMS = 622_753
RESULTS = Path(__file__).resolve().parent / "results" / "inspect.json"


def build_jedi_sith_binary() -> tuple[keras.Model, str]:
    """The preset from core.models.architectures when it exists; otherwise the same layers inline."""
    try:
        from core.models.architectures import build_model

        return build_model("jedi-sith-binary", INPUT_SHAPE, 2), "core.models.architectures.build_model"
    except ImportError:
        pass
    # Inline copy of the notebooks' jedi-sith-binary network (used only if core.models.architectures is missing).
    layers = keras.layers
    inputs = keras.Input(INPUT_SHAPE)
    x = layers.RandomFlip("horizontal_and_vertical")(inputs)
    x = layers.RandomRotation(0.2)(x)
    x = layers.RandomContrast(0.2)(x)
    x = layers.RandomZoom(height_factor=(-0.3, -0.2))(x)
    x = layers.Rescaling(1.0 / 255)(x)
    x = layers.Conv2D(16, 3, activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    x = layers.MaxPooling2D(2)(x)
    for filters in (32, 64, 64, 64):
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Dropout(0.2)(layers.Flatten()(x))
    x = layers.Dropout(0.2)(layers.Dense(512, activation="relu")(x))
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x)), "inline"


def ours(extractor: inspection.FeatureMapExtractor, image: np.ndarray) -> list[np.ndarray]:
    """(a) one tiled, colour-mapped uint8 image per conv layer."""
    return [inspection.apply_colormap(inspection.tile_maps(maps, cols=8)) for _, maps in extractor(image)]


def notebook_way(extractor: inspection.FeatureMapExtractor, image: np.ndarray) -> list[tuple[int, int]]:
    """(b) a matplotlib figure per layer, one subplot per feature map in 8 columns, rendered to Agg."""
    sizes = []
    for _, maps in extractor(image):
        c = maps.shape[-1]
        rows = math.ceil(c / 8)
        fig = Figure(figsize=(8 * 1.5, rows * 1.5), dpi=100)
        canvas = FigureCanvasAgg(fig)
        axes = fig.subplots(rows, 8, squeeze=False)
        for i, ax in enumerate(axes.flat):
            if i < c:
                ax.imshow(maps[..., i], cmap="viridis")
            ax.axis("off")
        canvas.draw()
        sizes.append(canvas.get_width_height())
    return sizes


def timed(fn, reps: int) -> list[float]:
    fn()  # warm-up: first call traces/allocates
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions of our path (after a warm-up)")
    parser.add_argument(
        "--notebook-reps", type=int, default=3, help="timed repetitions of the matplotlib path"
    )
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    model, source = build_jedi_sith_binary()
    params = model.count_params()
    image = np.random.default_rng(0).uniform(0, 255, INPUT_SHAPE).astype(np.float32)

    t0 = time.perf_counter()
    extractor = inspection.FeatureMapExtractor(model)
    build_ms = (time.perf_counter() - t0) * 1000.0
    shapes = {name: list(maps.shape) for name, maps in extractor(image)}

    extract_ms = timed(lambda: extractor(image), args.reps)
    ours_ms = timed(lambda: ours(extractor, image), args.reps)
    notebook_ms = timed(lambda: notebook_way(extractor, image), args.notebook_reps)
    gradcam_ms = timed(lambda: inspection.grad_cam(model, image, output_kind="sigmoid"), args.reps)

    med = {
        "extract_only": statistics.median(extract_ms),
        "ours": statistics.median(ours_ms),
        "notebook": statistics.median(notebook_ms),
        "grad_cam": statistics.median(gradcam_ms),
    }
    ratio = med["notebook"] / med["ours"]

    print(
        f"jedi-sith-binary {INPUT_SHAPE}, {params:,} params (expected {EXPECTED_PARAMS:,}), built via {source}"
    )
    print(f"conv layers: {shapes}")
    print(f"extractor build (once): {build_ms:.1f} ms")
    print(f"{'path':<46}{'median ms':>10}{'reps':>6}")
    print(f"{'feature extraction only':<46}{med['extract_only']:>10.1f}{len(extract_ms):>6}")
    print(f"{'(a) ours: extract + tile_maps + apply_colormap':<46}{med['ours']:>10.1f}{len(ours_ms):>6}")
    print(
        f"{'(b) notebooks: extract + subplot grid on Agg':<46}{med['notebook']:>10.1f}{len(notebook_ms):>6}"
    )
    print(f"{'grad_cam (one image, cached grad model)':<46}{med['grad_cam']:>10.1f}{len(gradcam_ms):>6}")
    print(f"(b)/(a) = {ratio:.1f}x; goal (a) <= 300 ms: {'met' if med['ours'] <= 300 else 'NOT met'}")

    write_json(
        RESULTS,
        {
            "benchmark": "feature-map display, jedi-sith-binary",
            "input_shape": list(INPUT_SHAPE),
            "params": params,
            "model_source": source,
            "conv_layer_shapes": shapes,
            "extractor_build_ms": round(build_ms, 2),
            "median_ms": {k: round(v, 2) for k, v in med.items()},
            "runs_ms": {
                "extract_only": [round(v, 2) for v in extract_ms],
                "ours": [round(v, 2) for v in ours_ms],
                "notebook": [round(v, 2) for v in notebook_ms],
                "grad_cam": [round(v, 2) for v in gradcam_ms],
            },
            "ratio_notebook_over_ours": round(ratio, 2),
            "goal_ours_ms": 300,
            "goal_met": med["ours"] <= 300,
            "machine": {
                "python": platform.python_version(),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "matplotlib": matplotlib.__version__,
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
            },
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
