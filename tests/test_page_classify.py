"""Classify page through AppTest: a real tiny run, real uploads, probabilities checked against model.predict."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from core import figures
from core.data import images
from core.models import loading
from core.training import runs, trainer
from tests import helpers
from tests.apptest_support import open_trained_page

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real run for the whole module (training is the slow part), in its own data and runs folders."""
    return helpers.module_run(tmp_path_factory, "classify")


@pytest.fixture
def app(trained, isolated_dirs, monkeypatch):
    return open_trained_page(trained, monkeypatch, "pages/classify.py")


def _png(trained, cls: str, i: int = 0) -> bytes:
    root, name, _ = trained
    return (root / "data" / name / cls / f"{cls}_{i:03d}.png").read_bytes()


def _reference(run, blobs: list[bytes]) -> np.ndarray:
    """What the model says about the same prepared input, through keras' own predict."""
    lm = loading.load_run_model(run)
    h, w, c = lm.input_shape
    x = np.stack([images.prepare(b, (h, w), c)[0] for b in blobs])
    return lm.model.predict(x, verbose=0)


def _chart_probs(at: AppTest, i: int) -> dict[str, float]:
    spec = json.loads(at.get("plotly_chart")[i].proto.spec)
    bar = spec["data"][0]
    return dict(zip(bar["y"], bar["x"], strict=True))


def test_uploaded_pngs_show_the_probabilities_model_predict_gives(app, trained):
    run = trained[2]
    blobs = [_png(trained, "circle"), _png(trained, "stripes", 1)]
    app.at.file_uploader(key="clf_files").set_value(
        [("c.png", blobs[0], "image/png"), ("s.png", blobs[1], "image/png")]
    )
    at = app.run()
    ref = _reference(run, blobs)
    df = at.dataframe[0].value
    assert list(df["file"]) == ["c.png", "s.png"]
    got = df[run.class_names].to_numpy(dtype=float)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    for i in range(2):  # the bar chart of each card carries the same numbers
        chart = _chart_probs(at, i)
        np.testing.assert_allclose([chart[c] for c in run.class_names], ref[i], atol=1e-4)
    assert len(at.image) == 2 and at.image[0].captions[0].startswith("c.png")
    assert at.download_button(key="clf_csv")


def test_threshold_turns_a_weak_answer_into_unknown(app, trained):
    run = trained[2]
    app.at.file_uploader(key="clf_files").set_value(("c.png", _png(trained, "circle"), "image/png"))
    app.at.slider(key="clf_threshold").set_value(0.0)
    at = app.run()
    top = run.class_names[int(np.argmax(_reference(run, [_png(trained, "circle")])[0]))]
    assert any(m.value.startswith(f"#### {top} · ") and m.value.endswith("%") for m in at.markdown)
    at.slider(key="clf_threshold").set_value(1.0)
    at = app.run()
    assert any(m.value.startswith("#### unknown") for m in at.markdown)
    assert not at.dataframe  # one image: no table


