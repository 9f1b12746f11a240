"""The Evaluate page's embedding projector in AppTest, on a real tiny run: compute, switch method and colour,
open a point with its Grad-CAM and probabilities."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from core import figures
from core.analysis import projector
from core.analysis.projector_charts import picked_sample
from tests import helpers
from tests.apptest_support import open_trained_page, texts


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return helpers.module_run(tmp_path_factory, "projector-page")


def _length(values) -> int:
    """Plotly sends numpy arrays as typed arrays ({"dtype", "bdata"}), lists as lists."""
    if isinstance(values, dict):
        return len(np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"])))
    return len(values)


def _projector_spec(at) -> dict:
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        legend = spec["layout"].get("legend", {}).get("title", {}).get("text")
        if legend in ("true label", "prediction", "correctness"):  # the Evaluate PCA's legend says "class"
            return spec
    raise AssertionError("no projector chart")


def test_compute_pick_method_and_colour_then_open_a_point(trained, isolated_dirs, monkeypatch):
    run = trained[2]
    page = open_trained_page(trained, monkeypatch, "pages/evaluate.py")
    at = page.at
    assert "Embedding projector" in texts(at) and "Not computed yet" in texts(at)
    at.button(key="proj_go").click()
    at = page.run()
    spec = _projector_spec(at)
    points = sum(_length(t["x"]) for t in spec["data"] if t["type"] == "scattergl")
    n = projector.cached_projection(run, "pca", 2).coords.shape[0]
    assert at.selectbox(key="proj_points").disabled  # fewer than 2,000 images: one choice, all of them
    assert points == n and {t["name"] for t in spec["data"]} <= set(run.class_names)
    assert not figures.toolbar_problems(spec)

    at.segmented_control(key="proj_method").set_value("tsne")
    at.selectbox(key="proj_colour").set_value("correct")
    at = page.run()
    at.button(key="proj_go").click()
    at = page.run()
    spec = _projector_spec(at)
    assert {t["name"] for t in spec["data"]} <= {"correct", "wrong"}
    assert projector.projection_path(run, "tsne", 2, n).is_file()

    at.toggle(key="proj_thumbs").set_value(True)
    at.segmented_control(key="proj_dims").set_value(2)
    at = page.run()
    spec = _projector_spec(at)
    assert len(spec["layout"]["images"]) == n and spec["layout"]["images"][0]["source"].startswith(
        "data:image/png"
    )

    at.toggle(key="proj_hover").set_value(True)  # Vega's tooltip draws the field named "image" as the image
    at = page.run()
    (chart,) = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    assert {"field": "image", "type": "nominal"} in spec["encoding"]["tooltip"] and spec["params"][0][
        "name"
    ] == "pick"
    with pytest.raises(AssertionError, match="no projector chart"):
        _projector_spec(at)  # the Vega chart replaces the plotly one
    assert picked_sample({"selection": {"pick": [{"sample": 3}]}}) == 3  # a click on the Vega chart
    at.toggle(key="proj_hover").set_value(False)

    at.number_input(key="proj_open").set_value(1)  # what a click on point #1 does, through the same state
    at = page.run()
    captions = [c for img in at.image for c in img.captions]
    assert any(c.startswith("#1 · true ") for c in captions)
    assert any(c.startswith("Grad-CAM for ") for c in captions) or "no evidence" in texts(at).lower()

    at.segmented_control(key="proj_method").set_value("pca")
    at.segmented_control(key="proj_dims").set_value(3)
    at = page.run()
    at.button(key="proj_go").click()
    at = page.run()
    assert any(t["type"] == "scatter3d" for t in _projector_spec(at)["data"])


def test_a_click_is_read_from_the_selection_state_in_each_shape_the_frontend_sends():
    assert picked_sample({"selection": {"points": [{"customdata": 7}]}}) == 7
    assert picked_sample({"selection": {"points": [{"customdata": [8]}]}}) == 8
    assert picked_sample({"selection": {"points": [{"customdata": {"0": 9}}]}}) == 9
    assert picked_sample({"selection": {"points": []}}) is None
    assert picked_sample(None) is None
