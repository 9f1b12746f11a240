"""Run every benchmark in turn (`make bench`); each prints its table and writes bench/results/<name>.json."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    failed = []
    for script in (
        "bench_cold_start.py",
        "bench_train.py",
        "bench_inspect.py",
        "bench_overview.py",
        "bench_distribute.py",
        "bench_decode_cache.py",
        "bench_seed_baseline.py",
        "bench_warm_start.py",
        "bench_timelapse.py",
        "bench_filters.py",
        "bench_projector.py",
        "bench_fingerprint.py",
        "bench_onnx.py",
        "bench_unfamiliar.py",
        "bench_tune.py",
        "bench_dataset_build.py",
        "bench_sweep.py",
        "bench_improve.py",
        "bench_audit.py",
        "bench_recipe.py",
        "bench_epoch_stalls.py",
        *(["bench_gpu.py"] if shutil.which("nvidia-smi") else []),  # dtype policies on a GPU only
    ):
        print(f"\n######## {script}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *sys.argv[1:]], cwd=HERE.parent).returncode:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)
