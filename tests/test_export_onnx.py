"""ONNX export: ONNX Runtime must reproduce the Keras model on raw pixels, augmentation must be inactive, the file
lands only in a new place, and a bundle carries it with its check and a README section."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from keras import layers

from core import options
from core.analysis import export as ex
from core.analysis import export_onnx
from core.analysis.probabilities import to_probabilities
from core.errors import UserError
from tests.helpers import module_run
from tests.test_export import CLASS_NAMES, SHAPE, _camera_crops, _head_model, _synthetic, _write_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained softmax model with RandomFlip + Rescaling in front, saved as a run."""
    keras.utils.set_random_seed(11)
    x, y = _synthetic(48, seed=1)
    inputs = keras.Input(SHAPE)
    h = layers.RandomFlip("horizontal")(inputs)
    h = layers.RandomRotation(0.1)(h)
    h = layers.Rescaling(1.0 / 255)(h)
    h = layers.Conv2D(4, 3, activation="relu")(h)
    h = layers.BatchNormalization()(h)
    h = layers.MaxPooling2D()(h)
    h = layers.Dropout(0.2)(h)
    h = layers.Flatten()(h)
    outputs = layers.Dense(3, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    run_dir = _write_run(tmp_path_factory.mktemp("runs") / "run-onnx", model, "softmax", CLASS_NAMES)
    images = np.concatenate([_synthetic(12, seed=2)[0], _camera_crops(12)])
    return {"run_dir": run_dir, "model": model, "images": images}


def test_onnx_file_reproduces_keras_on_raw_pixels(trained, tmp_path):
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    path, check = ex.export_onnx_file(trained["run_dir"], tmp_path / "m.onnx", check_images=trained["images"])
    assert path == tmp_path / "m.onnx" and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    assert check.n == len(trained["images"]) and check.max_abs_diff <= 1e-5 and check.top1_agreement == 1.0

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("images", "output") and inp.shape == ["batch", *SHAPE]
    images = trained["images"]  # raw pixels 0..255, no scaling by the caller: the model's contract
    got = session.run(None, {"images": images})[0]
    want = np.asarray(trained["model"](images, training=False))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # augmentation is inactive: the same image twice gives the same answer, and a flipped one may differ
    again = session.run(None, {"images": images})[0]
    np.testing.assert_array_equal(got, again)
    assert to_probabilities(got, "softmax").argmax(1).tolist() == want.argmax(1).tolist()


@pytest.mark.parametrize("kind", ["sigmoid", "logits"])
def test_sigmoid_and_logits_heads_with_augmentation_convert(kind, tmp_path):
    keras.utils.set_random_seed(5)
    model = _head_model(kind)  # RandomRotation, RandomZoom, RandomContrast, Rescaling(offset=-1)
    names = ["a", "b"] if kind == "sigmoid" else CLASS_NAMES
    run_dir = _write_run(tmp_path / "runs" / f"run-{kind}", model, kind, names)
    images = _camera_crops(8)
    path, check = ex.export_onnx_file(run_dir, tmp_path / "h.onnx", check_images=images)
    assert check.max_abs_diff <= 1e-5 and check.n == 8
    got = export_onnx.onnx_outputs(path, images)
    np.testing.assert_allclose(got, np.asarray(model(images, training=False)), atol=1e-5, rtol=0)


def test_a_drifting_export_is_refused_and_nothing_is_written(trained, tmp_path, monkeypatch):
    """The check can fail: with a tolerance below the float32 drift the export is refused in one line."""
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    monkeypatch.setattr(options, "ONNX_MAX_ABS_DIFF", -1.0)
    with pytest.raises(UserError, match=r"does not reproduce the Keras model \(max \|p_onnx - p_keras\|"):
        ex.export(trained["run_dir"], "onnx", tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_converter_failure_is_one_line_naming_the_tested_versions(trained, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(options, "ONNX_OPSET", 99)  # a real tf2onnx refusal, through the real code path
    with pytest.raises(UserError) as info:
        ex.export(trained["run_dir"], "onnx", out / "m.onnx")
    message = str(info.value)
    assert message.startswith("ONNX conversion of run run-onnx failed: ") and "Opset 99" in message
    assert "\n" not in message and f"tf2onnx {options.TF2ONNX_VERSION}" in message
    assert list(out.iterdir()) == []


def test_existing_targets_are_refused_and_left_alone(trained, tmp_path):
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"mine")
    with pytest.raises(UserError, match="already exists; choose a new name"):
        ex.export(trained["run_dir"], "onnx", mine)
    link = tmp_path / "link.onnx"
    link.symlink_to(mine)
    with pytest.raises(UserError, match="is a symbolic link"):
        ex.export(trained["run_dir"], "onnx", link)
    assert mine.read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == [
        "link.onnx",
        "mine.onnx",
    ]
    first = ex.export(trained["run_dir"], "onnx", tmp_path)  # a folder: a new <run-id>.onnx inside it
    second = ex.export(trained["run_dir"], "onnx")  # no target: the run's exports/ folder
    assert first == tmp_path / "run-onnx.onnx" and second == trained["run_dir"] / "exports" / "run-onnx.onnx"
    third = ex.export(trained["run_dir"], "onnx")
    assert third.name == "run-onnx-2.onnx" and second.is_file() and third.is_file()


def test_bundle_holds_model_onnx_its_check_and_readme(trained, tmp_path):
    report = ex.export_bundle(trained["run_dir"], tmp_path / "b.zip", formats=("keras", "onnx"))
    assert set(report.files) == {"model.keras", "model.onnx", "config.json", "README.md", "checks.json"}
    assert report.checks["onnx"].max_abs_diff <= 1e-5 and report.checks["onnx"].n > 0
    with zipfile.ZipFile(report.path) as zf:
        readme = zf.read("README.md").decode()
        config = json.loads(zf.read("config.json"))
        checks = json.loads(zf.read("checks.json"))
        data = zf.read("model.onnx")
    assert "model.onnx" in readme and "onnxruntime" in readme and '"images"' in readme
    assert config["files"]["onnx"] == "model.onnx" and checks["onnx"]["n"] == report.checks["onnx"].n
    out = export_onnx.onnx_outputs(data, trained["images"])
    np.testing.assert_allclose(
        out, np.asarray(trained["model"](trained["images"], training=False)), atol=1e-5
    )
    assert "onnx" in options.BUNDLE_FORMATS  # the default bundle carries it too


@pytest.mark.slow
def test_cli_export_onnx_reports_the_check(tmp_path_factory):
    """The real CLI on a real trained run: path on stdout, the ONNX Runtime check on stderr, refusal in one line."""
    root, _, run = module_run(tmp_path_factory, "onnx-cli")
    env = {**os.environ, "CONVNET_DATA_DIR": str(root / "data"), "CONVNET_RUNS_DIR": str(root / "runs")}
    cmd = [sys.executable, "-m", "core", "export", "--run", run.run_id, "--format", "onnx"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path == root / "runs" / run.run_id / "exports" / f"{run.run_id}.onnx" and path.is_file()
    assert "onnx: max |p - p_keras| = " in done.stderr and "Traceback" not in done.stderr
    n = int(done.stderr.split(" check images")[0].rsplit(" on ", 1)[1])
    assert n > len(
        export_onnx.probe_images(run.input_shape)
    )  # the run's own validation images were checked too
    again = subprocess.run(
        [*cmd, "--out", str(path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert (
        again.returncode == 2 and again.stderr.strip() == f"error: {path} already exists; choose a new name"
    )


@pytest.mark.slow
def test_mobilenetv2_transfer_preset_converts_and_matches(tmp_path):
    """The transfer preset (a nested MobileNetV2 base, flip/rotate, its Rescaling preprocessing) at its smallest
    size, with random weights whose batch-norm statistics are spread out so its logits are not all ~0."""
    from core.models.architectures import build_model

    keras.utils.set_random_seed(2)
    shape = (32, 32, 3)
    model = build_model("mobilenetv2-transfer", shape, 3, weights=None)
    rng = np.random.default_rng(0)
    for w in model.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        elif "moving_mean" in w.path or "beta" in w.path:
            w.assign(rng.normal(0.0, 0.5, w.shape).astype("float32"))
    run_dir = tmp_path / "runs" / "run-mnv2"
    run_dir.mkdir(parents=True)
    model.save(run_dir / "model.keras")
    config = {
        "run_id": "run-mnv2",
        "class_names": ["a", "b", "c"],
        "input_shape": list(shape),
        "output_kind": "logits",
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    images = export_onnx.probe_images(shape, 6)
    path, check = ex.export_onnx_file(run_dir, tmp_path / "mnv2.onnx", check_images=images)
    got = export_onnx.onnx_outputs(path, images)
    want = np.asarray(model(images, training=False))
    assert np.abs(want).max() > 0.01  # a real signal, not a model whose outputs are all ~0
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert check.max_abs_diff <= 1e-5
