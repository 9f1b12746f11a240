"""Calibration: is "90% sure" right 90% of the time? Temperature scaling, reliability, and a reject threshold.

A network trained with cross-entropy is usually over-confident. Temperature scaling (Guo et al. 2017) divides its
logits by one number T fitted on the validation split to minimise the negative log-likelihood: the predicted class
never changes, only how sure the model claims to be. The reliability diagram and the expected calibration error
(ECE) show the gap between confidence and accuracy before and after. The coverage-accuracy curve answers "if I
accept only the images the model is surest about, how accurate is what I accept?", and a target accuracy picks
the reject threshold from it.

Everything is stored in `runs/<id>/calibration.json` (atomically) and used by Classify, Inspect, `predict` and the
export bundle. This module needs no TensorFlow until a model is run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core import atomic, options
from core.errors import UserError

CALIBRATION_FILE = "calibration.json"
VERSION = 1
T_RANGE = (0.05, 20.0)  # temperatures searched; outside it the model is broken rather than miscalibrated
MAX_CURVE_POINTS = 400  # points stored for the coverage-accuracy chart (every one an exact cut)
GOLDEN_STEPS = 80  # golden-section steps on log T: the bracket shrinks by 0.618 each, to far below 1e-6

Progress = Callable[[float], None]
REQUIRED_KEYS = frozenset({"ece_before", "ece_after", "bins_before", "bins_after", "curve", "target_accuracy",
                           "threshold", "split", "nll_before", "nll_after", "accuracy"})  # fmt: skip


# ------------------------------------------------------------------------------------------------- maths


def scaled_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N, k) probabilities from logits divided by T; a one-logit (sigmoid) head gives [1 - p, p]."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    z = z / float(temperature)
    if z.shape[1] == 1:
        p = 1.0 / (1.0 + np.exp(-np.clip(z[:, 0], -700, 700)))
        return np.stack([1.0 - p, p], axis=1)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def rescale(probabilities: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Temperature scaling of probabilities already computed: softmax(z / T) = p ** (1 / T), renormalised (for a
    sigmoid head's [1 - p, p] the same formula is sigmoid(z / T)). Exact up to a probability that underflowed to 0."""
    p = np.asarray(probabilities, dtype=np.float64)
    if temperature == 1.0:
        return p
    q = np.clip(p, 1e-300, 1.0) ** (1.0 / float(temperature))
    return q / q.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels at temperature T (log-sum-exp, so no log(0))."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim == 1:
        z = z[:, None]
    z = z / float(temperature)
    if z.shape[1] == 1:  # binary: -log sigmoid(s) with s = z for class 1 and -z for class 0
        s = np.where(y == 1, z[:, 0], -z[:, 0])
        return float(np.mean(np.logaddexp(0.0, -s)))
    m = z.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in T_RANGE minimising the NLL: a golden-section search on log T (the NLL is convex in 1/T)."""
    if len(labels) == 0:
        raise UserError("no validation images to fit a temperature on")
    lo, hi = math.log(T_RANGE[0]), math.log(T_RANGE[1])
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    for _ in range(GOLDEN_STEPS):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(logits, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(logits, labels, math.exp(b))
    return float(math.exp((lo + hi) / 2.0))


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = options.CALIBRATION_BINS
) -> list[dict[str, float]]:
    """Equal-width confidence bins: [{lo, hi, count, confidence, accuracy}], empty bins included (count 0)."""
    p = np.asarray(probabilities, dtype=np.float64)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        out.append({
            "lo": float(edges[b]), "hi": float(edges[b + 1]), "count": n,
            "confidence": float(conf[mask].mean()) if n else 0.0,
            "accuracy": float(correct[mask].mean()) if n else 0.0,
        })  # fmt: skip
    return out


def ece(bins: list[dict[str, float]]) -> float:
    """Expected calibration error: the count-weighted mean gap between confidence and accuracy over the bins."""
    total = sum(b["count"] for b in bins)
    if not total:
        return 0.0
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / total)


def coverage_curve(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, list[float]]:
    """Accept the surest share of images: for every cut, the share accepted, their accuracy and the threshold.

    Cuts fall only between different confidences, and each threshold lies halfway to the next lower confidence,
    so "accept p >= threshold" accepts exactly that share even when the numbers are recomputed with float noise.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    n = len(p)
    if n == 0:
        return {"coverage": [], "accuracy": [], "threshold": []}
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == np.asarray(labels)
    order = np.argsort(-conf, kind="stable")
    conf, correct = conf[order], correct[order]
    accepted = np.arange(1, n + 1)
    accuracy = np.cumsum(correct) / accepted
    cut = np.flatnonzero(np.append(conf[:-1] > conf[1:], True))  # index of the last accepted image
    nxt = np.append(conf[1:], 0.0)
    threshold = np.where(cut == n - 1, 0.0, (conf[cut] + nxt[cut]) / 2.0)
    return {
        "coverage": [float(v) for v in accepted[cut] / n],
        "accuracy": [float(v) for v in accuracy[cut]],
        "threshold": [float(v) for v in threshold],
    }


