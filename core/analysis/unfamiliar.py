""" "This looks unlike the training data": a score that says an image is out of distribution for the model.

A classifier always answers with one of its classes, even for a photo of a horse given to a Fashion-MNIST model.
Two scores from the model itself, both higher for stranger images:

- `knn`: cosine distance from the image's embedding (what the classifier head reads) to its k-th nearest training
  embedding, k = 1% of the bank, 5 to 50 (Sun et al. 2022, "Out-of-distribution detection with deep nearest
  neighbors"). Needs the head to be a Dense layer we can look through, and a bank of training embeddings stored
  with the run. Measured on the embedded sample it separates far better than energy (README), so it is the
  default; k matters: the nearest neighbour (k=1) flags 42% of natural photos, k=50 90%.
- `energy`: -logsumexp(logits) (Liu et al. 2020, "Energy-based out-of-distribution detection"); needs nothing
  stored but the threshold.

The threshold is the `UNFAMILIAR_PASS_SHARE` (95%) quantile of the validation images' scores, so about 5% of
images like the training data are flagged. `bench/bench_unfamiliar.py` measures both scores on the embedded sample
against natural photos; the README says which separates better and so is the default.

Stored in the run: `unfamiliar.json` (method, thresholds, model stamp) and `unfamiliar_bank.npy` (float16 unit
embeddings of up to BANK_MAX training images), both written atomically; fitted with `calibrate` or on first use.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import atomic, options
from core.analysis.calibration import model_stamp
from core.errors import UserError

UNFAMILIAR_FILE = "unfamiliar.json"
BANK_FILE = "unfamiliar_bank.npy"
VERSION = 1
BANK_MAX = 5000  # training embeddings kept: 5000 x 128 float16 is 1.3 MB; more barely moves the threshold
K = 50  # the k-th neighbour, at most: one odd training twin cannot make a strange image look familiar
K_SHARE = 0.01  # k is 1% of the bank (Sun et al.: k=50 of 50,000)...
K_MIN = 5  # ...but at least 5 (or the whole bank): the single nearest of a few dozen images says little
DEFAULT_METHOD = options.UNFAMILIAR_METHODS[0]
CHUNK = 1024  # query rows per similarity block (1024 x 5000 float32 = 20 MB)
MAX_BANK_BYTES = 256 << 20  # a bank file larger than this was not written by us; refused

Progress = Callable[[float], None]


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (an all-zero row stays zero, so it is far from everything)."""
    f = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    return np.divide(f, norm, out=np.zeros_like(f), where=norm > 0)


def knn_scores(features: np.ndarray, bank: np.ndarray, k: int = K) -> np.ndarray:
    """1 - cosine similarity to the k-th nearest bank row, for every query row (0 = a twin, up to 2)."""
    q = unit_rows(features)
    b = np.asarray(bank, dtype=np.float32)
    if len(b) == 0:
        raise UserError("no training embeddings to compare with")
    kk = min(k, len(b))
    out = np.empty(len(q), dtype=np.float64)
    for start in range(0, len(q), CHUNK):
        sims = q[start : start + CHUNK] @ b.T
        out[start : start + CHUNK] = -np.partition(-sims, kk - 1, axis=1)[:, kk - 1]
    return 1.0 - out


def energy_scores(logits: np.ndarray) -> np.ndarray:
    """-logsumexp(logits); a one-logit (sigmoid) head counts as the two logits [0, z]."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.shape[1] == 1:
        return -np.logaddexp(0.0, z[:, 0])
    m = z.max(axis=1)
    return -(m + np.log(np.exp(z - m[:, None]).sum(axis=1)))


@dataclass(frozen=True)
class Detector:
    """A fitted unfamiliar-image score: `method`, its thresholds (one per method fitted) and the bank for knn."""

    method: str
    thresholds: dict[str, float]
    bank: np.ndarray | None
    k: int = K

    @property
    def threshold(self) -> float:
        return self.thresholds[self.method]

    def scores(self, out: Any, method: str | None = None) -> np.ndarray:
        """Scores for `HeadOutputs` of some images (higher = less like the training data)."""
        method = method or self.method
        if method == "knn":
            if out.features is None or self.bank is None:
                raise UserError("the knn score needs the head's input features and the training bank")
            return knn_scores(out.features, self.bank, self.k)
        return energy_scores(out.logits)

    def flags(self, scores: np.ndarray, method: str | None = None) -> np.ndarray:
        return np.asarray(scores) > self.thresholds[method or self.method]


def _paths(run_dir: Path) -> tuple[Path, Path]:
    return Path(run_dir) / UNFAMILIAR_FILE, Path(run_dir) / BANK_FILE


def _read_bank(path: Path) -> np.ndarray | None:
    try:
        if path.stat().st_size > MAX_BANK_BYTES:
            return None
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return arr if arr.ndim == 2 and arr.dtype == np.float16 else None


def load_detector(run_dir: Path) -> Detector | None:
    """The run's fitted detector, or None when missing, unreadable or fitted to another model."""
    meta_path, bank_path = _paths(run_dir)
    meta = atomic.read_json(meta_path, None)
    if not isinstance(meta, dict) or meta.get("version") != VERSION:
        return None
    if meta.get("model_stamp") != model_stamp(run_dir):
        return None
    thresholds = meta.get("thresholds")
    method = meta.get("method")
    if not isinstance(thresholds, dict) or method not in thresholds:
        return None
    bank = _read_bank(bank_path) if "knn" in thresholds else None
    if "knn" in thresholds and bank is None:
        return None
    k = meta.get("k", K)
    return Detector(str(method), {str(m): float(t) for m, t in thresholds.items()}, bank,
                    int(k) if isinstance(k, int) and k > 0 else K)  # fmt: skip


