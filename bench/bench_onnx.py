"""ONNX export beside TFLite export, per preset: seconds for `export(run, fmt)` (load, convert, check, write), the
file size, and the ONNX Runtime check's largest probability difference from Keras.

Run from the repo root: `.venv/bin/python bench/bench_onnx.py [--presets fast,jedi-sith-binary,...]`. Models are
built with random weights (transfer bases too: ImageNet weights need the network; conversion does not depend on
them). Prints a table and writes bench/results/onnx.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.analysis import export as ex  # noqa: E402
from core.atomic import write_json  # noqa: E402
from core.models.architectures import build_model, output_kind  # noqa: E402

SHAPES = {
    "fast": (28, 28, 1),
    "jedi-sith-binary": (200, 200, 3),
    "cats-dogs-2": (160, 160, 3),
    "mobilenetv2-transfer": (160, 160, 3),
}
RESULTS = Path(__file__).resolve().parent / "results" / "onnx.json"


def run_dir_for(root: Path, preset: str, classes: int = 3) -> Path:
    shape = SHAPES[preset]
    model = build_model(preset, shape, classes, weights=None)
    run_dir = root / f"run-{preset}"
    run_dir.mkdir(parents=True)
    model.save(run_dir / "model.keras")
    config = {"run_id": run_dir.name, "preset": preset, "class_names": [f"c{i}" for i in range(classes)],
              "input_shape": list(shape), "output_kind": output_kind(preset, classes)}  # fmt: skip
    (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default=",".join(SHAPES))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        for preset in args.presets.split(","):
            run_dir = run_dir_for(Path(tmp), preset)
            row: dict = {"preset": preset, "shape": SHAPES[preset]}
            for fmt in ("onnx", "tflite"):
                checks: list = []
                t0 = time.perf_counter()
                out = ex.export(
                    run_dir,
                    fmt,
                    Path(tmp) / f"{preset}.{fmt}",
                    on_check=lambda _f, c, found=checks: found.append(c),
                )
                row[f"{fmt}_s"] = round(time.perf_counter() - t0, 2)
                row[f"{fmt}_mb"] = round(out.stat().st_size / 1e6, 2)
                if checks:
                    row["onnx_max_abs_diff"] = checks[0].max_abs_diff
                    row["onnx_top1"] = checks[0].top1_agreement
            rows.append(row)
            print(f"{preset:22s} onnx {row['onnx_s']:6.2f} s {row['onnx_mb']:7.2f} MB  max|dp| "
                  f"{row['onnx_max_abs_diff']:.1e} top1 {row['onnx_top1']:.0%}   tflite {row['tflite_s']:6.2f} s "
                  f"{row['tflite_mb']:7.2f} MB", flush=True)  # fmt: skip
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    write_json(RESULTS, {"rows": rows, "machine": platform.platform(), "cpus": os.cpu_count(), "load": load})
    print(f"load average {load}; results in {RESULTS}")


if __name__ == "__main__":
    main()
