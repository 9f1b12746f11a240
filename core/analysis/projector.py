"""Embedding projector: the penultimate layer's outputs over the evaluation split, in 2-D or 3-D.

PCA (linear, instant), t-SNE (scikit-learn; local neighbourhoods, tens of seconds) or UMAP (umap-learn; like
t-SNE, faster on big inputs, but numba compiles its code on first use in a process). The features come from the
same layer the Evaluate page's PCA uses (`core.analysis.evaluation`: the last hidden Dense, the representation
the head separates). Above MAX_POINTS images a seeded random sample is projected, and the caller says so.

Everything is computed once per run and kept in `runs/<id>/projector/`:
  features.npz           the layer's outputs for the sampled images, keyed by model file + saved evaluation
  <method>-<dims>d-<n>.npz  the coordinates of n points, keyed the same way plus method, dimensions and n
Each file is written atomically and carries its key, so a re-saved model or a new evaluation is never paired
with old coordinates. No TensorFlow is imported until features have to be computed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.analysis import evaluation, evaluation_runs
from core.atomic import atomic_path
from core.errors import UserError
from core.models import loading
from core.training import runs

METHODS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
DIMS = (2, 3)
MAX_POINTS = 10_000  # projected at most; a larger evaluation is sampled (seeded) and the view says so
POINT_CHOICES = (2_000, 5_000, 10_000)  # t-SNE/UMAP cost grows faster than linearly: let people start small
SEED = 0
PRE_PCA = 50  # t-SNE and UMAP run on the first 50 principal components (scikit-learn's advice for t-SNE)
PERPLEXITY = 30.0
NEIGHBOURS = 15
TSNE_THREADS = 1
PROJECTOR_DIR = "projector"
FEATURES_FILE = "features.npz"
KEY_VERSION = 1
UMAP_MISSING = (
    "UMAP needs the umap-learn package (pip install umap-learn, see requirements.txt); "
    "PCA and t-SNE work without it"
)

Progress = Callable[[float], None]


def umap_available() -> bool:
    """Installed or not, without importing it (importing umap pulls in numba and, here, TensorFlow)."""
    return importlib.util.find_spec("umap") is not None


# ---------------------------------------------------------------------------------------------- maths


def _check(method: str, dims: int) -> None:
    if method not in METHODS:
        raise UserError(f"unknown projection {method!r}; choose one of {', '.join(METHODS)}")
    if dims not in DIMS:
        raise UserError(f"a projection has 2 or 3 dimensions, not {dims}")


def _pca(x: np.ndarray, components: int) -> np.ndarray:
    """The first `components` principal coordinates, zero-padded when the data has fewer directions."""
    from sklearn.decomposition import PCA

    n, d = x.shape
    k = min(components, n, d)
    out = np.zeros((n, components), dtype=np.float64)
    if k < 1:
        return out
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:, :k] = np.nan_to_num(PCA(n_components=k, random_state=SEED).fit_transform(x))
    return out


def _tsne(x: np.ndarray, dims: int, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n = x.shape[0]
    perplexity = min(PERPLEXITY, max(1.0, (n - 1) / 3.0))  # must stay below n; tiny splits still work
    tsne = TSNE(n_components=dims, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    # One OpenMP thread: on 2 cores shared with the app (and TensorFlow's own threads) the spinning workers of
    # Barnes-Hut t-SNE thrash. Measured here under load: 2,000 points 37 s on one thread, 116 s on two;
    # 36 points 0.3 s vs 7 s.
    with threadpool_limits(limits=TSNE_THREADS):
        return tsne.fit_transform(x)


def _umap(x: np.ndarray, dims: int, seed: int) -> np.ndarray:
    if not umap_available():
        raise UserError(UMAP_MISSING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state", numba deprecation chatter
        import umap

        n = x.shape[0]
        # Spectral initialisation needs a connected graph of more points than dimensions; tiny sets start random.
        init = "spectral" if n > 4 * (dims + 1) else "random"
        # force_approximation_algorithm: below 4,096 points umap-learn would compute all distances through a
        # Python-level callable (measured 28 of 40 s for 2,000 points here); nearest-neighbour descent takes 5 s.
        model = umap.UMAP(n_components=dims, n_neighbors=max(2, min(NEIGHBOURS, n - 1)), init=init,
                          random_state=seed, force_approximation_algorithm=True)  # fmt: skip
        return np.asarray(model.fit_transform(x))


def reduce(features: np.ndarray, method: str, dims: int = 2, seed: int = SEED) -> np.ndarray:
    """(n, dims) float32 coordinates of (n, d) features; fewer than 3 points all sit at the origin."""
    _check(method, dims)
    x = np.nan_to_num(np.asarray(features, dtype=np.float64).reshape(len(features), -1))
    n = x.shape[0]
    if n < 3 or x.shape[1] == 0 or not np.any(x.std(axis=0) > 0):
        return np.zeros((n, dims), dtype=np.float32)
    if method == "pca":
        return _pca(x, dims).astype(np.float32)
    if x.shape[1] > PRE_PCA:
        x = _pca(x, PRE_PCA)
    coords = _tsne(x, dims, seed) if method == "tsne" else _umap(x, dims, seed)
    return np.nan_to_num(np.asarray(coords, dtype=np.float64)).astype(np.float32)


def sample_indices(n: int, cap: int = MAX_POINTS, seed: int = SEED) -> np.ndarray:
    """All of 0..n-1, or a seeded random `cap` of them in ascending order."""
    if n <= cap:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).permutation(n)[:cap]).astype(np.int64)


# ---------------------------------------------------------------------------------------- run cache


@dataclass
class Projection:
    method: str
    dims: int
    coords: np.ndarray  # (m, dims) float32
    indices: np.ndarray  # (m,) int64: evaluation sample of each row
    layer: str  # whose outputs were projected
    total: int  # images in the evaluation (m < total when sampled)
    seconds: float  # what the reduction took when it was computed
    cached: bool = False  # read from the run folder rather than computed by this call

    @property
    def sampled(self) -> bool:
        return len(self.indices) < self.total


def points_for(total: int, wanted: int = MAX_POINTS) -> int:
    """How many points a projection of `total` evaluated images gets when `wanted` are asked for."""
    if wanted < 1:
        raise UserError(f"a projection needs at least one point, not {wanted}")
    return max(0, min(int(total), int(wanted), MAX_POINTS))


def _folder(run: runs.Run) -> Path:
    return run.path / PROJECTOR_DIR


def _base_key(run: runs.Run) -> list[Any]:
    """Model file (mtime_ns, size) and the saved evaluation's token (its split, limit and images)."""
    try:
        st = run.model_path.stat()
    except OSError:
        raise UserError(f"run {run.run_id} has no saved model") from None
    token = evaluation_runs.source(run).get("token")
    return [KEY_VERSION, st.st_mtime_ns, st.st_size, token, SEED]