def stamp(run_dir: Path) -> tuple[int, ...]:
    """Changes whenever the stored detector does (a cache key beside calibration.stamp)."""
    try:
        st = _paths(run_dir)[0].stat()
        return (int(st.st_size), int(st.st_mtime_ns))
    except OSError:
        return (0, 0)


def fit(val_out: Any, bank: np.ndarray | None, method: str = DEFAULT_METHOD,
        pass_share: float = options.UNFAMILIAR_PASS_SHARE, k: int | None = None) -> tuple[Detector, dict[str, float]]:  # fmt: skip
    """Thresholds so that `pass_share` of the validation images pass, per method available; and the share of
    validation images each flags (close to 1 - pass_share, a little less when scores tie)."""
    methods = [
        m
        for m in options.UNFAMILIAR_METHODS
        if m != "knn" or (bank is not None and val_out.features is not None)
    ]
    if method not in methods:
        method = methods[0]
    if k is None:  # 1% of the bank, within K_MIN..K
        k = K if bank is None else min(len(bank), max(K_MIN, min(K, round(len(bank) * K_SHARE))))
    thresholds, flagged = {}, {}
    probe = Detector(method, {m: 0.0 for m in methods}, bank, k)
    for m in methods:
        s = probe.scores(val_out, m)
        t = float(np.quantile(s, pass_share, method="higher"))
        thresholds[m] = t
        flagged[m] = float(np.mean(s > t))
    return Detector(method, thresholds, bank, k), flagged


def training_bank(run: Any, lm: Any, progress: Progress | None = None) -> np.ndarray | None:
    """Unit embeddings (float16) of up to BANK_MAX training images, or None when the head hides them."""
    from core.analysis import head
    from core.data import datasets

    cfg = run.config
    h, w, c = cfg.input_shape
    limit = min(cfg.limit or BANK_MAX, BANK_MAX)

    def part(lo: float, hi: float) -> Progress | None:
        return None if progress is None else (lambda f: progress(lo + (hi - lo) * f))

    train = datasets.load_splits(cfg.dataset, (h, w), c, val_split=cfg.val_split, seed=cfg.seed,
                                 splits=("train",), limit=limit, progress=part(0.0, 0.4))["train"]  # fmt: skip
    if not len(train):
        return None
    out = head.head_outputs(lm.model, train.x.astype(np.float32), lm.output_kind, progress=part(0.4, 1.0))
    if out.features is None:
        return None
    return unit_rows(out.features).astype(np.float16)


def fit_run(run: Any, lm: Any, val_out: Any, progress: Progress | None = None,
            method: str = DEFAULT_METHOD) -> tuple[Detector, dict[str, float]]:  # fmt: skip
    """Fit from the run's validation outputs and its training bank; store both atomically in the run."""
    stamp_before = model_stamp(run.path)
    bank = training_bank(run, lm, progress) if val_out.features is not None else None
    detector, flagged = fit(val_out, bank, method)
    meta_path, bank_path = _paths(run.path)
    if bank is not None:
        buf = io.BytesIO()
        np.save(buf, bank, allow_pickle=False)
        atomic.write_bytes(bank_path, buf.getvalue(), make_parents=False)
    meta = {
        "version": VERSION, "method": detector.method, "thresholds": detector.thresholds, "k": detector.k,
        "pass_share": options.UNFAMILIAR_PASS_SHARE, "val_flagged": flagged, "val_images": len(val_out.logits),
        "bank_images": 0 if bank is None else len(bank), "model_stamp": stamp_before, "created_at": time.time(),
    }  # fmt: skip
    atomic.write_json(meta_path, meta, make_parents=False)
    return detector, flagged


def ensure(run: Any, lm: Any, progress: Progress | None = None) -> Detector:
    """The run's detector; fitted now (validation + training embeddings, seconds) when there is none yet."""
    from core.analysis import calibration, head

    found = load_detector(run.path)
    if found is not None:
        return found
    calibration.check_run(run)

    def part(lo: float, hi: float) -> Progress | None:
        return None if progress is None else (lambda f: progress(lo + (hi - lo) * f))

    val = calibration.validation_split(run, part(0.0, 0.2))
    out = head.head_outputs(lm.model, val.x.astype(np.float32), lm.output_kind, progress=part(0.2, 0.4))
    return fit_run(run, lm, out, part(0.4, 1.0))[0]
