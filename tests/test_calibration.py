"""Calibration: temperature scaling, ECE, the reject threshold, and the unfamiliar-image score, on real runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core import atomic, paths
from core.analysis import calibration, head, prediction, unfamiliar
from core.errors import UserError
from core.models import loading
from core.training import runs
from tests.helpers import app_dirs, make_image_folder, train_tiny_run
from tests.test_cli import assert_one_line_error, cli

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------------------------- maths


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (4000, 4))
    p = calibration.scaled_probabilities(z)
    y = np.array([rng.choice(4, p=row) for row in p])
    t = calibration.fit_temperature(3.0 * z, y)  # labels drawn at T=1, logits tripled: the fit says ~3
    assert 2.6 < t < 3.4
    assert calibration.nll(3 * z, y, t) < calibration.nll(3 * z, y, 1.0)


def test_binary_head_scales_its_single_logit():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, (3000, 1))
    y = (rng.random(3000) < 1 / (1 + np.exp(-z[:, 0]))).astype(int)
    t = calibration.fit_temperature(4.0 * z, y)
    assert 3.4 < t < 4.6
    p = calibration.scaled_probabilities(4.0 * z, t)
    assert p.shape == (3000, 2) and np.allclose(p.sum(axis=1), 1.0)


def test_ece_of_a_perfectly_calibrated_bin_is_zero_and_of_an_overconfident_one_is_the_gap():
    p = np.array([[0.9, 0.1]] * 10)
    y = np.array([0] * 9 + [1])
    assert calibration.ece(calibration.reliability_bins(p, y)) == pytest.approx(0.0, abs=1e-12)
    y_half = np.array([0] * 5 + [1] * 5)
    assert calibration.ece(calibration.reliability_bins(p, y_half)) == pytest.approx(0.4)


def test_threshold_from_the_curve_accepts_exactly_what_reaches_the_target():
    rng = np.random.default_rng(2)
    p = calibration.scaled_probabilities(rng.normal(0, 2, (500, 3)))
    y = np.where(rng.random(500) < p.max(axis=1), p.argmax(axis=1), (p.argmax(axis=1) + 1) % 3)
    curve = calibration.coverage_curve(p, y)
    for target in (0.8, 0.9, 0.95):
        thr = calibration.threshold_for(curve, target)
        assert thr is not None
        accepted = p.max(axis=1) >= thr["threshold"]
        assert accepted.mean() == pytest.approx(thr["coverage"])
        assert (p.argmax(axis=1)[accepted] == y[accepted]).mean() >= target
    assert calibration.threshold_for({"coverage": [1.0], "accuracy": [0.5], "threshold": [0.0]}, 0.9) is None


# ------------------------------------------------------------------------------------------------ a run


def _noisy_dataset(name: str, flip: float = 0.25) -> str:
    """Three learnable classes with a quarter of the labels planted wrong: no model can be right 100% of the time."""
    root = make_image_folder(paths.data_dir() / name, per_class=40, size=16)
    rng = np.random.default_rng(7)
    classes = sorted(p.name for p in root.iterdir())
    moves = []  # decided first, so no file moves twice
    for k, c in enumerate(classes):
        files = sorted((root / c).glob("*.png"))
        moves += [(f, classes[(k + 1 + rng.integers(0, 2)) % 3]) for f in files[: int(len(files) * flip)]]
    for f, to in moves:
        shutil.move(f, root / to / f"flip_{f.name}")
    return name


def _sharpen_head(run: runs.Run, factor: float = 10.0) -> None:
    """Multiply the softmax head's weights: same predictions, far more confident (an over-confident model)."""
    model = loading.load_model(run.model_path)
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * factor, bias * factor])
    loading.save_model(model, run.model_path, run.config.to_dict())


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("calib")
    with app_dirs(root):
        name = _noisy_dataset("noisy")
        run = train_tiny_run(name, epochs=3, val_split=0.4)
        _sharpen_head(run)
    return root, name, run