def _key(parts: list[Any]) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _evaluated(run: runs.Run) -> int:
    """Images in the run's saved evaluation, read from its small JSON (no arrays, no TensorFlow)."""
    n = evaluation_runs.source(run).get("num_samples")
    return int(n) if isinstance(n, int) else 0


def projection_path(run: runs.Run, method: str, dims: int, points: int) -> Path:
    return _folder(run) / f"{method}-{dims}d-{points}.npz"


def _save(path: Path, **arrays: Any) -> None:
    """Atomic, and never recreating a run folder deleted meanwhile (the projector folder needs its parent)."""
    try:
        path.parent.mkdir(exist_ok=True)
        with atomic_path(path, suffix=".npz", make_parents=False) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    except OSError:
        pass  # shown anyway; computed again next time


def _load(path: Path, key: str, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            return {name: np.array(data[name]) for name in names}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def cached_projection(run: runs.Run, method: str, dims: int, points: int = MAX_POINTS) -> Projection | None:
    """The run's saved projection when it belongs to the current model and evaluation; None otherwise."""
    _check(method, dims)
    m = points_for(_evaluated(run), points)
    key = _key([*_base_key(run), method, dims, m])
    got = _load(
        projection_path(run, method, dims, m), key, ("coords", "indices", "layer", "total", "seconds")
    )
    if got is None or got["coords"].shape != (len(got["indices"]), dims):
        return None
    return Projection(method, dims, got["coords"].astype(np.float32), got["indices"].astype(np.int64),
                      str(got["layer"]), int(got["total"]), float(got["seconds"]), cached=True)  # fmt: skip


def _features(
    run: runs.Run,
    result: evaluation.EvaluationResult,
    indices: np.ndarray,
    loaded: loading.LoadedModel | None,
    progress: Progress | None,
) -> tuple[str, np.ndarray]:
    """The embedding layer's outputs for these evaluation images: from the saved features when they cover them
    (a smaller sample is a subset of a larger one: same seeded permutation), else computed and saved."""
    key = _key([*_base_key(run), "features"])
    path = _folder(run) / FEATURES_FILE
    got = _load(path, key, ("layer", "features", "indices"))
    if got is not None and len(got["indices"]):
        pos = np.searchsorted(got["indices"], indices).clip(0, len(got["indices"]) - 1)
        if np.array_equal(got["indices"][pos], indices):
            return str(got["layer"]), got["features"][pos]
    lm = loaded or loading.load_run_model(run)
    if not len(indices):
        raise UserError("nothing to project: the evaluation has no images")
    x = np.stack(evaluation_runs.sample_images(run, result, indices))
    layer, feats = evaluation._embeddings(lm.model, x, 256, progress)
    feats = feats.astype(np.float32)
    _save(path, key=np.array(key), layer=np.array(layer), features=feats, indices=indices)
    return layer, feats


def project_run(
    run_id: str,
    method: str,
    dims: int = 2,
    *,
    points: int = MAX_POINTS,
    result: evaluation.EvaluationResult | None = None,
    loaded: loading.LoadedModel | None = None,
    progress: Progress | None = None,
) -> Projection:
    """The run's projection of (a seeded sample of at most `points` of) its evaluation images, for this method and
    dimensionality: from the run folder, or computed and saved.

    Needs the run's saved evaluation (its split and images); `result`/`loaded` let the UI pass what it holds.
    Progress: the model pass over the images is the first 60%, the reduction the rest (one step at the end).
    """
    _check(method, dims)
    if method == "umap" and not umap_available():
        raise UserError(UMAP_MISSING)
    run = runs.get_run(run_id)
    if not run.has_model:
        raise UserError(f"run {run.run_id} has no saved model yet")
    hit = cached_projection(run, method, dims, points)
    if hit is not None:
        return hit
    base = _base_key(run)  # taken before the work: a model re-saved meanwhile leaves this result stale
    result = result or evaluation_runs.cached_result(run)
    if result is None:
        raise UserError(f"run {run.run_id} has no current evaluation; evaluate it first (python -m core evaluate "
                        f"--run {run.run_id})")  # fmt: skip
    indices = sample_indices(result.num_samples, points_for(result.num_samples, points))
    scaled = None if progress is None else (lambda f: progress(0.6 * f))
    layer, feats = _features(run, result, indices, loaded, scaled)
    if progress is not None:
        progress(0.6)
    t0 = time.perf_counter()
    coords = reduce(feats, method, dims)
    seconds = time.perf_counter() - t0
    if progress is not None:
        progress(1.0)
    m = len(indices)
    _save(projection_path(run, method, dims, m), key=np.array(_key([*base, method, dims, m])), coords=coords,
          indices=indices, layer=np.array(layer), total=np.array(result.num_samples),
          seconds=np.array(seconds))  # fmt: skip
    return Projection(method, dims, coords, indices, layer, result.num_samples, seconds)
