"""The calibration section (on Evaluate for now) and Classify's calibrated answers, through AppTest on a real run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core import atomic
from core.analysis import calibration, prediction, unfamiliar
from core.models import loading
from tests import helpers
from tests.apptest_support import open_trained_page, texts


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return helpers.module_run(tmp_path_factory, "calibration_page")


def test_calibrate_button_draws_reliability_and_the_slider_stores_the_threshold(
    trained, isolated_dirs, monkeypatch
):
    run = trained[2]
    page = open_trained_page(trained, monkeypatch, "pages/evaluate.py")
    at = page.at
    assert "Calibration and a threshold you can trust" in texts(at)
    assert "cal_target" not in [s.key for s in at.slider]  # nothing to pick from before calibrating
    at.button(key="cal_run").click()
    at = page.run()
    assert (run.path / calibration.CALIBRATION_FILE).is_file()
    labels = {m.label: m.value for m in at.metric}
    stored = atomic.read_json(run.path / calibration.CALIBRATION_FILE)
    assert labels["Temperature"] == f"{stored['temperature']:.3f}"
    assert labels["ECE before"] == f"{stored['ece_before']:.4f}" and "ECE after" in labels
    charts = {c.proto.id for c in at.get("plotly_chart")}
    assert any("cal_reliability" in i for i in charts) and any("cal_coverage" in i for i in charts)
    reliability = next(c for c in at.get("plotly_chart") if "cal_reliability" in c.proto.id)
    traces = json.loads(reliability.proto.spec)["data"]
    assert [t["name"] for t in traces][:2] == ["accuracy, before", "accuracy, after scaling"]

    at.slider(key="cal_target").set_value(0.6)
    at = page.run()
    stored = atomic.read_json(run.path / calibration.CALIBRATION_FILE)
    assert stored["target_accuracy"] == pytest.approx(0.6)
    assert stored["threshold"] == calibration.threshold_for(stored["curve"], 0.6)
    assert "Reject threshold" in texts(at) or "No share" in texts(at)


def _set_unfamiliar_threshold(run, value: float) -> None:
    meta_path = run.path / unfamiliar.UNFAMILIAR_FILE
    meta = atomic.read_json(meta_path)
    meta["thresholds"][meta["method"]] = value
    atomic.write_json(meta_path, meta)


def test_classify_uses_the_calibration_and_warns_about_unfamiliar_images(trained, isolated_dirs, monkeypatch):
    run = trained[2]
    page = open_trained_page(
        trained, monkeypatch, "pages/classify.py"
    )  # the model is loaded (and cached) first
    data = calibration.calibrate_run(
        run.run_id, target_accuracy=0.6
    )  # then calibrated: the page must pick that up
    blobs = [
        ((trained[0] / "data" / trained[1] / c / f"{c}_000.png").read_bytes()) for c in ("circle", "square")
    ]
    page.at.file_uploader(key="clf_files").set_value(
        [(f"{i}.png", b, "image/png") for i, b in enumerate(blobs)]
    )
    at = page.run()
    assert f"Calibrated probabilities (temperature {data['temperature']:.3f})" in texts(at)
    if data["threshold"] is not None:  # the slider starts at the stored reject threshold (rounded up)
        assert at.slider(key="clf_threshold").value >= data["threshold"]["threshold"] - 1e-9
    lm = loading.load_run_model(run)
    x = np.stack([prediction.prepare_for(lm, b, "x")[0] for b in blobs])
    df = at.dataframe[0].value
    np.testing.assert_allclose(
        df[run.class_names].to_numpy(float), prediction.probabilities(lm, x), atol=1e-5
    )
    assert "unfamiliar" in df.columns

    _set_unfamiliar_threshold(run, -1.0)  # every image is stranger than this: each card must warn
    at = page.run()
    assert sum("This looks unlike the training data" in w.value for w in at.warning) == 2
    assert at.dataframe[0].value["unfamiliar"].all()
    _set_unfamiliar_threshold(run, 3.0)  # above any cosine distance: no card warns
    at = page.run()
    assert not any("This looks unlike the training data" in w.value for w in at.warning)