def test_hostile_uploads_show_one_line_errors_and_the_good_image_still_classifies(app, trained):
    good = _png(trained, "square")
    app.at.file_uploader(key="clf_files").set_value([
        ("notes.png", b"just some text, renamed", "image/png"),
        ("empty.png", b"", "image/png"),
        ("cut.png", good[: len(good) // 2], "image/png"),
        ("good.png", good, "image/png"),
    ])  # fmt: skip
    at = app.run()
    errors = [e.value for e in at.error]
    assert len(errors) == 3 and all("\n" not in e for e in errors)
    assert any("notes.png" in e and "not an image" in e for e in errors)
    assert any("empty.png" in e and "empty" in e for e in errors)
    assert any("cut.png" in e and "truncated or corrupt" in e for e in errors)
    df = at.dataframe[0].value
    good_row = df[df["file"] == "good.png"].iloc[0]
    np.testing.assert_allclose(good_row[trained[2].class_names].to_numpy(float), _reference(trained[2], [good])[0],
                               atol=1e-4)  # fmt: skip
    assert len(at.image) == 1


def test_an_uploaded_keras_model_classifies_like_the_run(app, trained):
    run = trained[2]
    app.at.radio(key="clf_model_source").set_value("Upload a .keras model")
    at = app.run()
    assert at.info  # asks for a file
    at.file_uploader(key="clf_model_file").set_value(
        ("mine.keras", run.model_path.read_bytes(), "application/zip")
    )
    at = app.run()
    assert not at.text_input  # our .keras carries its class names
    blob = _png(trained, "stripes")
    at.file_uploader(key="clf_files").set_value(("s.png", blob, "image/png"))
    at = app.run()
    chart = _chart_probs(at, 0)
    np.testing.assert_allclose([chart[c] for c in run.class_names], _reference(run, [blob])[0], atol=1e-4)


def test_a_foreign_keras_model_gets_typed_class_names(app, trained, tmp_path):
    lm = loading.load_run_model(trained[2])
    plain = tmp_path / "plain.keras"
    lm.model.save(plain)  # no convnet_studio.json inside
    app.at.radio(key="clf_model_source").set_value("Upload a .keras model")
    app.run()
    app.at.file_uploader(key="clf_model_file").set_value(
        ("plain.keras", plain.read_bytes(), "application/zip")
    )
    app.run().file_uploader(key="clf_files").set_value(("c.png", _png(trained, "circle"), "image/png"))
    at = app.run()
    assert at.text_input[0].value == "class 0, class 1, class 2"
    at.text_input[0].set_value("ring, box, bars")
    at = app.run()
    assert set(_chart_probs(at, 0)) == {"ring", "box", "bars"}
    at.text_input[0].set_value("ring, box")
    at = app.run()
    assert "3 outputs but 2 class names" in at.error[0].value


def test_a_keras_model_with_a_lambda_layer_is_refused(app, tmp_path):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    path = tmp_path / "lambda.keras"
    model.save(path)
    app.at.radio(key="clf_model_source").set_value("Upload a .keras model")
    app.run()
    app.at.file_uploader(key="clf_model_file").set_value(
        ("lambda.keras", path.read_bytes(), "application/zip")
    )
    at = app.run()
    assert len(at.error) == 1 and "Lambda" in at.error[0].value
    assert [w.key for w in at.file_uploader] == ["clf_model_file"]  # nothing to classify with


def test_a_random_dataset_sample_shows_its_true_class(app, trained):
    app.at.segmented_control(key="clf_source").set_value("Dataset sample")
    at = app.run()
    caption = next(c.value for c in at.caption if c.value.startswith("From **"))
    assert any(f"true class **{c}**" in caption for c in trained[2].class_names)
    assert len(at.get("plotly_chart")) == 1
    chart = at.get("plotly_chart")[0].proto  # the bar chart hides plotly's toolbar, so nothing is covered
    assert figures.toolbar_problems(json.loads(chart.spec), json.loads(chart.config)) == []
    at.button(key="clf_sample_button").click()
    at = app.run()
    assert len(at.get("plotly_chart")) == 1


def test_a_camera_photo_is_classified_and_grayscale_models_offer_a_canvas(app, trained):
    at = app.at
    assert at.segmented_control(key="clf_source").options == ["Upload", "Camera", "Dataset sample", "Draw"]
    at.segmented_control(key="clf_source").set_value("Draw")
    at = app.run()
    assert [e.key for e in at.main.children.values() if e.key == "clf_canvas"] == ["clf_canvas"]
    at.segmented_control(key="clf_source").set_value("Camera")
    at = app.run()
    buf = io.BytesIO()
    Image.open(io.BytesIO(_png(trained, "square"))).convert("RGB").resize((64, 64)).save(buf, "JPEG")
    at.camera_input(key="clf_camera").set_value(("photo.jpg", buf.getvalue(), "image/jpeg"))
    at = app.run()
    assert len(at.get("plotly_chart")) == 1 and at.image[0].captions[0].startswith("camera photo")


def test_without_a_trained_run_the_page_says_what_to_do():
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.session_state["active_dataset"] = "digits"  # small and offline
    at.run()
    at.switch_page("pages/classify.py").run()
    assert not at.exception
    assert "needs a trained model" in at.info[0].value


def test_another_active_dataset_warns_that_samples_come_from_the_runs(app, trained):
    _, name, _ = trained
    app.at.session_state["active_dataset"] = "digits"
    app.at.segmented_control(key="clf_source").set_value("Dataset sample")
    at = app.run()
    assert [w.value for w in at.warning if "unlike the training data" not in w.value] == [
        f"The active run was trained on {name}; the active dataset is digits — "
        f"dataset samples and class names come from {name}."
    ]
    assert any(c.value.startswith(f"From **{name}**") for c in at.caption)  # and they do
    at.session_state["active_dataset"] = name
    assert not [w for w in app.run().warning if "unlike the training data" not in w.value]


def test_a_run_still_training_says_which_epochs_checkpoint_it_uses(app, trained):
    run = trained[2]
    saved = (run.path / "status.json").read_bytes()
    me = os.getpid()  # a live process, so the liveness check keeps the run "running"
    runs.update_status(run.path, state="running", pid=me, pid_start=trainer.process_start_time(me))
    try:
        at = app.run()
    finally:
        (run.path / "status.json").write_bytes(saved)
    (info,) = [i.value for i in at.info if "still training" in i.value]
    assert info.startswith(
        f"Run {run.run_id} is still training: predictions use the checkpoint saved after epoch 1 of 1"
    )


def test_the_canvas_leaves_room_for_its_toolbar_under_the_source_buttons(app):
    """The canvas toolbar floats above the canvas; without a spacer it covered the image-source buttons."""
    app.at.segmented_control(key="clf_source").set_value("Draw")
    at = app.run()
    children = list(at.main.children.values())
    keys = [getattr(e, "key", None) for e in children]
    i = keys.index("clf_canvas")
    assert keys[i - 2] == "clf_source"
    # Imported only now: importing it outside a running app leaves it without the canvas (components v2).
    from pages import _image_input

    spacer = children[i - 1]  # what the toolbar floats over now: empty space, not the buttons
    assert spacer.type == "space" and spacer.value == _image_input.CANVAS_TOOLBAR_ROOM
    # about 33 px of toolbar above the canvas fit in the spacer plus Streamlit's two 16 px element gaps
    assert spacer.value + 16 >= 33 - 16 + 8
