"""What a filter looks for: seconds to visualise a layer (the UI's defaults: first 64 filters, 30 steps each).

Run from the repo root: `.venv/bin/python bench/bench_filters.py`. Prints a table and writes
bench/results/filters.json. Models are built with random weights (the cost does not depend on training); each
layer is timed twice, the first including the tf.function trace.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.analysis import filter_viz  # noqa: E402
from core.atomic import write_json  # noqa: E402
from core.models import architectures  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "filters.json"
CASES = [  # preset, input, which of filter_layers(model) to time
    ("fast", (28, 28, 1), [0, 1]),
    ("jedi-sith-binary", (200, 200, 3), [0, -1]),
    ("mobilenetv2-transfer", (160, 160, 3), [0, 26]),  # Conv1 and a block in the middle of the nested base
]


def main() -> None:
    rows = []
    for preset, shape, picks in CASES:
        model = architectures.build_model(preset, shape, 2, weights=None)
        layers = filter_viz.filter_layers(model)
        for name in [layers[i].name for i in picks]:
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                result = filter_viz.maximise(model, name)
                times.append(time.perf_counter() - t0)
            row = {"preset": preset, "input": "×".join(map(str, shape)), "layer": name,
                   "filters": len(result.filters), "first_s": times[0], "again_s": times[1]}  # fmt: skip
            rows.append(row)
            print(f"{preset:22s} {row['input']:12s} {name:40s} {row['filters']:3d} filters  "
                  f"{times[0]:6.1f} s (first)  {times[1]:6.1f} s", flush=True)  # fmt: skip
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    write_json(RESULTS, {"rows": rows, "cpus": os.cpu_count(), "load_avg_1m": load})


if __name__ == "__main__":
    main()
