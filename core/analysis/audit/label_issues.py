"""Likely mislabeled images: cleanlab's confident learning on out-of-fold probabilities.

`cleanlab.rank.get_label_quality_scores` (self-confidence: the probability the held-out model gives the given
label) ranks every image; `cleanlab.filter.find_label_issues` (prune by noise rate: the confident joint estimates
how many images of each class carry each wrong label, and that many of the least confident are flagged) decides
which are listed. Rows come lowest score first: the most likely wrong label on top.
"""

from __future__ import annotations

import numpy as np

from core.analysis.audit.pool import Pool
from core.analysis.audit.report import LabelIssue

MAX_LISTED = 5000


def quality_scores(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    from cleanlab.rank import get_label_quality_scores

    return np.asarray(get_label_quality_scores(labels, _normalised(probs)), np.float64)


def _normalised(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, np.float64), 1e-12, None)
    return p / p.sum(axis=1, keepdims=True)


def flagged(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Boolean mask of images cleanlab flags; every class must have at least one image (the caller checks)."""
    from cleanlab.filter import find_label_issues

    return np.asarray(find_label_issues(labels, _normalised(probs), n_jobs=1), bool)


def find(pool: Pool, probs: np.ndarray) -> tuple[list[LabelIssue], np.ndarray]:
    """(issues lowest score first, every image's score)."""
    scores = quality_scores(pool.y, probs)
    mask = flagged(pool.y, probs)
    suggested = probs.argmax(axis=1)
    idx = [int(i) for i in np.argsort(scores, kind="stable") if mask[i]][:MAX_LISTED]
    names = pool.class_names
    issues = [
        LabelIssue(
            pool.ids[i],
            names[int(pool.y[i])],
            names[int(suggested[i])],
            float(scores[i]),
            str(pool.splits[i]),
        )
        for i in idx
    ]
    return issues, scores
