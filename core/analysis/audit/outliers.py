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

MIN_SCORE = 2.5  # listed from this distance (in class spreads) to the nearest class centroid
ROBUST_Z = 6.0  # ... and only when that far above the dataset's typical score (median + ROBUST_Z x MAD)
MAX_LISTED = 200
APPEARANCE_NEIGHBOURS = 5


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


def appearance_scores(x: np.ndarray) -> np.ndarray:
    """Mean distance of each image's 7x7 thumbnail to its APPEARANCE_NEIGHBOURS nearest others, relative to the
    dataset's median: a model trained to tell a few classes apart can map an unrelated picture right onto a class
    (measured: a photo among 150 Fashion-MNIST images scored 1.06 in the embedding, 4.0 here, next image 2.2)."""
    from sklearn.neighbors import NearestNeighbors

    from core.analysis.audit.duplicates import thumbnails

    k = min(APPEARANCE_NEIGHBOURS, len(x) - 1)
    if k < 1:
        return np.ones(len(x))
    t = thumbnails(x)
    nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(t)
    d = nn.kneighbors(t, return_distance=True)[0][:, 1:].mean(axis=1)
    return d / (float(np.median(d)) or 1e-6)


def listed(pool: Pool, scores: np.ndarray) -> list[Outlier]:
    """Images above the threshold, farthest first, at most MAX_LISTED."""
    cut = threshold(scores)
    idx = [int(i) for i in np.argsort(-scores) if np.isfinite(scores[i]) and scores[i] >= cut][:MAX_LISTED]
    return [Outlier(pool.ids[i], pool.class_names[int(pool.y[i])], float(scores[i])) for i in idx]
