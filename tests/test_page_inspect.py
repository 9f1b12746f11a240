"""Inspect page through AppTest: one feature-map grid per conv layer, the kernel grid, Grad-CAM, dense activations."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import figures
from core.analysis import inspection
from core.data import images
from core.models import loading
from core.training import runs, trainer
from tests import helpers
from tests.apptest_support import open_trained_page

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return helpers.module_run(tmp_path_factory, "inspect")


@pytest.fixture
def app(trained, isolated_dirs, monkeypatch):
    return open_trained_page(trained, monkeypatch, "pages/inspect.py")


def _png(trained, cls: str) -> bytes:
    root, name, _ = trained
    return (root / "data" / name / cls / f"{cls}_000.png").read_bytes()


def _captions(at: AppTest) -> list[str]:
    return [c for img in at.image for c in img.captions]


def test_one_grid_per_conv_layer_plus_kernels_and_grad_cam(app, trained):
    run = trained[2]
    model = loading.load_run_model(run).model
    convs = [layer.name for layer in inspection.conv_layers(model)]
    assert convs == ["conv2d_0", "conv2d_1"]
    app.at.file_uploader(key="ins_files").set_value(("c.png", _png(trained, "circle"), "image/png"))
    at = app.run()
    caps = _captions(at)
    assert [c.split(":")[0] for c in caps if c.startswith("conv")] == convs
    filters = [layer.filters for layer in inspection.conv_layers(model)]
    assert f"conv2d_0: {filters[0]} maps of 16×16" in caps and f"conv2d_1: {filters[1]} maps of 8×8" in caps
    assert sum(c.startswith("each kernel") for c in caps) == 1
    cam = [c for c in caps if c.startswith("Grad-CAM for ")]
    h, w, c = run.input_shape
    x = images.prepare(_png(trained, "circle"), (h, w), c)[0][None]
    predicted = run.class_names[int(np.argmax(model.predict(x, verbose=0)[0]))]
    assert cam == [f"Grad-CAM for {predicted}: where the evidence is"]
    assert any(m.value.startswith(f"#### {predicted} · ") for m in at.markdown)

    at.checkbox(key="ins_pooling").check()
    at = app.run()
    layers = [c.split(":")[0] for c in _captions(at) if ": " in c and " maps of " in c]
    assert layers == ["conv2d_0", "pool_0", "conv2d_1", "pool_1"]


def test_grad_cam_for_a_chosen_class_and_dense_activations(app, trained):
    names = trained[2].class_names
    app.at.file_uploader(key="ins_files").set_value(("s.png", _png(trained, "square"), "image/png"))
    at = app.run()
    at.selectbox(key="ins_cam_class").set_value(2)  # -1 is "the predicted class"
    at.toggle(key="ins_dense").set_value(True)
    at = app.run()
    assert f"Grad-CAM for {names[2]}: where the evidence is" in _captions(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert len(spec["data"][0]["x"]) == 128  # the hidden dense layer first: one bar per unit
    at.selectbox(key="ins_dense_layer").set_value("output")
    at = app.run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["data"][0]["x"] == names  # the head: one bar per class
    chart = at.get("plotly_chart")[0].proto
    assert figures.toolbar_problems(json.loads(chart.spec), json.loads(chart.config)) == []


def test_a_broken_image_is_one_error_line(app):
    app.at.file_uploader(key="ins_files").set_value(("x.png", b"GIF89a but not really", "image/png"))
    at = app.run()
    assert len(at.error) == 1 and "x.png" in at.error[0].value
    assert not at.image


def test_a_dataset_sample_is_inspected(app, trained):
    app.at.segmented_control(key="ins_source").set_value("Dataset sample")
    at = app.run()
    caps = _captions(at)
    assert any("(true class: " in c for c in caps)
    assert sum(" maps of " in c for c in caps) == 2


def test_an_uploaded_keras_model_is_inspected(app, trained):
    """Bring your own model: the run's .keras file uploaded by hand gives the same grids and class names."""
    run = trained[2]
    source = app.at.radio(key="ins_model_source")
    source.set_value(source.options[1])
    app.at.run()
    app.at.file_uploader(key="ins_model_file").set_value(
        ("mine.keras", run.model_path.read_bytes(), "application/zip")
    )
    app.at.run()
    app.at.file_uploader(key="ins_files").set_value(("c.png", _png(trained, "circle"), "image/png"))
    at = app.at.run()
    assert not at.exception and not at.error
    assert any("mine.keras" in c.value for c in at.caption)
    caps = _captions(at)
    assert sum(" maps of " in c for c in caps) == 2 and any(c.startswith("Grad-CAM for ") for c in caps)


