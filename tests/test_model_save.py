"""Our .keras files: the model and its weights, not its optimizer's state (nothing reads it; it tripled the file)."""

from __future__ import annotations

import json
import zipfile

import numpy as np

from core.models import loading


def _trained(epochs: int = 1):
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 1), name="pictures")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)  # moving averages: weights that are not trainable
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu", name="hidden")(x)  # most of the weights
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(x), name="tiny")
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x_train, y_train = rng.random((64, 8, 8, 1), np.float32), rng.integers(0, 3, 64)
    model.fit(x_train, y_train, epochs=epochs, verbose=0)
    return model, x_train


def _h5_names(path) -> list[str]:
    import h5py

    with zipfile.ZipFile(path) as zf:
        (path.parent / "w.h5").write_bytes(zf.read("model.weights.h5"))
    names: list[str] = []
    with h5py.File(path.parent / "w.h5", "r") as h5:
        h5.visit(names.append)
    return names


def test_a_trained_model_is_saved_without_its_optimizer_and_loads_the_same(tmp_path):
    model, x = _trained()
    ours, keras_own = tmp_path / "ours.keras", tmp_path / "keras_own.keras"
    loading.save_model(model, ours, {"class_names": ["a", "b", "c"]})
    model.save(keras_own)
    assert any(n.startswith("optimizer") for n in _h5_names(keras_own))
    assert not any(n.startswith("optimizer") for n in _h5_names(ours))
    assert ours.stat().st_size < 0.6 * keras_own.stat().st_size  # Adam keeps 2 arrays per weight
    with zipfile.ZipFile(ours) as zf:
        config = json.loads(zf.read("config.json"))["config"]
    assert config == json.loads(json.dumps(model.get_config()))  # the input is still called "pictures"
    predicted = loading.load_model(ours).predict(x, verbose=0)
    np.testing.assert_allclose(predicted, model.predict(x, verbose=0), rtol=1e-6, atol=1e-7)
    assert loading.read_meta(ours)["class_names"] == ["a", "b", "c"]


def test_each_save_holds_the_weights_of_that_moment(tmp_path):
    model, x = _trained()
    loading.save_model(model, tmp_path / "m.keras")
    first = loading.load_model(tmp_path / "m.keras").predict(x, verbose=0)
    model.fit(x, np.zeros(len(x), int), epochs=2, verbose=0)  # train on: the weights move
    loading.save_model(model, tmp_path / "m.keras")
    second = loading.load_model(tmp_path / "m.keras").predict(x, verbose=0)
    np.testing.assert_allclose(second, model.predict(x, verbose=0), rtol=1e-6, atol=1e-7)
    assert not np.allclose(first, second)
