"""Unfamiliar images: how many test images of the embedded sample are flagged (want ~5%) and how many natural
photos (want most), for each score: knn (distance to the k-th nearest training embedding) and energy.

Run from the repo root: `.venv/bin/python bench/bench_unfamiliar.py [--epochs 2] [--run ID]`. Trains a `fast`
run on the embedded Fashion-MNIST sample (in a temporary runs folder) unless --run names one, calibrates it (which
fits both scores, thresholds at the 95th percentile of validation scores), then sends images through the same
decode and predict path as Classify: the sample's 1,000 test images, and scikit-image's natural photos (astronaut,
coffee, chelsea, rocket, ...) whole and as random crops. Writes bench/results/unfamiliar.json.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "unfamiliar.json"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "eagle", "moon", "coins", "clock", "brick",
          "grass", "gravel", "page", "text", "hubble_deep_field", "immunohistochemistry", "retina", "skin",
          "lily", "logo", "colorwheel", "horse")  # fmt: skip
CROPS_PER_PHOTO = 8


def png(a: np.ndarray) -> bytes:
    from PIL import Image

    a = np.asarray(a)
    if a.dtype != np.uint8:
        f = a.astype(np.float64)
        a = (255 * (f - f.min()) / max(1e-9, float(np.ptp(f)))).astype(np.uint8)
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def natural_photos(seed: int = 0) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """(whole photos, random square crops of them) as PNG bytes; photos that need a download are skipped."""
    from skimage import data

    rng = np.random.default_rng(seed)
    whole, crops = [], []
    for name in PHOTOS:
        try:
            a = np.asarray(getattr(data, name)())
        except Exception:  # not shipped with this scikit-image, and no network
            continue
        whole.append((name, png(a)))
        h, w = a.shape[:2]
        for i in range(CROPS_PER_PHOTO):
            side = int(rng.integers(min(h, w) // 4, min(h, w) + 1))
            r, c = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crops.append((f"{name}_crop{i}", png(a[r : r + side, c : c + side])))
    return whole, crops


def nearest_only(detector, run, lm):
    """The knn score with k = 1 (the single nearest training image), thresholded the same way, for comparison."""
    from core.analysis import calibration, head, unfamiliar

    val = calibration.validation_split(run)
    out = head.head_outputs(lm.model, val.x.astype(np.float32), lm.output_kind)
    one, _ = unfamiliar.fit(out, detector.bank, "knn", k=1)
    return one


def shares(lm, sources, detector, k1) -> dict[str, float]:
    """Share of images each method flags, through the predict path (same decode as Classify)."""
    from core.analysis import head, prediction

    xs = np.stack([prediction.prepare_for(lm, src, name)[0] for name, src in sources])
    out = head.head_outputs(lm.model, xs, lm.output_kind)
    got = {m: float(detector.flags(detector.scores(out, m), m).mean()) for m in detector.thresholds}
    got["knn k=1"] = float(k1.flags(k1.scores(out, "knn"), "knn").mean())
    return got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--run", help="an existing run (of the embedded sample) instead of training one")
    args = ap.parse_args()

    from core import paths
    from core.atomic import write_json

    tmp = None
    if not args.run and "CONVNET_RUNS_DIR" not in os.environ:  # a set runs folder keeps the trained run
        tmp = tempfile.TemporaryDirectory(prefix="bench_unfamiliar_")
        os.environ["CONVNET_RUNS_DIR"] = tmp.name
    from core.analysis import calibration, unfamiliar
    from core.data import datasets
    from core.models import loading
    from core.training import runs, trainer

    t0 = time.perf_counter()
    if args.run:
        run = runs.get_run(args.run)
    else:
        run = trainer.start_run(trainer.TrainRequest(dataset=paths.EMBEDDED_DATASET, preset="fast",
                                                     epochs=args.epochs, batch_size=128))  # fmt: skip
        status = trainer.train_run(run.path)
        assert status["state"] == "completed", status
        run = runs.get_run(run.run_id)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cal = calibration.calibrate_run(run.run_id)
    calibrate_s = time.perf_counter() - t0
    lm = loading.load_run_model(run)
    detector = lm.detector or unfamiliar.load_detector(run.path)
    assert detector is not None

    test = datasets.load_splits(run.config.dataset, tuple(run.config.input_shape[:2]), run.config.input_shape[2],
                                splits=("test",))["test"]  # fmt: skip
    test_sources = [(Path(p).name, Path(p)) for p in (test.paths or [])]
    whole, crops = natural_photos()
    k1 = nearest_only(detector, run, lm)
    t0 = time.perf_counter()
    rows = {
        "fashion test images": shares(lm, test_sources, detector, k1),
        "natural photos (whole)": shares(lm, whole, detector, k1),
        "natural photos (random crops)": shares(lm, crops, detector, k1),
    }
    score_s = time.perf_counter() - t0
    counts = {"fashion test images": len(test_sources), "natural photos (whole)": len(whole),
              "natural photos (random crops)": len(crops)}  # fmt: skip

    print(f"run {run.run_id} · val accuracy {cal['accuracy']:.1%} · T {cal['temperature']:.3f} · "
          f"ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}")  # fmt: skip
    print(f"train {train_s:.1f}s, calibrate (+ both scores, bank) {calibrate_s:.1f}s, score {score_s:.1f}s; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared; timings are noisy)")  # fmt: skip
    methods = [*detector.thresholds, "knn k=1"]
    print(f"knn uses k={detector.k}")
    print(f"\n{'flagged as unfamiliar':34s}{'n':>6s}" + "".join(f"{m:>10s}" for m in methods))
    for name, share in rows.items():
        print(f"{name:34s}{counts[name]:6d}" + "".join(f"{share[m]:10.1%}" for m in methods))
    sep = {m: rows["natural photos (random crops)"][m] - rows["fashion test images"][m] for m in methods}
    best = max(sep, key=lambda m: sep[m])
    print("\nseparation (crops flagged - test flagged): " + ", ".join(f"{m} {v:.1%}" for m, v in sep.items()))
    print(f"best: {best}; default in the app: {detector.method}")
    write_json(RESULTS, {"run": run.run_id, "counts": counts, "flagged": rows, "separation": sep, "best": best,
                         "default": detector.method, "temperature": cal["temperature"],
                         "ece_before": cal["ece_before"], "ece_after": cal["ece_after"],
                         "val_accuracy": cal["accuracy"], "seconds": {"train": train_s, "calibrate": calibrate_s,
                                                                       "score": score_s}})  # fmt: skip
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
