"""What fixing a dataset in place costs (core.data.fixes), on a copy of the embedded sample (7,000 PNGs).

Run from the repo root: `.venv/bin/python bench/bench_improve.py [--images N]`. In a temp data/runs folder, times:
  (a) one bulk relabel of N images (one undoable group, journal written atomically) and its undo;
  (b) scanning the dataset for the catalog before and after (counts follow the files, nothing to refresh);
  (c) load_splits from the decode cache (a hit) vs right after a fix (the fingerprint changed: every image is
      decoded again once, the price of a fix for the next training run);
  (d) the nearest-training-image search of core.analysis.hardest: 5,000 x 128 unit embeddings, 40 queries;
  (e) with --with-run: a `fast` run (1 epoch) on the copy, then the evidence for 4 mistakes (Grad-CAM and nearest
      training images): the first time (embeds the training split) and again (embeddings read from the run folder).
Prints the figures and ratios, writes bench/results/improve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "improve.json"


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _evidence_times() -> dict:
    from core.analysis import evaluation_runs, hardest
    from core.models import loading
    from core.training import runs, trainer

    run = trainer.start_run(trainer.TrainRequest(dataset="sample", preset="fast", epochs=1))
    trainer.train_run(run.path)
    run = runs.get_run(run.run_id)
    result = evaluation_runs.evaluate_run(run.run_id)
    lm = loading.load_run_model(run)
    wrong = np.flatnonzero(result.labels != result.predictions)[:4]
    _, first = _timed(lambda: hardest.explain(run, lm, result, wrong))
    _, again = _timed(lambda: hardest.explain(run, lm, result, wrong))
    n = len(hardest.train_index(run, lm.model).paths)
    return {"evidence_first_s": first, "evidence_again_s": again, "train_embedded": n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=500, help="images relabelled in one bulk action")
    ap.add_argument("--with-run", action="store_true", help="also train a fast run and time the evidence")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-improve-"))
    try:
        os.environ["CONVNET_DATA_DIR"] = str(tmp / "data")
        os.environ["CONVNET_RUNS_DIR"] = str(tmp / "runs")
        from core.analysis import hardest
        from core.data import datasets, fixes
        from core.paths import embedded_dataset_dir

        shutil.copytree(embedded_dataset_dir(), tmp / "data" / "sample")
        info, scan_s = _timed(lambda: datasets.get_dataset("sample"))
        classes = info.class_names
        train = info.files["train"]
        picks = [p.relative_to(info.path).as_posix() for p in train[classes[0]][: args.images]]
        (done, failed), relabel_s = _timed(lambda: fixes.apply("sample", "relabel", picks, classes[1]))
        assert len(done) == len(picks) and not failed
        after, scan2_s = _timed(lambda: datasets.get_dataset("sample"))
        assert after.counts["train"][classes[1]] == info.counts["train"][classes[1]] + len(picks)
        _, undo_s = _timed(lambda: fixes.undo("sample"))
        _, first_s = _timed(lambda: datasets.load_splits("sample", (28, 28), 1))
        _, hit_s = _timed(lambda: datasets.load_splits("sample", (28, 28), 1))
        fixes.set_aside("sample", picks[0])
        _, miss_s = _timed(lambda: datasets.load_splits("sample", (28, 28), 1))
        rng = np.random.default_rng(0)
        vec = rng.normal(size=(5000, 128)).astype(np.float32)
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        index = hardest.TrainIndex(vec, np.zeros(5000, np.int64), [f"{i}.png" for i in range(5000)])
        _, nn_s = _timed(lambda: hardest.nearest(index, vec[:40], 3))
        extra: dict = {}
        if args.with_run:
            fixes.undo("sample")
            extra = _evidence_times()
        res = {**extra,
            "images": info.total, "relabelled": len(picks), "relabel_s": relabel_s, "undo_s": undo_s,
            "per_image_ms": 1000 * relabel_s / len(picks), "scan_s": scan_s, "scan_after_s": scan2_s,
            "load_splits_first_s": first_s, "load_splits_hit_s": hit_s, "load_splits_after_fix_s": miss_s,
            "nearest_40x5000_ms": 1000 * nn_s, "machine": platform.platform(), "cpus": os.cpu_count(),
        }  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"dataset: {res['images']} images (copy of the embedded sample)")
    print(f"bulk relabel of {res['relabelled']}: {res['relabel_s']:.2f} s ({res['per_image_ms']:.2f} ms/image); "
          f"undo: {res['undo_s']:.2f} s")  # fmt: skip
    print(f"catalog scan before / after: {res['scan_s']:.3f} / {res['scan_after_s']:.3f} s")
    print(f"load_splits first / cache hit / after a fix: {res['load_splits_first_s']:.2f} / "
          f"{res['load_splits_hit_s']:.2f} / {res['load_splits_after_fix_s']:.2f} s "
          f"(a fix costs {res['load_splits_after_fix_s'] / max(res['load_splits_hit_s'], 1e-9):.0f}x a hit, once)")  # fmt: skip
    print(f"nearest 3 of 5,000 training embeddings for 40 images: {res['nearest_40x5000_ms']:.1f} ms")
    if "evidence_first_s" in res:
        print(f"evidence for 4 mistakes: first {res['evidence_first_s']:.1f} s (embeds {res['train_embedded']} "
              f"training images), again {res['evidence_again_s']:.2f} s")  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
