"""Images far from every class: in a model's embedding space (the penultimate layer the head separates), or in
plain appearance (a 7x7 thumbnail far from every other image's).

Per cross-validation fold, each class's centroid and spread (median distance of its training images to the
centroid) come from the images that fold's model trained on; a held-out image scores its distance to the nearest
centroid in units of that class's spread. Training images of a class score about 1; an image unlike any class (a
photo among clothes) scores several times that. Scores of different folds are comparable: each is a ratio. The
appearance score is also a ratio (k-nearest-neighbour distance over the dataset's median), and an image's score is
the larger of the two.
"""

from __future__ import annotations

import numpy as np

from core.analysis.audit.pool import Pool
from core.analysis.audit.report import Outlier

MIN_SCORE = 3.0  # listed from this score: 3x the typical distance (12 of the embedded sample's 7,000 images)
ROBUST_Z = 6.0  # ... and only when that far above the dataset's typical score (median + ROBUST_Z x MAD)
MAX_LISTED = 200
APPEARANCE_NEIGHBOURS = 5
APPEARANCE_REFERENCE = 20_000  # neighbours are searched among at most this many images


def fold_scores(emb_train: np.ndarray, y_train: np.ndarray, emb_held: np.ndarray, k: int) -> np.ndarray:
    """Distance of each held-out embedding to the nearest class centroid, relative to that class's spread."""
    best = np.full(len(emb_held), np.inf)
    for c in range(k):
        members = emb_train[y_train == c]
        if not len(members):
            continue
        mu = members.mean(axis=0)
        spread = float(np.median(np.linalg.norm(members - mu, axis=1))) + 1e-6
        best = np.minimum(best, np.linalg.norm(emb_held - mu, axis=1) / spread)
    return best


def threshold(scores: np.ndarray) -> float:
    finite = scores[np.isfinite(scores)]
    if not len(finite):
        return float("inf")
    med = float(np.median(finite))
    mad = float(np.median(np.abs(finite - med))) or 1e-6
    return max(MIN_SCORE, med + ROBUST_Z * mad)


def appearance_scores(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Mean distance of each image's 7x7 thumbnail to its APPEARANCE_NEIGHBOURS nearest others, relative to the
    dataset's median: a model trained to tell a few classes apart can map an unrelated picture right onto a class
    (measured: a photo among 150 Fashion-MNIST images scored 1.06 in the embedding, 4.0 here, next image 2.2).
    Neighbours are looked up among at most APPEARANCE_REFERENCE images (a seeded sample), by blocks of rows."""
    from core.analysis.audit.duplicates import thumbnails

    n = len(x)
    k = min(APPEARANCE_NEIGHBOURS, n - 1)
    if k < 1:
        return np.ones(n)
    t = thumbnails(x).astype(np.float32)
    ref_idx = np.arange(n)
    if n > APPEARANCE_REFERENCE:
        ref_idx = np.sort(np.random.default_rng(seed).choice(n, APPEARANCE_REFERENCE, replace=False))
    ref = t[ref_idx]
    position = np.full(n, -1)
    position[ref_idx] = np.arange(len(ref_idx))  # where each image sits in the reference (-1: not there)
    ref_sq = (ref**2).sum(axis=1)
    d = np.empty(n)
    for s in range(0, n, 2048):
        q = t[s : s + 2048]
        d2 = (q**2).sum(axis=1)[:, None] + ref_sq[None, :] - 2.0 * (q @ ref.T)
        rows = np.flatnonzero(position[s : s + 2048] >= 0)
        d2[rows, position[s + rows]] = np.inf  # not its own neighbour
        nearest = np.partition(d2, k - 1, axis=1)[:, :k]
        d[s : s + 2048] = np.sqrt(np.maximum(nearest, 0.0)).mean(axis=1)
    return d / (float(np.median(d)) or 1e-6)


def listed(pool: Pool, scores: np.ndarray) -> list[Outlier]:
    """Images above the threshold, farthest first, at most MAX_LISTED."""
    cut = threshold(scores)
    idx = [int(i) for i in np.argsort(-scores) if np.isfinite(scores[i]) and scores[i] >= cut][:MAX_LISTED]
    return [Outlier(pool.ids[i], pool.class_names[int(pool.y[i])], float(scores[i])) for i in idx]