def thin_curve(curve: dict[str, list[float]], points: int = MAX_CURVE_POINTS) -> dict[str, list[float]]:
    """At most `points` of the curve's cuts (evenly spaced, first and last kept): still exact, just coarser."""
    n = len(curve["coverage"])
    if n <= points:
        return curve
    keep = np.unique(np.linspace(0, n - 1, points).round().astype(int))
    return {k: [v[i] for i in keep] for k, v in curve.items()}


def threshold_for(curve: dict[str, list[float]], target: float) -> dict[str, float] | None:
    """The largest accepted share whose accuracy is at least `target`: {threshold, coverage, accuracy}, or None
    when not even the single surest image reaches it."""
    if not 0.0 < target <= 1.0:
        raise UserError(f"the target accuracy must be in (0, 1]; got {target}")
    best = None
    for cov, acc, thr in zip(curve["coverage"], curve["accuracy"], curve["threshold"], strict=True):
        if acc >= target - 1e-12 and (best is None or cov > best["coverage"]):
            best = {"threshold": thr, "coverage": cov, "accuracy": acc}
    return best


# ------------------------------------------------------------------------------------------------- a run


def calibration_path(run_dir: Path) -> Path:
    return Path(run_dir) / CALIBRATION_FILE


def model_stamp(run_dir: Path) -> list[int]:
    """Size and mtime of model.keras: a calibration fitted to another model is stale and never used."""
    try:
        st = (Path(run_dir) / "model.keras").stat()
    except OSError:
        return [0, 0]
    return [int(st.st_size), int(st.st_mtime_ns)]


def load(run_dir: Path, *, stale_ok: bool = False) -> dict[str, Any] | None:
    """The run's calibration, or None when there is none, it is unreadable, or the model changed since."""
    data = atomic.read_json(calibration_path(run_dir), None)
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return None
    t = data.get("temperature")
    if not isinstance(t, int | float) or not T_RANGE[0] <= t <= T_RANGE[1]:
        return None
    if not stale_ok and data.get("model_stamp") != model_stamp(run_dir):
        return None
    if not REQUIRED_KEYS <= data.keys() or not isinstance(data["curve"], dict):
        return None  # a hand-edited or truncated file: treated as not calibrated, never half-read
    return data


def temperature(run_dir: Path) -> float:
    """The stored temperature, 1.0 (no scaling) when the run is not calibrated."""
    data = load(run_dir)
    return float(data["temperature"]) if data else 1.0


def reject_threshold(run_dir: Path) -> float | None:
    """The stored reject threshold for the chosen target accuracy, or None."""
    data = load(run_dir)
    thr = (data or {}).get("threshold")
    return float(thr["threshold"]) if isinstance(thr, dict) else None


def stamp(run_dir: Path) -> tuple[int, ...]:
    """Changes whenever calibration.json or the model does: a cache key for loaded models and pages."""
    try:
        st = calibration_path(run_dir).stat()
        own = (int(st.st_size), int(st.st_mtime_ns))
    except OSError:
        own = (0, 0)
    return (*own, *model_stamp(run_dir))


def _split_info(run: Any, n: int) -> dict[str, Any]:
    cfg = run.config
    return {"name": "val", "dataset": cfg.dataset, "seed": cfg.seed, "val_split": cfg.val_split,
            "limit": cfg.limit, "images": n}  # fmt: skip


def check_run(run: Any) -> None:
    from core.training import runs

    if run.state in runs.ACTIVE_STATES:
        raise UserError(f"run {run.run_id} is still training; calibrate it when it has finished")
    if not run.has_model:
        raise UserError(f"run {run.run_id} has no saved model yet")


def validation_split(run: Any, progress: Progress | None = None):
    """The run's own validation split (its dataset, seed, val_split and limit), decoded at the model's input."""
    from core.data import datasets

    cfg = run.config
    h, w, c = cfg.input_shape
    data = datasets.load_splits(cfg.dataset, (h, w), c, val_split=cfg.val_split, seed=cfg.seed,
                                splits=("val",), limit=cfg.limit, progress=progress)["val"]  # fmt: skip
    if not len(data):
        raise UserError(f"run {run.run_id} has no validation images to calibrate on (its val split is empty)")
    return data


