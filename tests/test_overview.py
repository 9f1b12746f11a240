"""core.analysis.overview: one entry per layer in order, shapes from the model itself, tiles that add up."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from core.analysis import inspection as ins
from core.analysis import overview as ov
from core.data import images
from core.errors import UserError

PAD = ins.GRID_PAD


def _cnn(head: str = "softmax", k: int = 3) -> keras.Model:
    inputs = keras.Input((20, 20, 3))
    x = keras.layers.RandomFlip("horizontal", name="flip")(inputs)
    x = keras.layers.Rescaling(1 / 255, name="scale")(x)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="c1")(x)  # 18x18x6
    x = keras.layers.MaxPooling2D(2, name="p1")(x)  # 9x9x6
    x = keras.layers.Conv2D(3, 3, activation="relu", name="c2")(x)  # 7x7x3: fewer channels than `top`
    x = keras.layers.Flatten(name="flat")(x)  # 147
    x = keras.layers.Dropout(0.5, name="drop")(x)
    x = keras.layers.Dense(40, activation="relu", name="hidden")(x)
    if head == "sigmoid":
        return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="out")(x))
    return keras.Model(inputs, keras.layers.Dense(k, activation=None if head == "logits" else "softmax",
                                                  name="out")(x))  # fmt: skip


def _image(seed: int = 0, shape=(20, 20, 3)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


def _fitted_side(side: int, cell: int) -> int:
    s = round(side / cell)
    return side // s if s > 1 else side * max(1, round(cell / side))


def test_one_entry_per_layer_in_order_with_the_model_s_own_shapes_and_outputs():
    keras.utils.set_random_seed(1)
    model = _cnn()
    x = _image()
    glance = ov.NetworkOverview(model)(x, "softmax")
    assert [g.name for g in glance.layers] == [layer.name for layer in model.layers]
    assert [g.index for g in glance.layers] == list(range(len(model.layers)))
    assert [g.output_shape for g in glance.layers] == [
        tuple(layer.output.shape[1:]) for layer in model.layers
    ]
    assert [g.kind for g in glance.layers][:3] == ["InputLayer", "RandomFlip", "Rescaling"]
    assert glance.layer("flip").note.startswith("off at inference") and glance.layer("drop").note
    assert glance.layer("c1").note == ""
    # the activations are the layers' real outputs: checked against an independent side model
    want = ins.layer_activations(model, x, ["c1", "hidden", "out"])
    for name, value in want.items():
        np.testing.assert_allclose(glance.layer(name).activations, value, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(glance.layers[0].activations, x)  # the input card is the image itself
    probs = np.asarray(model(x[None], training=False))[0]
    np.testing.assert_allclose(glance.probabilities, probs, rtol=1e-5)
    assert glance.probabilities.sum() == pytest.approx(1.0)
    with pytest.raises(UserError, match="no layer named"):
        glance.layer("nope")


@pytest.mark.parametrize("top,cell", [(4, 40), (2, 12), (1, 64)])
def test_thumbnails_are_the_most_active_channels_and_their_sizes_add_up(top, cell):
    model = _cnn()
    glance = ov.NetworkOverview(model)(_image(2), "softmax", top=top, cell=cell)
    for g in glance.layers:
        act = g.activations
        if act.ndim == 3:
            h, w, c = act.shape
            n = min(top, c)
            means = act.mean(axis=(0, 1))
            assert len(g.top_channels) == n
            np.testing.assert_allclose(
                means[list(g.top_channels)], sorted(means, reverse=True)[:n], rtol=1e-5
            )
            th, tw = _fitted_side(h, cell), _fitted_side(w, cell)
            assert g.thumbnail is not None and g.thumbnail.dtype == np.uint8
            assert g.thumbnail.shape == (th, n * tw + (n - 1) * PAD, 3)
        else:
            units = min(act.size, ov.CARD_UNITS)
            cols = min(ov.UNIT_COLS, units)
            rows = -(-units // cols)
            assert g.top_channels == ()
            assert g.thumbnail is not None and g.thumbnail.shape == (
                rows * 6 + rows - 1,
                cols * 6 + cols - 1,
                3,
            )


def test_a_thumbnail_tile_is_its_channel_normalised_and_coloured():
    model = _cnn()
    glance = ov.NetworkOverview(model)(_image(3), "softmax", top=2, cell=9)
    g = glance.layer("p1")  # 9x9 maps at cell 9: no resizing, so tiles are exactly tile_maps_rgb's
    expected = ins.tile_maps_rgb(g.activations[..., list(g.top_channels)], "viridis", cols=2, pad=PAD)
    np.testing.assert_array_equal(g.thumbnail, expected)


def test_probabilities_of_a_sigmoid_and_a_logits_head_sum_to_one():
    keras.utils.set_random_seed(4)
    x = _image(4)
    sig = _cnn("sigmoid")
    p = float(np.asarray(sig(x[None], training=False))[0, 0])
    np.testing.assert_allclose(ov.NetworkOverview(sig)(x, "sigmoid").probabilities, [1 - p, p], rtol=1e-6)
    logits = _cnn("logits", k=5)
    probs = ov.NetworkOverview(logits)(x, "logits").probabilities
    assert probs.shape == (5,) and probs.sum() == pytest.approx(1.0) and (probs > 0).all()


def test_unit_grid_shape_adds_up_and_the_most_active_unit_is_brightest():
    values = np.arange(70, dtype=np.float32)
    grid = ov.unit_grid(values, "gray", cols=32, cell=5, pad=1)
    assert grid.shape == (3 * 5 + 2, 32 * 5 + 31, 3)
    assert tuple(grid[0, 0]) == (0, 0, 0)  # the smallest unit is the colormap's first colour
    last = grid[2 * 6 : 2 * 6 + 5, 5 * 6 : 5 * 6 + 5]  # unit 69: row 2, column 5
    assert (last == 255).all()
    assert tuple(grid[-1, -1]) == ins.SEPARATOR_RGB  # past the last unit
    flat = ov.unit_grid(np.full(4, 3.0), "gray", cell=2)
    assert flat.shape == (2, 4 * 2 + 3, 3) and np.all(flat[:, :2] == 0)  # constant: no contrast, never NaN


def test_full_grid_is_the_feature_map_grid_or_a_unit_grid():
    model = _cnn()
    glance = ov.NetworkOverview(model)(_image(5), "softmax")
    c2 = glance.layer("c2")
    f = round(56 / 7)
    expected = ins.tile_maps_rgb(images.upscale(c2.activations, f), "magma", cols=8)
    np.testing.assert_array_equal(ov.full_grid(c2, "magma"), expected)
    hidden = ov.full_grid(glance.layer("hidden"), "viridis")
    assert hidden.shape == (2 * 14 + 1, 32 * 14 + 31, 3)  # 40 units: two rows of 32 cells of 14 px
    assert ov.shown_units(glance.layer("flat")) == 147 and ov.shown_units(c2) == 0
    big = ov.LayerGlance(0, "big", "Conv2D", (300, 300, 2), np.ones((300, 300, 2), np.float32), (0, 1), None)
    assert ov.full_grid(big, cell=56).shape == (100, 2 * 100 + PAD, 3)  # block means of 3: 100 px, not 300


def test_nested_models_are_one_block_and_a_sequential_works():
    base_in = keras.Input((16, 16, 3))
    b = keras.layers.Conv2D(4, 3, padding="same", name="b1")(base_in)
    b = keras.layers.Conv2D(5, 3, strides=2, padding="same", name="b2")(b)
    base = keras.Model(base_in, b, name="base")
    aug = keras.Sequential([keras.layers.RandomFlip("horizontal")], name="aug")
    inputs = keras.Input((16, 16, 3))
    x = base(aug(inputs), training=False)
    model = keras.Model(
        inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    )
    glance = ov.NetworkOverview(model)(_image(6, (16, 16, 3)), "softmax")
    assert [g.name for g in glance.layers] == [layer.name for layer in model.layers]
    block = glance.layer("base")
    assert block.output_shape == (8, 8, 5) and block.kind == "Functional · 3 layers"
    assert "nested model of 3 layers" in block.note and block.thumbnail is not None
    assert glance.layer("aug").kind == "Sequential · 1 layer"


def test_only_layers_that_are_identity_at_inference_say_so():
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.RandomRotation(0.2, name="rot")(inputs)
    x = keras.layers.Rescaling(1 / 255, name="scale")(x)  # acts at inference
    x = keras.layers.GaussianNoise(0.1, name="noise")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x)))
    glance = ov.NetworkOverview(model)(_image(8, (12, 12, 1)), "softmax")
    assert [g.off_at_inference for g in glance.layers[:4]] == [False, True, False, True]
    rot, noise = glance.layer("rot"), glance.layer("noise")
    np.testing.assert_array_equal(rot.activations, glance.layers[0].activations)
    assert rot.thumbnail is glance.layers[0].thumbnail  # the same picture is not drawn twice
    assert noise.thumbnail is glance.layer("scale").thumbnail
    assert glance.layer("scale").thumbnail is not rot.thumbnail

    seq = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Conv2D(2, 3, name="sc"),
                            keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])  # fmt: skip
    g = ov.NetworkOverview(seq)(np.zeros((12, 12), np.float32), "softmax")
    assert [e.name for e in g.layers] == [layer.name for layer in seq.layers]
    assert g.layers[0].output_shape == (10, 10, 2) and g.probabilities.sum() == pytest.approx(1.0)


@pytest.mark.slow
def test_a_mobilenet_transfer_model_shows_its_base_as_one_block():
    base = keras.applications.MobileNetV2(
        input_shape=(64, 64, 3), include_top=False, weights=None, alpha=0.35
    )
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.GlobalMaxPooling2D()(base(x, training=False))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dropout(0.2)(x)))
    glance = ov.NetworkOverview(model)(_image(7, (64, 64, 3)), "logits")
    assert [g.name for g in glance.layers] == [layer.name for layer in model.layers]
    block = glance.layer(base.name)
    assert block.output_shape == (2, 2, 1280) and block.kind.startswith("Functional · ")
    assert block.thumbnail is not None and len(block.top_channels) == 4
    assert glance.probabilities.sum() == pytest.approx(1.0)


def test_bad_inputs_are_clear_errors():
    overview = ov.NetworkOverview(_cnn())
    with pytest.raises(UserError, match="takes 20×20×3"):
        overview(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="output kind"):
        overview(_image(), "probabilities")
    with pytest.raises(ValueError, match="top and cell"):
        overview(_image(), top=0)
    glance = overview(_image())
    bad = ov.LayerGlance(0, "odd", "Reshape", (2, 3, 4, 5), np.zeros((2, 3, 4, 5), np.float32), (), None)
    with pytest.raises(UserError, match="no picture"):
        ov.full_grid(bad)
    assert glance.layers[-1].thumbnail is not None
