"""Exports of a real (tiny) trained model: every format must reproduce the Keras predictions it came from."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers
from PIL import Image
from skimage import data as skdata

from core.analysis import export as ex
from core.analysis.probabilities import to_probabilities
from core.errors import UserError

CLASS_NAMES = ["top", "bottom", "centre"]
SHAPE = (16, 16, 1)


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated classes (bright top half / bottom half / centre square) that survive a horizontal
    flip, with noise so no image is itself symmetric (an active RandomFlip would change the outputs)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.uniform(0, 60, size=(n, *SHAPE)).astype(np.float32)
    for i, label in enumerate(y):
        if label == 0:
            x[i, :8] += 180
        elif label == 1:
            x[i, 8:] += 180
        else:
            x[i, 4:12, 4:12] += 180
    return np.clip(x, 0, 255), y


def _camera_crops(n: int = 24) -> np.ndarray:
    """Real photographic texture: crops of skimage's cameraman, shrunk to the model's input size."""
    cam = skdata.camera()
    crops = []
    for k in range(n):
        r, c = divmod(k, 6)
        tile = cam[r * 96 : r * 96 + 96, c * 80 : c * 80 + 96]
        small = Image.fromarray(tile).resize(SHAPE[:2], Image.BILINEAR)
        crops.append(np.asarray(small, dtype=np.float32)[..., None])
    return np.stack(crops)


def _write_run(run_dir: Path, model: keras.Model, output_kind: str, class_names: list[str]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.keras")
    config = {
        "run_id": run_dir.name,
        "dataset": "synthetic",
        "preset": "tiny",
        "class_names": class_names,
        "input_shape": list(SHAPE),
        "output_kind": output_kind,
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One trained softmax model shared by the module: SavedModel/TFLite conversion is the slow part."""
    keras.utils.set_random_seed(7)
    x, y = _synthetic(60, seed=1)
    inputs = keras.Input(SHAPE)
    h = layers.RandomFlip("horizontal")(inputs)
    h = layers.Rescaling(1.0 / 255)(h)
    h = layers.Conv2D(4, 3, activation="relu")(h)
    h = layers.MaxPooling2D()(h)
    h = layers.Flatten()(h)
    h = layers.Dense(8, activation="relu")(h)
    outputs = layers.Dense(3, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    hist = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    run_dir = _write_run(tmp_path_factory.mktemp("runs") / "run-softmax", model, "softmax", CLASS_NAMES)
    test_x, _ = _synthetic(30, seed=2)
    images = np.concatenate([test_x, _camera_crops()])
    return {
        "run_dir": run_dir,
        "model": model,
        "images": images,
        "acc": hist.history["accuracy"][-1],
        "out": tmp_path_factory.mktemp("exports"),
    }


def test_fixture_model_learned_something(trained):
    test_x, test_y = _synthetic(30, seed=2)
    pred = np.asarray(trained["model"](test_x, training=False)).argmax(axis=1)
    assert (pred == test_y).mean() >= 0.9


def test_keras_export_loads_and_predicts_identically(trained):
    out = ex.export_keras(trained["run_dir"], trained["out"] / "copy" / "model.keras")
    assert out.read_bytes() == (trained["run_dir"] / "model.keras").read_bytes()
    reloaded = keras.models.load_model(out)
    x = trained["images"]
    np.testing.assert_array_equal(
        np.asarray(reloaded(x, training=False)), np.asarray(trained["model"](x, training=False))
    )
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.keras"]  # no temp files left behind


def test_savedmodel_serve_matches_keras_and_ignores_augmentation(trained):
    out = ex.export_savedmodel(trained["run_dir"], trained["out"] / "sm" / "saved")
    assert (out / "saved_model.pb").is_file()
    loaded = tf.saved_model.load(str(out))
    x = trained["images"]
    expected = np.asarray(trained["model"](x, training=False))
    for _ in range(2):  # an active RandomFlip would make repeated calls differ from Keras (and each other)
        np.testing.assert_allclose(np.asarray(loaded.serve(tf.constant(x))), expected, atol=1e-5, rtol=0)
    served = loaded.signatures["serving_default"](images=tf.constant(x[:4]))
    np.testing.assert_allclose(np.asarray(next(iter(served.values()))), expected[:4], atol=1e-5, rtol=0)

    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = ex.export(trained["run_dir"], "savedmodel", out)  # an existing folder gets a new sub-folder
    assert again == out / "run-softmax_savedmodel" and (again / "saved_model.pb").is_file()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and again not in p.parents} == before
    assert [p.name for p in out.parent.iterdir()] == ["saved"]


