"""Evaluation on tiny models trained for real: every number must agree with scikit-learn / Keras."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from core.analysis import evaluation
from core.errors import UserError

CLASSES = ["top-left", "top-right", "bottom-left"]


def _synthetic(n_per_class: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class c lights up quadrant c of an 8x8 image; the rest is dim noise."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c in range(n_classes):
        for _ in range(n_per_class):
            img = rng.uniform(0, 40, size=(8, 8, 1))
            r, q = divmod(c, 2)
            img[r * 4 : r * 4 + 4, q * 4 : q * 4 + 4, 0] += 180
            images.append(img)
            labels.append(c)
    return np.asarray(images, dtype=np.float32), np.asarray(labels, dtype=np.int64)


def _with_noise(images: np.ndarray, labels: np.ndarray, n_noise: int, n_classes: int, seed: int):
    """Append pure-noise images with random labels so some predictions are guaranteed to be wrong."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, size=(n_noise, 8, 8, 1)).astype(np.float32)
    noise_labels = rng.integers(0, n_classes, size=n_noise)
    return np.concatenate([images, noise]), np.concatenate([labels, noise_labels]).astype(np.int64)


def _trunk(inp, filters: int = 4):
    x = keras.layers.Rescaling(1 / 255)(inp)
    return keras.layers.Conv2D(filters, 3, activation="relu")(x)


@pytest.fixture(scope="module")
def softmax_setup():
    keras.utils.set_random_seed(0)
    train_x, train_y = _synthetic(20, 3, seed=1)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(_trunk(inp))
    hidden = keras.layers.Dense(16, activation="relu", name="hidden16")(x)
    out = keras.layers.Dense(3, activation="softmax", name="head")(hidden)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(train_x, train_y, epochs=2, batch_size=16, verbose=0)
    test_x, test_y = _with_noise(*_synthetic(10, 3, seed=2), n_noise=30, n_classes=3, seed=3)
    paths = [f"img_{i:03d}.png" for i in range(len(test_y))]
    result = evaluation.evaluate(model, test_x, test_y, CLASSES, "softmax", paths=paths, split="test")
    return model, test_x, test_y, result


@pytest.fixture(scope="module")
def sigmoid_setup():
    """No hidden Dense and a 2-unit feature vector: exercises the fallback layer and a 2-component PCA."""
    keras.utils.set_random_seed(0)
    train_x, train_y = _synthetic(20, 2, seed=4)
    inp = keras.Input((8, 8, 1))
    pooled = keras.layers.GlobalAveragePooling2D(name="pooled")(_trunk(inp, filters=2))
    out = keras.layers.Dense(1, activation="sigmoid")(pooled)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="binary_crossentropy")
    model.fit(train_x, train_y.astype(np.float32), epochs=2, batch_size=16, verbose=0)
    test_x, test_y = _with_noise(*_synthetic(10, 2, seed=5), n_noise=10, n_classes=2, seed=6)
    return model, test_x, test_y


@pytest.fixture(scope="module")
def logits_setup():
    keras.utils.set_random_seed(0)
    train_x, train_y = _synthetic(20, 3, seed=7)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(_trunk(inp))
    hidden = keras.layers.Dense(16, activation="relu", name="hidden16")(x)
    out = keras.layers.Dense(3, name="logits")(hidden)
    model = keras.Model(inp, out)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(train_x, train_y, epochs=2, batch_size=16, verbose=0)
    test_x, test_y = _with_noise(*_synthetic(10, 3, seed=8), n_noise=30, n_classes=3, seed=9)
    return model, test_x, test_y


def _raw(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def test_metrics_match_sklearn(softmax_setup):
    model, x, y, result = softmax_setup
    expected_probs = _raw(model, x)
    np.testing.assert_allclose(result.probabilities, expected_probs, rtol=1e-6, atol=1e-7)
    pred = expected_probs.argmax(axis=1)
    np.testing.assert_array_equal(result.predictions, pred)
    np.testing.assert_array_equal(result.labels, y)
    assert result.accuracy == pytest.approx(accuracy_score(y, pred))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=[0, 1, 2], zero_division=0
    )
    assert list(result.per_class.index) == CLASSES
    assert list(result.per_class.columns) == ["precision", "recall", "f1", "support"]
    np.testing.assert_allclose(result.per_class["precision"], precision)
    np.testing.assert_allclose(result.per_class["recall"], recall)
    np.testing.assert_allclose(result.per_class["f1"], f1)
    np.testing.assert_array_equal(result.per_class["support"], support)
    np.testing.assert_array_equal(result.confusion, confusion_matrix(y, pred, labels=[0, 1, 2]))
    np.testing.assert_allclose(result.confidence, expected_probs.max(axis=1), rtol=1e-6)
    assert result.split == "test"
    assert result.paths is not None and result.paths[5] == "img_005.png"


