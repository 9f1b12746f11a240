"""What a filter looks for: activation maximisation against planted filters, the run cache, and the CLI."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from core.analysis import filter_viz
from core.errors import UserError
from tests.helpers import in_run_dirs, module_run
from tests.test_cli import assert_one_line_error, cli

EDGE = np.array([[-1.0, 0.0, 1.0]] * 3, dtype=np.float32)  # dark on the left, bright on the right (Prewitt)


def _edge_model(extra_filters: int = 0) -> keras.Model:
    """Raw pixels -> Rescaling -> a ReLU conv: filter 0 a vertical-edge detector, filter 1 a horizontal one."""
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(2 + extra_filters, 3, padding="same", activation="relu", name="edges")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    kernel = np.random.default_rng(1).normal(0, 0.3, (3, 3, 1, 2 + extra_filters)).astype(np.float32)
    kernel[:, :, 0, 0], kernel[:, :, 0, 1] = EDGE, EDGE.T
    model.get_layer("edges").set_weights([kernel, np.zeros(2 + extra_filters, np.float32)])
    return model


def _mean_response(model: keras.Model, x: np.ndarray, f: int) -> float:
    feats = keras.Model(model.inputs[0], model.get_layer("edges").output)(x, training=False)
    return float(np.mean(np.asarray(feats)[..., f]))


def test_a_planted_edge_detector_gets_an_edge_that_excites_it_more_than_the_noise_start():
    model = _edge_model()
    result = filter_viz.maximise(model, "edges")
    start = filter_viz.start_images(2, (16, 16, 1))
    for f in (0, 1):
        # Measured independently of the ascent's own bookkeeping: the model on the final image vs on its start.
        assert (
            _mean_response(model, result.inputs[f : f + 1], f)
            > _mean_response(model, start[f : f + 1], f) + 0.1
        )
    assert np.all(result.final_response > result.start_response)
    vertical, horizontal = (result.images[f, ..., 0].astype(float) for f in (0, 1))
    # The pictures are stripes along the detector's edges: the vertical one changes across columns, the
    # horizontal one across rows (measured: about 58 vs 10 and 11 vs 56 levels per pixel step).
    assert np.abs(np.diff(vertical, axis=1)).mean() > 3 * np.abs(np.diff(vertical, axis=0)).mean()
    assert np.abs(np.diff(horizontal, axis=0)).mean() > 3 * np.abs(np.diff(horizontal, axis=1)).mean()
    assert result.images.dtype == np.uint8 and result.images.shape == (2, 12, 12, 1)  # border cropped


def test_grid_is_eight_per_row_and_the_filter_count_is_capped():
    model = _edge_model(extra_filters=8)  # 10 filters: one full row and two in the next
    grid = filter_viz.filter_grid(filter_viz.maximise(model, "edges", iterations=3))
    tile = 12 * (filter_viz.TILE_PX // 12)
    pad = 2
    assert grid.shape == (2 * tile + pad, 8 * tile + 7 * pad, 3) and grid.dtype == np.uint8
    with pytest.raises(UserError, match="at most 64"):
        filter_viz.maximise(model, "edges", filters=range(65))
    with pytest.raises(UserError, match="no filter 10"):
        filter_viz.maximise(model, "edges", filters=[10])
    with pytest.raises(UserError, match="no convolution layer named 'nope'; choose one of: edges"):
        filter_viz.maximise(model, "nope")


def test_a_conv_inside_a_nested_base_is_visualised_through_the_outer_preprocessing():
    base_in = keras.Input((12, 12, 3))
    b = keras.layers.Conv2D(4, 3, activation="relu", name="inner_a")(base_in)
    base = keras.Model(base_in, keras.layers.Conv2D(6, 3, name="inner_b")(b), name="base")
    inputs = keras.Input((12, 12, 3))
    x = base(keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    layers = filter_viz.filter_layers(model)
    assert [(x.name, x.filters, x.nested) for x in layers] == [
        ("base/inner_a", 4, True),
        ("base/inner_b", 6, True),
    ]
    result = filter_viz.maximise(model, "base/inner_b", iterations=10)
    assert result.images.shape[0] == 6 and np.all(result.final_response > result.start_response)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return module_run(tmp_path_factory, "filters", per_class=4)


@pytest.fixture
def run(trained, monkeypatch):
    root, _, run = trained
    in_run_dirs(monkeypatch, root)
    return run


@pytest.mark.slow
def test_the_run_cache_is_keyed_by_the_model_file(run):
    calls: list[float] = []
    grid, meta, cached = filter_viz.run_filter_grid(
        run.run_id, "conv2d_0", iterations=5, progress=calls.append
    )
    assert not cached and calls[-1] == 1.0 and meta["layer"] == "conv2d_0" and meta["iterations"] == 5
    path = filter_viz.cache_path(run, "conv2d_0")
    assert path == run.path / "filters" / "conv2d_0.png" and path.is_file()
    again, meta2, cached = filter_viz.run_filter_grid(run.run_id, "conv2d_0", iterations=5)
    assert cached and np.array_equal(again, grid) and meta2 == meta
    assert filter_viz.cached_grid(run, "conv2d_0", iterations=6) is None  # other settings, other pictures
    st = run.model_path.stat()
    os.utime(run.model_path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # the model was re-saved
    assert filter_viz.cached_grid(run, "conv2d_0", iterations=5) is None
    _, _, cached = filter_viz.run_filter_grid(run.run_id, "conv2d_0", iterations=5)
    assert not cached and filter_viz.cached_grid(run, "conv2d_0", iterations=5) is not None
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.slow
def test_cli_writes_a_png_and_refuses_an_unknown_layer_and_an_existing_out(run, tmp_path):
    out = tmp_path / "filters.png"
    done = cli("filters", "--run", run.run_id, "--layer", "conv2d_1", "--out", str(out), "--iterations", "4")
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout and "conv2d_1" in done.stdout
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert json.loads(im.text["convnet_filters"])["layer"] == "conv2d_1"
    before = out.read_bytes()
    assert_one_line_error(
        cli("filters", "--run", run.run_id, "--layer", "conv2d_1", "--out", str(out)), "already exists"
    )
    assert out.read_bytes() == before
    assert_one_line_error(
        cli("filters", "--run", run.run_id, "--layer", "dense", "--out", str(tmp_path / "x.png")),
        "no convolution layer named 'dense'",
    )
    assert not (tmp_path / "x.png").exists()