def test_tflite_float_matches_keras_on_real_images(trained):
    path = ex.export_tflite(trained["run_dir"], trained["out"] / "model.tflite")
    check = ex.check_tflite(path, trained["model"], trained["images"], output_kind="softmax")
    assert check.n == len(trained["images"]) == 54
    assert check.max_abs_diff <= 1e-4
    assert check.top1_agreement == 1.0

    # The check is not vacuous: an independently initialised twin of the model disagrees visibly.
    twin = keras.models.clone_model(trained["model"])
    assert ex.check_tflite(path, twin, trained["images"]).max_abs_diff > 1e-3


def test_tflite_quantised_keeps_top_class(trained):
    float_path = ex.export_tflite(trained["run_dir"], trained["out"] / "f.tflite")
    quant_path = ex.export(trained["run_dir"], "tflite-quant", trained["out"] / "q.tflite")
    assert quant_path.stat().st_size < float_path.stat().st_size
    images = trained["images"]
    check = ex.check_tflite(quant_path, trained["run_dir"] / "model.keras", images)
    assert 0 < check.max_abs_diff < 0.05  # weights really were quantised, but only slightly perturbed
    assert check.top1_agreement >= 0.95

    # Quantisation error is a few 1e-3 in probability, so only images where Keras's top class is clear can be
    # required to keep it; out-of-distribution camera crops near a tie would make the test flaky, not stricter.
    probs = np.sort(np.asarray(trained["model"](images, training=False)), axis=1)
    clear = probs[:, -1] - probs[:, -2] >= 0.05
    assert clear.sum() >= 40
    assert ex.check_tflite(quant_path, trained["model"], images[clear]).top1_agreement >= 0.99


def test_bundle_contains_every_format_and_loads(trained, tmp_path):
    images = trained["images"]
    report = ex.export_bundle(trained["run_dir"], tmp_path / "exp" / "bundle.zip", check_images=images)
    assert report.path == tmp_path / "exp" / "bundle.zip"
    with zipfile.ZipFile(report.path) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "unzipped")
    for member in (
        "model.keras",
        "model.tflite",
        "model_quant.tflite",
        "model.onnx",
        "config.json",
        "README.md",
        "checks.json",
    ):
        assert member in names
    assert "saved_model/saved_model.pb" in names
    assert any(n.startswith("saved_model/variables/") for n in names)
    assert set(report.files) == names
    assert [p.name for p in report.path.parent.iterdir()] == ["bundle.zip"]  # staging dirs cleaned up

    root = tmp_path / "unzipped"
    config = json.loads((root / "config.json").read_text())
    assert config["class_names"] == CLASS_NAMES
    assert config["input_size"] == [16, 16] and config["channels"] == 1
    assert config["output_kind"] == "softmax"
    assert config["preprocessing"] == "float32 raw pixels 0..255; scaling is inside the model"

    checks = json.loads((root / "checks.json").read_text())
    assert checks["tflite"]["n"] == len(images) and checks["tflite"]["max_abs_diff"] <= 1e-4
    assert checks["tflite-quant"]["n"] == len(images) and checks["tflite-quant"]["top1_agreement"] >= 0.95
    assert report.checks["tflite"].max_abs_diff == checks["tflite"]["max_abs_diff"]
    assert checks["onnx"]["n"] == len(images) and checks["onnx"]["max_abs_diff"] <= 1e-5

    readme = (root / "README.md").read_text()
    for snippet in (
        "keras.models.load_model",
        "tf.saved_model.load",
        "model.tflite",
        "Image.open",
        "class_names",
    ):
        assert snippet in readme

    expected = np.asarray(trained["model"](images, training=False))
    loaded = tf.saved_model.load(str(root / "saved_model"))
    np.testing.assert_allclose(np.asarray(loaded.serve(tf.constant(images))), expected, atol=1e-5, rtol=0)
    reloaded = keras.models.load_model(root / "model.keras")
    np.testing.assert_array_equal(np.asarray(reloaded(images, training=False)), expected)


def test_bundle_only_requested_formats(trained, tmp_path):
    report = ex.export_bundle(trained["run_dir"], tmp_path / "small.zip", formats=("tflite",))
    assert set(report.files) == {"model.tflite", "config.json", "README.md"}
    assert report.checks == {}
    with zipfile.ZipFile(report.path) as zf:
        readme = zf.read("README.md").decode()
    assert "model.tflite" in readme and "tf.saved_model.load" not in readme
    with pytest.raises(UserError, match="unknown bundle format"):
        ex.export_bundle(trained["run_dir"], tmp_path / "x.zip", formats=("pdf",))