@pytest.fixture
def in_run_dirs(noisy_run, monkeypatch):
    root, _, run = noisy_run
    monkeypatch.setenv("CONVNET_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("CONVNET_RUNS_DIR", str(root / "runs"))
    return run


def test_head_logits_give_the_models_own_probabilities(in_run_dirs):
    run = in_run_dirs
    lm = loading.load_run_model(run)
    val = calibration.validation_split(run)
    x = val.x.astype(np.float32)
    out = head.head_outputs(lm.model, x, lm.output_kind)
    assert out.features is not None and out.features.shape == (len(x), 128)
    raw = prediction.batched_outputs(lm.model, x)
    assert np.allclose(calibration.scaled_probabilities(out.logits), raw, atol=1e-5)


def test_calibrating_an_overconfident_run_lowers_ece_and_predict_uses_the_temperature(in_run_dirs):
    run = in_run_dirs
    before = loading.load_run_model(run)
    assert before.temperature == 1.0
    data = calibration.calibrate_run(run.run_id, target_accuracy=0.9)
    assert data["temperature"] > 1.5  # over-confident: the fit softens it
    assert data["ece_after"] < data["ece_before"]
    assert data["nll_after"] < data["nll_before"]
    assert data["split"]["name"] == "val" and data["split"]["images"] == len(
        calibration.validation_split(run)
    )
    stored = atomic.read_json(run.path / calibration.CALIBRATION_FILE)
    assert stored["temperature"] == pytest.approx(data["temperature"])
    assert len(stored["bins_before"]) == len(stored["bins_after"]) == 15

    lm = loading.load_run_model(run)
    assert lm.temperature == pytest.approx(data["temperature"])
    val = calibration.validation_split(run)
    probs = prediction.probabilities(lm, val.x.astype(np.float32))
    raw = prediction.probabilities(before, val.x.astype(np.float32))
    assert np.array_equal(probs.argmax(axis=1), raw.argmax(axis=1))  # the answer never changes...
    assert probs.max(axis=1).mean() < raw.max(axis=1).mean() - 0.05  # ...only how sure it claims to be

    thr = data["threshold"]
    if thr is not None:  # the threshold met the asked accuracy on the validation split
        accepted = probs.max(axis=1) >= thr["threshold"]
        assert accepted.any()
        assert (probs.argmax(axis=1)[accepted] == val.y[accepted]).mean() >= 0.9

    src = Path(calibration.validation_split(run).paths[0])
    out = cli("predict", "--run", run.run_id, str(src))
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout.splitlines()[0])
    expected = prediction.probabilities(lm, prediction.prepare_for(lm, src, src.name)[0][None])[0]
    assert np.allclose(list(row["probabilities"].values()), expected, atol=1e-5)
    assert isinstance(row["unfamiliar"], bool) and isinstance(row["unfamiliar_score"], float)


def test_a_new_target_moves_the_threshold_and_a_retrained_model_makes_it_stale(in_run_dirs):
    run = in_run_dirs
    calibration.calibrate_run(run.run_id, target_accuracy=0.8)
    low = calibration.set_target(run.run_id, 0.5)["threshold"]
    high = calibration.set_target(run.run_id, 0.99)["threshold"]
    assert low is not None and low["coverage"] == 1.0
    assert high is None or high["coverage"] <= low["coverage"]
    assert calibration.reject_threshold(run.path) == (None if high is None else high["threshold"])
    model = run.model_path.read_bytes()
    run.model_path.write_bytes(model)  # same model, new mtime: calibrated for "another" model
    assert calibration.load(run.path) is None and calibration.temperature(run.path) == 1.0
    assert unfamiliar.load_detector(run.path) is None
    with pytest.raises(UserError, match="calibrate it first"):
        calibration.set_target(run.run_id, 0.9)