def test_softmax_loss_matches_keras(softmax_setup):
    _, _, y, result = softmax_setup
    keras_loss = float(
        keras.losses.SparseCategoricalCrossentropy()(y, result.probabilities.astype(np.float32))
    )
    assert result.loss == pytest.approx(keras_loss, abs=1e-5)


def test_sigmoid_head(sigmoid_setup):
    model, x, y = sigmoid_setup
    result = evaluation.evaluate(model, x, y, ["off", "on"], "sigmoid")
    p = _raw(model, x)
    assert result.probabilities.shape == (len(y), 2)
    np.testing.assert_allclose(result.probabilities[:, 1], p[:, 0], rtol=1e-6)
    np.testing.assert_array_equal(result.predictions, (p[:, 0] > 0.5).astype(int))
    keras_loss = float(keras.losses.BinaryCrossentropy()(y.reshape(-1, 1).astype(np.float32), p))
    assert result.loss == pytest.approx(keras_loss, abs=1e-5)
    np.testing.assert_array_equal(result.confusion, confusion_matrix(y, result.predictions, labels=[0, 1]))
    # No hidden Dense: the layer feeding the head, with only 2 dims -> 2 components, third coordinate padded.
    assert result.embedding_layer == "pooled"
    assert len(result.explained_variance) == 2
    assert result.pca_coords.shape == (len(y), 3)
    assert np.all(result.pca_coords[:, 2] == 0)


def test_logits_head(logits_setup):
    model, x, y = logits_setup
    result = evaluation.evaluate(model, x, y, CLASSES, "logits")
    logits = _raw(model, x)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(result.predictions, logits.argmax(axis=1))
    keras_loss = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits))
    assert result.loss == pytest.approx(keras_loss, abs=1e-5)
    assert result.embedding_layer == "hidden16"


def test_cell_indices_partition_all_samples(softmax_setup):
    _, _, y, result = softmax_setup
    seen = []
    for t in range(3):
        for p in range(3):
            cell = evaluation.cell_indices(result, t, p)
            expected = np.flatnonzero((y == t) & (result.predictions == p))
            np.testing.assert_array_equal(np.sort(cell), expected)
            assert len(cell) == result.confusion[t, p]
            assert np.all(np.diff(result.confidence[cell]) <= 0)
            seen.extend(cell.tolist())
    assert sorted(seen) == list(range(len(y)))


def test_misclassified(softmax_setup):
    _, _, y, result = softmax_setup
    wrong = evaluation.misclassified(result)
    expected = np.flatnonzero(result.predictions != y)
    assert 0 < len(expected) < len(y), "fixture should mix right and wrong predictions"
    np.testing.assert_array_equal(np.sort(wrong), expected)
    assert np.all(np.diff(result.confidence[wrong]) <= 0)
    for c in range(3):
        of_class = evaluation.misclassified(result, true_class=c)
        np.testing.assert_array_equal(np.sort(of_class), np.flatnonzero((result.predictions != y) & (y == c)))


def test_normalized_confusion_rows():
    model_free = evaluation.EvaluationResult(
        class_names=["a", "b", "c"],
        loss=0.0,
        accuracy=0.0,
        labels=np.array([0, 0, 1]),
        predictions=np.array([0, 1, 1]),
        probabilities=np.full((3, 3), 1 / 3),
        confidence=np.full(3, 1 / 3),
        per_class=pd.DataFrame(),
        confusion=np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]]),
        embedding_layer="x",
        pca_coords=np.zeros((0, 3)),
        pca_labels=np.zeros(0, dtype=int),
        pca_indices=np.zeros(0, dtype=int),
    )
    norm = evaluation.normalized_confusion(model_free)
    np.testing.assert_allclose(norm, [[0.5, 0.5, 0], [0, 1, 0], [0, 0, 0]])


def test_pca_embeddings(softmax_setup):
    model, x, y, result = softmax_setup
    assert result.embedding_layer == "hidden16"
    n = len(y)
    assert result.pca_coords.shape == (n, 3)
    ev = np.asarray(result.explained_variance)
    assert len(ev) == min(10, 16, n)
    assert ev.sum() <= 1 + 1e-9
    assert np.all(np.diff(ev) <= 1e-12)

    subset = evaluation.evaluate(model, x, y, CLASSES, "softmax", embed_samples=25)
    assert subset.pca_coords.shape == (25, 3)
    idx = subset.pca_indices
    assert len(np.unique(idx)) == 25 and idx.min() >= 0 and idx.max() < n
    np.testing.assert_array_equal(subset.pca_labels, y[idx])
    # Same images twice -> same sample (fixed seed).
    again = evaluation.evaluate(model, x, y, CLASSES, "softmax", embed_samples=25)
    np.testing.assert_array_equal(again.pca_indices, idx)
    # Coordinates are a PCA of the Dense(16) activations of exactly those samples.
    sub_model = keras.Model(model.inputs[0], model.get_layer("hidden16").output)
    feats = keras.ops.convert_to_numpy(sub_model(x[idx], training=False)).astype(np.float64)
    ref = PCA(n_components=10).fit(feats)
    np.testing.assert_allclose(subset.explained_variance, ref.explained_variance_ratio_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        np.abs(subset.pca_coords), np.abs(ref.transform(feats)[:, :3]), rtol=1e-5, atol=1e-6
    )