def _head_model(kind: str) -> keras.Model:
    """Tiny model with the other augmentation layers, so their inference-mode export is exercised too."""
    inputs = keras.Input(SHAPE)
    h = layers.RandomRotation(0.2)(inputs)
    h = layers.RandomZoom(0.2)(h)
    h = layers.RandomContrast(0.2)(h)
    h = layers.Rescaling(1.0 / 127.5, offset=-1.0)(h)
    h = layers.Conv2D(4, 3, activation="relu")(h)
    h = layers.GlobalAveragePooling2D()(h)
    outputs = layers.Dense(1, activation="sigmoid")(h) if kind == "sigmoid" else layers.Dense(3)(h)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("kind", ["sigmoid", "logits"])
def test_sigmoid_and_logits_heads_export(kind, tmp_path):
    keras.utils.set_random_seed(3)
    model = _head_model(kind)
    x, y = _synthetic(24, seed=4)
    if kind == "sigmoid":
        y = (y == 0).astype("float32")
        model.compile(optimizer="adam", loss="binary_crossentropy")
        names = ["other", "top"]
    else:
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        names = CLASS_NAMES
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    run_dir = _write_run(tmp_path / f"run-{kind}", model, kind, names)

    images = np.concatenate([x[:8], _camera_crops(8)])
    report = ex.export_bundle(
        run_dir, tmp_path / "b.zip", formats=("savedmodel", "tflite"), check_images=images
    )
    assert report.checks["tflite"].max_abs_diff <= 1e-4
    assert report.checks["tflite"].top1_agreement == 1.0
    with zipfile.ZipFile(report.path) as zf:
        config = json.loads(zf.read("config.json"))
        zf.extractall(tmp_path / "unzipped")
    assert config["output_kind"] == kind and config["class_names"] == names
    assert f"`{kind}`" in (tmp_path / "unzipped" / "README.md").read_text()

    raw = np.asarray(model(images, training=False))
    loaded = tf.saved_model.load(str(tmp_path / "unzipped" / "saved_model"))
    served = np.asarray(loaded.serve(images))
    np.testing.assert_allclose(served, raw, atol=1e-5, rtol=0)
    assert to_probabilities(served, kind).shape == (len(images), len(names))
    assert ex.infer_output_kind(model) == kind


def test_unknown_format_is_a_user_error(trained, tmp_path):
    with pytest.raises(UserError, match="unknown export format 'pdf'"):
        ex.export(trained["run_dir"], "pdf", tmp_path / "m.pdf")


@pytest.mark.parametrize("fmt", ex.FORMATS)
def test_missing_model_is_a_user_error(fmt, tmp_path):
    run_dir = tmp_path / "run-untrained"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"run_id": "run-untrained", "class_names": CLASS_NAMES}))
    with pytest.raises(UserError, match="^run run-untrained has no saved model yet$"):
        ex.export(run_dir, fmt, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unreadable_model_is_a_user_error(tmp_path):
    run_dir = tmp_path / "run-broken"
    run_dir.mkdir()
    (run_dir / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="^the model of run run-broken is not a .keras model file$") as info:
        ex.export_tflite(run_dir, tmp_path / "m.tflite")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "m.tflite").exists()


@keras.saving.register_keras_serializable(package="test_export")
class _Tan(layers.Layer):
    """tan has no TFLite builtin kernel, so conversion of a model using it must fail."""

    def call(self, x):
        return keras.ops.tan(x)


def test_converter_failure_is_one_clear_line(tmp_path):
    inputs = keras.Input(SHAPE)
    outputs = layers.Dense(2, activation="softmax")(layers.Flatten()(_Tan()(inputs)))
    run_dir = _write_run(tmp_path / "run-tan", keras.Model(inputs, outputs), "softmax", ["a", "b"])
    with pytest.raises(
        UserError, match=r"TFLite conversion of run run-tan failed: .*not support.*Tan"
    ) as info:
        ex.export_tflite(run_dir, tmp_path / "tan.tflite")
    assert "\n" not in str(info.value) and len(str(info.value)) < 300
    assert not (tmp_path / "tan.tflite").exists()
    with pytest.raises(UserError, match="TFLite conversion of run run-tan failed"):
        ex.export_bundle(run_dir, tmp_path / "tan.zip", formats=("keras", "tflite"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run-tan", "runs"]  # no staging or temp zip
