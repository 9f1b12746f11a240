"""Embedding projector: one row per image for each method, the run cache, and its keys."""

from __future__ import annotations

import os

import numpy as np
import pytest

from core.analysis import evaluation_runs, projector
from core.errors import UserError
from tests.helpers import in_run_dirs, module_run


def _clusters(n_per: int = 12, d: int = 64, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 6, (k, d))
    labels = np.repeat(np.arange(k), n_per)
    return centres[labels] + rng.normal(0, 1, (k * n_per, d)), labels


def _separated(coords: np.ndarray, labels: np.ndarray) -> bool:
    """Nearly every point's nearest neighbour in the projection comes from its own cluster (3-D t-SNE on 36
    points keeps about 97%)."""
    dist = ((coords[:, None, :] - coords[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    return bool(np.mean(labels[dist.argmin(axis=1)] == labels) >= 0.9)


@pytest.mark.parametrize("method", ["pca", "tsne"])
@pytest.mark.parametrize("dims", [2, 3])
def test_one_row_per_image_for_each_method(method, dims):
    x, labels = _clusters()
    coords = projector.reduce(x, method, dims)
    assert coords.shape == (len(x), dims) and coords.dtype == np.float32 and np.all(np.isfinite(coords))
    assert _separated(coords, labels)


def test_degenerate_inputs_sit_at_the_origin_instead_of_failing():
    assert projector.reduce(np.ones((2, 5)), "tsne").shape == (2, 2)
    assert not projector.reduce(np.ones((6, 5)), "tsne", 3).any()  # no variance: nothing to separate
    assert projector.reduce(np.random.default_rng(0).normal(size=(5, 3)), "tsne").shape == (5, 2)
    with pytest.raises(UserError, match="unknown projection"):
        projector.reduce(np.ones((5, 2)), "lda")
    with pytest.raises(UserError, match="2 or 3"):
        projector.reduce(np.ones((5, 2)), "pca", 4)


def test_a_large_evaluation_is_sampled_with_a_seed():
    idx = projector.sample_indices(25_000)
    assert len(idx) == projector.MAX_POINTS and np.all(np.diff(idx) > 0) and idx[-1] < 25_000
    assert np.array_equal(idx, projector.sample_indices(25_000))
    assert np.array_equal(projector.sample_indices(7), np.arange(7))


@pytest.mark.slow
@pytest.mark.skipif(not projector.umap_available(), reason="umap-learn is not installed")
def test_umap_gives_one_row_per_image():
    """Slow: numba compiles UMAP's code on first use in a process (80-150 s on 2 busy cores)."""
    x, labels = _clusters(n_per=20)
    for dims in (2, 3):
        coords = projector.reduce(x, "umap", dims)
        assert coords.shape == (len(x), dims) and np.all(np.isfinite(coords))
        assert _separated(coords, labels)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return module_run(tmp_path_factory, "projector", per_class=8, split=True)


@pytest.fixture
def run(trained, monkeypatch):
    root, _, run = trained
    in_run_dirs(monkeypatch, root)
    return run


@pytest.mark.slow
def test_a_run_projection_is_computed_once_and_keyed_by_model_and_evaluation(run, monkeypatch):
    with pytest.raises(UserError, match="evaluate it first"):
        projector.project_run(run.run_id, "pca")
    result = evaluation_runs.evaluate_run(run.run_id)
    calls: list[str] = []
    real = projector.reduce
    monkeypatch.setattr(projector, "reduce", lambda f, m, d=2, seed=0: calls.append(m) or real(f, m, d, seed))
    seen: list[float] = []
    first = projector.project_run(run.run_id, "tsne", 2, progress=seen.append)
    assert first.coords.shape == (result.num_samples, 2) and not first.cached and seen[-1] == 1.0
    assert np.array_equal(first.indices, np.arange(result.num_samples)) and first.layer == "dense"
    assert projector.projection_path(run, "tsne", 2, result.num_samples).is_file()
    again = projector.project_run(run.run_id, "tsne", 2)
    assert again.cached and np.array_equal(again.coords, first.coords) and calls == ["tsne"]  # not recomputed
    pca3 = projector.project_run(run.run_id, "pca", 3)  # another method reuses the saved features
    assert pca3.coords.shape == (result.num_samples, 3) and calls == ["tsne", "pca"]

    st = run.model_path.stat()
    os.utime(run.model_path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # the model was re-saved
    assert projector.cached_projection(run, "tsne", 2) is None
    evaluation_runs.evaluate_run(run.run_id, limit=3)  # a new evaluation of the new model: 3 images
    redone = projector.project_run(run.run_id, "tsne", 2)
    assert not redone.cached and redone.coords.shape == (3, 2) and calls == ["tsne", "pca", "tsne"]
    folder = projector.projection_path(run, "tsne", 2, 3).parent
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.slow
def test_a_smaller_sample_is_its_own_projection_and_reuses_the_saved_features(run, monkeypatch):
    result = evaluation_runs.evaluate_run(run.run_id)
    n = result.num_samples
    full = projector.project_run(run.run_id, "pca", 2)
    assert len(full.indices) == n and not full.sampled
    monkeypatch.setattr(projector.evaluation, "_embeddings", None)  # a model pass now would fail loudly
    part = projector.project_run(run.run_id, "pca", 2, points=4)
    assert part.coords.shape == (4, 2) and part.sampled and part.total == n
    assert np.array_equal(part.indices, projector.sample_indices(n, 4))
    assert projector.projection_path(run, "pca", 2, 4).is_file() and projector.cached_projection(
        run, "pca", 2, 4
    )
    assert projector.cached_projection(run, "pca", 2).coords.shape == (n, 2)  # the full one is still there