def test_unfamiliar_flags_about_5_percent_of_validation_and_strange_images(in_run_dirs, tmp_path):
    run = in_run_dirs
    lm = loading.load_run_model(run)
    detector = unfamiliar.ensure(run, lm)
    meta = atomic.read_json(run.path / unfamiliar.UNFAMILIAR_FILE)
    assert meta["method"] == "knn" and meta["bank_images"] > 0
    assert all(v <= 0.05 + 1e-9 for v in meta["val_flagged"].values())
    lm.detector = detector
    val = calibration.validation_split(run)
    _, scores = prediction.scored(lm, val.x.astype(np.float32))
    assert scores is not None and detector.flags(scores).mean() <= 0.1
    rng = np.random.default_rng(3)
    from PIL import Image

    strange = []
    for i in range(6):  # big smooth gradients and checkerboards: nothing like a blob in a quadrant on noise
        yy, xx = np.mgrid[0:16, 0:16]
        a = (
            ((xx * (i + 1) + yy * 7) % 255).astype(np.uint8)
            if i % 2
            else ((xx // 2 + yy // 2) % 2 * 255).astype(np.uint8)
        )
        a = np.clip(a.astype(int) + rng.integers(0, 20, a.shape), 0, 255).astype(np.uint8)
        p = tmp_path / f"strange_{i}.png"
        Image.fromarray(a, "L").save(p)
        strange.append((p.name, p))
    preds = prediction.predict_sources(lm, strange)
    assert np.mean([p.unfamiliar for p in preds]) >= 0.5


def test_calibrate_cli_prints_ece_temperature_and_threshold(in_run_dirs):
    run = in_run_dirs
    out = cli("calibrate", "--run", run.run_id, "--accuracy", "0.9")
    assert out.returncode == 0, out.stderr
    for needle in ("ECE before:", "ECE after:", "temperature:", "reject threshold"):
        assert needle in out.stdout
    assert_one_line_error(cli("calibrate", "--run", "no-such-run"), "no-such-run")
    assert_one_line_error(cli("calibrate", "--run", run.run_id, "--accuracy", "1.5"), "--accuracy")


def test_calibrating_needs_a_finished_run_with_validation_images(isolated_dirs):
    name = make_image_folder(paths.data_dir() / "tiny", per_class=6).name
    run = train_tiny_run(name, epochs=1, val_split=0.0)
    with pytest.raises(UserError, match="no validation images"):
        calibration.calibrate_run(run.run_id)
    img = next((paths.data_dir() / "tiny" / "circle").glob("*.png"))
    out = cli(
        "predict", "--run", run.run_id, str(img)
    )  # no validation split: predicts, says why there is no score
    assert out.returncode == 0 and "note: no unfamiliar-image score" in out.stderr
    assert "unfamiliar" not in json.loads(out.stdout) and "probabilities" in json.loads(out.stdout)
    runs.update_status(run.path, state="running")
    with pytest.raises(UserError, match="still training"):
        calibration.calibrate_run(run.run_id)
    assert not (run.path / calibration.CALIBRATION_FILE).exists()


def test_the_bundle_carries_the_temperature_and_its_readme_applies_it(in_run_dirs, tmp_path):
    import re
    import zipfile

    from core.analysis import export

    run = in_run_dirs
    data = calibration.calibrate_run(run.run_id, target_accuracy=0.9)
    bundle = export.export_bundle(run.path, tmp_path / "b.zip", formats=("keras",))
    out = tmp_path / "b"
    with zipfile.ZipFile(bundle.path) as zf:
        zf.extractall(out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["temperature"] == pytest.approx(data["temperature"])
    readme = (out / "README.md").read_text()
    assert f"temperature T = {data['temperature']:.4f}" in readme
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    src = Path(calibration.validation_split(run).paths[0])
    lm = loading.load_run_model(run)
    expected = prediction.probabilities(lm, prediction.prepare_for(lm, src, src.name)[0][None])[0]
    printed: list = []
    scope = {"print": lambda *a: printed.append(a)}
    import os

    cwd = os.getcwd()
    os.chdir(out)
    try:
        exec(blocks[0], scope)  # the shared helpers: config, load_image, to_probs, calibrated, report
        exec(blocks[1].replace('"image.png"', repr(str(src))), scope)  # the Keras snippet
    finally:
        os.chdir(cwd)
    best = int(np.argmax(expected))
    assert printed[0][0] == lm.class_names[best]
    assert printed[0][1] == pytest.approx(expected[best], abs=1e-4)


def test_rescaling_probabilities_equals_scaling_the_logits():
    rng = np.random.default_rng(5)
    for k in (1, 4):
        z = rng.normal(0, 3, (50, k))
        for t in (0.5, 2.0):
            np.testing.assert_allclose(
                calibration.rescale(calibration.scaled_probabilities(z), t),
                calibration.scaled_probabilities(z, t),
                atol=1e-10,
            )


def test_damaged_stored_files_count_as_not_calibrated(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model.keras").write_bytes(b"a model")
    stamp = calibration.model_stamp(run_dir)
    good = {"version": 1, "temperature": 2.0, "model_stamp": stamp, "curve": {}, "threshold": None, "split": {},
            **{k: 0.0 for k in calibration.REQUIRED_KEYS if k not in ("curve", "threshold", "split")}}  # fmt: skip
    atomic.write_json(run_dir / calibration.CALIBRATION_FILE, good)
    assert calibration.temperature(run_dir) == 2.0
    for bad in ({**good, "temperature": float("inf")}, {**good, "temperature": "2"},
                {k: v for k, v in good.items() if k != "bins_after"}, [1, 2], {**good, "version": 99}):  # fmt: skip
        (run_dir / calibration.CALIBRATION_FILE).write_text(json.dumps(bad))
        assert calibration.load(run_dir) is None and calibration.temperature(run_dir) == 1.0
    (run_dir / calibration.CALIBRATION_FILE).write_text("{not json")
    assert calibration.load(run_dir) is None

    meta = {"version": 1, "method": "knn", "thresholds": {"knn": 0.5}, "k": 5, "model_stamp": stamp}
    atomic.write_json(run_dir / unfamiliar.UNFAMILIAR_FILE, meta)
    np.save(run_dir / unfamiliar.BANK_FILE, np.ones((10, 4), np.float16))
    assert unfamiliar.load_detector(run_dir) is not None
    np.save(run_dir / unfamiliar.BANK_FILE, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert unfamiliar.load_detector(run_dir) is None  # a pickled bank is never loaded
    (run_dir / unfamiliar.BANK_FILE).write_bytes(b"garbage")
    assert unfamiliar.load_detector(run_dir) is None