def summarise(logits: np.ndarray, labels: np.ndarray, target: float) -> dict[str, Any]:
    """Everything calibration.json holds about the fit, from validation logits and labels."""
    t = fit_temperature(logits, labels)
    before, after = scaled_probabilities(logits, 1.0), scaled_probabilities(logits, t)
    bins_before, bins_after = reliability_bins(before, labels), reliability_bins(after, labels)
    curve = coverage_curve(after, labels)
    return {
        "version": VERSION,
        "temperature": t,
        "nll_before": nll(logits, labels, 1.0),
        "nll_after": nll(logits, labels, t),
        "ece_before": ece(bins_before),
        "ece_after": ece(bins_after),
        "accuracy": float(np.mean(before.argmax(axis=1) == labels)),
        "bins_before": bins_before,
        "bins_after": bins_after,
        "target_accuracy": float(target),
        "threshold": threshold_for(curve, target),
        "curve": thin_curve(curve),
    }


def calibrate_run(
    run_id: str,
    target_accuracy: float = options.DEFAULT_TARGET_ACCURACY,
    progress: Progress | None = None,
    loaded: Any = None,
) -> dict[str, Any]:
    """Fit the temperature on the run's validation split, fit the unfamiliar-image score too, store both.

    `loaded` is an already loaded `LoadedModel` of this run (the UI's cached one); `progress(fraction)` reports.
    """
    from core.analysis import head, unfamiliar
    from core.models import loading
    from core.training import runs

    if not 0.0 < target_accuracy <= 1.0:
        raise UserError(f"the target accuracy must be in (0, 1]; got {target_accuracy}")
    run = runs.get_run(run_id)
    check_run(run)
    stamp_before = model_stamp(run.path)

    def part(lo: float, hi: float) -> Progress | None:
        return None if progress is None else (lambda f: progress(lo + (hi - lo) * min(1.0, max(0.0, f))))

    val = validation_split(run, part(0.0, 0.2))
    lm = loaded if loaded is not None else loading.load_run_model(run)
    out = head.head_outputs(lm.model, val.x.astype(np.float32), lm.output_kind, progress=part(0.2, 0.5))
    if not np.all(np.isfinite(out.logits)):
        raise UserError(
            "the model produced non-finite outputs (NaN) on the validation split; cannot calibrate"
        )
    data = summarise(out.logits, val.y, target_accuracy)
    data["model_stamp"] = stamp_before
    data["split"] = _split_info(run, len(val))
    data["created_at"] = time.time()
    unfamiliar.fit_run(run, lm, out, part(0.5, 1.0))
    if model_stamp(run.path) != stamp_before:
        raise UserError(f"run {run_id}'s model changed while calibrating; calibrate again")
    atomic.write_json(calibration_path(run.path), data, make_parents=False)
    if progress is not None:
        progress(1.0)
    return data


def set_target(run_id: str, target_accuracy: float) -> dict[str, Any]:
    """Pick the reject threshold for another target accuracy from the stored curve (no model run), and store it."""
    from core.training import runs

    run = runs.get_run(run_id)
    data = load(run.path)
    if data is None:
        raise UserError(f"run {run_id} is not calibrated (or its model changed since); calibrate it first")
    data["target_accuracy"] = float(target_accuracy)
    data["threshold"] = threshold_for(data["curve"], target_accuracy)
    atomic.write_json(calibration_path(run.path), data, make_parents=False)
    return data


def describe(data: dict[str, Any]) -> list[str]:
    """The lines the CLI prints: ECE before/after, the temperature, the threshold."""
    split = data.get("split") or {}
    lines = [
        f"validation images: {split.get('images', '?')} (run's val split, seed {split.get('seed', '?')})",
        f"ECE before: {data['ece_before']:.4f}",
        f"ECE after:  {data['ece_after']:.4f}",
        f"temperature: {data['temperature']:.4f}",
        f"NLL before/after: {data['nll_before']:.4f} / {data['nll_after']:.4f}",
    ]
    target, thr = data.get("target_accuracy"), data.get("threshold")
    if thr:
        lines.append(
            f"reject threshold for accuracy >= {target:.1%}: {thr['threshold']:.4f} "
            f"(accepts {thr['coverage']:.1%} of validation images at {thr['accuracy']:.1%} accuracy)"
        )
    else:
        lines.append(
            f"reject threshold: none; no share of the validation images reaches {target:.1%} accuracy"
        )
    return lines