def test_tiny_splits_degrade(softmax_setup):
    model, x, y, _ = softmax_setup
    two = evaluation.evaluate(model, x[:2], y[:2], CLASSES, "softmax")
    assert two.pca_coords.shape == (2, 3)
    assert len(two.explained_variance) <= 2
    one = evaluation.evaluate(model, x[:1], y[:1], CLASSES, "softmax")
    assert one.pca_coords.shape == (1, 3)
    assert one.explained_variance == []
    # Class 2 absent from the labels: its confusion row normalises to zeros, not NaN.
    norm = evaluation.normalized_confusion(two)
    assert np.all(np.isfinite(norm))
    assert np.all(norm[2] == 0)


def test_predict_probabilities_batches_and_progress(softmax_setup):
    model, x, _, result = softmax_setup
    seen: list[float] = []
    probs = evaluation.predict_probabilities(model, x, batch_size=16, progress=seen.append)
    np.testing.assert_allclose(probs, result.probabilities, rtol=1e-6, atol=1e-7)
    assert len(seen) == int(np.ceil(len(x) / 16))
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)


def test_evaluate_progress_reaches_one(softmax_setup):
    model, x, y, _ = softmax_setup
    seen: list[float] = []
    evaluation.evaluate(model, x, y, CLASSES, "softmax", embed_samples=10, progress=seen.append)
    assert seen and seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    assert all(0 < f <= 1 for f in seen)


def test_bad_inputs_are_user_errors(softmax_setup):
    model, x, y, _ = softmax_setup
    with pytest.raises(UserError):
        evaluation.evaluate(model, x, y, ["a", "b"], "softmax")  # 3 outputs, 2 classes
    with pytest.raises(UserError):
        evaluation.evaluate(model, x, y + 5, CLASSES, "softmax")
    with pytest.raises(UserError):
        evaluation.evaluate(model, np.zeros((2, 9, 9, 1), np.float32), y[:2], CLASSES, "softmax")


def test_save_load_round_trip(softmax_setup, tmp_path):
    *_, result = softmax_setup
    run_dir = tmp_path / "run1"
    evaluation.save(result, run_dir)
    assert (run_dir / "evaluation" / "metrics.json").is_file()
    assert (run_dir / "evaluation" / "arrays.npz").is_file()
    assert not [p for p in (run_dir / "evaluation").iterdir() if p.name.startswith(".")]
    loaded = evaluation.load(run_dir)
    assert loaded is not None
    assert loaded.class_names == result.class_names
    assert loaded.loss == result.loss and loaded.accuracy == result.accuracy
    for name in ("labels", "predictions", "confusion", "pca_labels", "pca_indices"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(result, name), err_msg=name)
    for name in ("probabilities", "confidence", "pca_coords"):
        np.testing.assert_allclose(getattr(loaded, name), getattr(result, name), err_msg=name)
    pd.testing.assert_frame_equal(loaded.per_class, result.per_class)
    assert loaded.embedding_layer == result.embedding_layer
    assert loaded.explained_variance == result.explained_variance
    assert loaded.paths == result.paths
    assert loaded.split == result.split
    assert evaluation.format_table(loaded) == evaluation.format_table(result)


def test_load_incomplete_or_corrupt(softmax_setup, tmp_path):
    *_, result = softmax_setup
    assert evaluation.load(tmp_path / "missing") is None
    run_dir = tmp_path / "run"
    folder = evaluation.save(result, run_dir)
    (folder / "metrics.json").unlink()
    assert (folder / "arrays.npz").is_file()
    assert evaluation.load(run_dir) is None
    evaluation.save(result, run_dir)
    (folder / "arrays.npz").write_bytes(b"not a zip")
    assert evaluation.load(run_dir) is None
    # metrics.json from one save next to arrays from another (a reader racing a re-save) is rejected.
    evaluation.save(result, run_dir)
    old_metrics = (folder / "metrics.json").read_bytes()
    evaluation.save(result, run_dir)
    (folder / "metrics.json").write_bytes(old_metrics)
    assert evaluation.load(run_dir) is None


def test_format_table(softmax_setup):
    *_, result = softmax_setup
    text = evaluation.format_table(result)
    lines = text.splitlines()
    assert f"{result.accuracy:.4f}" in lines[0] and f"{result.loss:.4f}" in lines[0]
    body = lines[-3:]
    for name, line in zip(CLASSES, body, strict=True):
        assert line.startswith(name)
        assert line.split()[-1] == str(int(result.per_class.loc[name, "support"]))
    assert len({len(line) for line in lines[2:]}) == 1, "columns should be aligned"
