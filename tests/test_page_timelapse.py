"""AppTest of the time-lapse on Inspect (slider, image choice, Play) and the training dynamics on Train."""

from __future__ import annotations

import json

import pytest

from core import figures
from core.data import datasets
from core.training import pinned
from pages import _inspect_timelapse, _train_form
from tests import helpers
from tests.apptest_support import open_trained_page


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("timelapse-pages")
    with helpers.app_dirs(root):
        name = helpers.make_dataset()
        run = helpers.train_tiny_run(name, epochs=2)
    return root, name, run


def _shown(at) -> str:
    """The line naming the epoch on screen and its prediction."""
    lines = [m.value for m in at.markdown if " · predicted **" in m.value]
    assert len(lines) == 1, lines
    return lines[0]


def _map_captions(at) -> list[str]:
    return [c for img in at.image for c in img.captions if " maps of " in c]


def test_the_epoch_slider_and_play_step_through_the_recorded_epochs(trained, monkeypatch):
    page = open_trained_page(trained, monkeypatch, "pages/inspect.py")
    show = page.at.toggle(key="tl_show")
    assert show.label == _inspect_timelapse.TITLE and not show.value and not page.at.image
    show.set_value(True)
    at = page.run()
    slider = at.select_slider(key="tl_epoch")
    assert slider.options == ["before training", "epoch 1", "epoch 2"] and slider.value == 2
    assert _shown(at).startswith("**Epoch 2** · predicted **")
    assert _map_captions(at) == [
        "conv2d_0 · epoch 2: 16 maps of 16×16",
        "conv2d_1 · epoch 2: first 16 of 32 maps of 8×8",
    ]
    assert any(c.startswith("Grad-CAM for ") or "no region" in c for img in at.image for c in img.captions)
    probs = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert probs["y"] == trained[2].class_names

    slider.set_value(0)
    at = page.run()
    assert _shown(at).startswith("**Before training** · predicted **")
    assert _map_captions(at)[0] == "conv2d_0 · before training: 16 maps of 16×16"
    at.selectbox(key="tl_image").set_value(2)
    at = page.run()
    assert _shown(at).endswith("true class stripes")

    at.button(key="tl_play").click()
    at = page.run()
    run_id = trained[2].run_id
    assert at.session_state[_inspect_timelapse.PLAYING] == run_id
    assert at.select_slider(key="tl_epoch").value == 0  # the first frame shows before the first tick
    seen = []
    for _ in range(3):  # AppTest has no timer: each run stands for one tick
        at = page.run()
        seen.append(at.select_slider(key="tl_epoch").value)
    assert seen == [1, 2, 2] and at.session_state[_inspect_timelapse.PLAYING] is None  # stopped at the last


def test_an_uploaded_model_has_no_time_lapse(trained, monkeypatch):
    page = open_trained_page(trained, monkeypatch, "pages/inspect.py")
    source = page.at.radio(key="ins_model_source")
    source.set_value(source.options[1])
    page.at.run()
    assert not page.at.exception and not [t for t in page.at.toggle if t.key == "tl_show"]


def test_the_train_page_draws_the_dynamics_as_small_multiples(trained, monkeypatch):
    page = open_trained_page(trained, monkeypatch, "pages/train.py")
    at = page.at
    assert "Training dynamics of the active run" in [e.label for e in at.expander]
    charts = [
        c for c in at.get("plotly_chart") if "dynamics" in json.loads(c.proto.spec)["layout"].get("meta", "")
    ]
    assert len(charts) == 1
    spec = json.loads(charts[0].proto.spec)
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert titles == ["weight norm", "update / weight per epoch", "dead ReLU units (share)"]
    lines = {(t["xaxis"], t["name"]) for t in spec["data"]}
    assert {name for axis, name in lines if axis == "x"} == {"conv2d_0", "conv2d_1", "dense", "output"}
    assert {name for axis, name in lines if axis == "x3"} == {"conv2d_0", "conv2d_1", "dense"}
    assert all(t["x"] == [1, 2] for t in spec["data"])
    assert figures.toolbar_problems(spec, json.loads(charts[0].proto.config)) == []


def test_the_train_form_pins_validation_images(trained, monkeypatch):
    _, name, run = trained
    page = open_trained_page(trained, monkeypatch, "pages/train.py")
    pins = page.at.multiselect(key=f"pinned_{name}_0.2_213")
    val = pinned.validation_files(datasets.get_dataset(name), 0.2, 213)
    assert pins.options == val and pins.value == []
    pins.set_value([val[0], val[-1]])
    at = page.run()
    assert not at.error and at.multiselect(key=f"pinned_{name}_0.2_213").value == [val[0], val[-1]]
    assert at.session_state[_train_form.KEEP_PREFIX + "pinned"] == [val[0], val[-1]]  # kept across pages