def test_another_active_dataset_warns_and_a_run_still_training_names_its_checkpoint(app, trained):
    _, name, run = trained
    app.at.session_state["active_dataset"] = "digits"
    saved = (run.path / "status.json").read_bytes()
    me = os.getpid()  # a live process, so the liveness check keeps the run "running"
    runs.update_status(run.path, state="running", pid=me, pid_start=trainer.process_start_time(me))
    try:
        at = app.run()
    finally:
        (run.path / "status.json").write_bytes(saved)
    assert [w.value for w in at.warning] == [
        f"The active run was trained on {name}; the active dataset is digits — "
        f"dataset samples and class names come from {name}."
    ]
    assert any(
        i.value.startswith(f"Run {run.run_id} is still training: maps, kernels and Grad-CAM use the checkpoint "
                           "saved after epoch 1 of 1")
        for i in at.info
    )  # fmt: skip


def test_a_grad_cam_without_evidence_says_so_instead_of_a_flat_overlay(app, trained, tmp_path):
    """A model whose class score ignores its convolution: Grad-CAM has nothing to point at."""
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", padding="same", name="conv")(inputs)
    out = keras.layers.Dense(3, activation="softmax", kernel_initializer="zeros", name="output")(
        keras.layers.GlobalAveragePooling2D()(x)
    )
    path = tmp_path / "blind.keras"
    keras.Model(inputs, out).save(path)
    source = app.at.radio(key="ins_model_source")
    source.set_value(source.options[1])
    app.at.run()
    app.at.file_uploader(key="ins_model_file").set_value(
        ("blind.keras", path.read_bytes(), "application/zip")
    )
    app.at.run()
    app.at.file_uploader(key="ins_files").set_value(("c.png", _png(trained, "circle"), "image/png"))
    at = app.at.run()
    assert not at.exception and not at.error
    assert not [c for c in _captions(at) if c.startswith("Grad-CAM for ")]
    assert [i.value for i in at.info if "Grad-CAM" in i.value] == [
        f"No evidence: {inspection.NO_EVIDENCE.split(': ', 1)[1]} (Grad-CAM for class 0)."
    ]
    assert sum(" maps of " in c for c in _captions(at)) == 1  # the rest of the page is still there


def test_the_network_at_a_glance_shows_every_layer_and_opens_one(app, trained):
    """The overview: one card per layer in model order, the probabilities last; Open shows that layer's grid."""
    run = trained[2]
    model = loading.load_run_model(run).model
    app.at.file_uploader(key="ins_files").set_value(("c.png", _png(trained, "circle"), "image/png"))
    at = app.run()
    assert not any(m.value.startswith("**1. ") for m in at.markdown)  # off until asked for
    at.toggle(key="ins_overview").set_value(True)
    at = app.run()
    cards = [m.value for m in at.markdown if m.value.startswith("**") and ". " in m.value[:6]]
    assert cards == [f"**{i + 1}. {layer.name}**" for i, layer in enumerate(model.layers)]
    assert "**Class probabilities**" in [m.value for m in at.markdown]
    assert len(at.get("progress")) == len(run.class_names)

    at.button(key="ins_ov_open_2").click()  # the first convolution
    at = app.run()
    conv = model.layers[2]
    filters = conv.output.shape[-1]
    assert at.selectbox(key="ins_ov_layer").value == conv.name
    assert any(c.startswith(f"{conv.name}: all {filters} channels at 16×16") for c in _captions(at))

    at.selectbox(key="ins_ov_layer").set_value("dense")  # a vector layer: a unit grid
    at.checkbox(key="ins_ov_hide").check()
    at = app.run()
    assert any(c.startswith("dense: 128 units, 32 to a row") for c in _captions(at))
