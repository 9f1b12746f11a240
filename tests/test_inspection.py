"""core.analysis.inspection against references we can compute by hand: identity kernels, tile offsets, a detectable square."""

from __future__ import annotations

import gc
import math
import warnings
import weakref

import keras
import matplotlib
import numpy as np
import pytest

from core.analysis import inspection as ins
from core.errors import UserError

S = 32  # synthetic image side
Q = S // 2  # quadrant side
SQ = 6  # bright square side


# ---------------------------------------------------------------------------------------------- helpers


def _augmentation(x):
    """The notebooks' augmentation stack; at training=False it must be an exact pass-through."""
    x = keras.layers.RandomFlip("horizontal_and_vertical")(x)
    x = keras.layers.RandomRotation(0.2)(x)
    x = keras.layers.RandomContrast(0.2)(x)
    return keras.layers.RandomZoom(height_factor=(-0.3, -0.2))(x)


def _small_cnn(input_shape=(32, 32, 3), head="softmax", k=3) -> keras.Model:
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255)(_augmentation(inputs))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(x)  # 30x30x4
    x = keras.layers.MaxPooling2D(2, name="p1")(x)  # 15x15x4
    x = keras.layers.Conv2D(6, 3, activation="relu", name="c2")(x)  # 13x13x6
    x = keras.layers.AveragePooling2D(2, name="p2")(x)  # 6x6x6
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c3")(x)  # 4x4x8
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(5, activation="relu", name="hidden")(x)
    if head == "sigmoid":
        return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    return keras.Model(inputs, keras.layers.Dense(k, activation=None if head == "logits" else head)(x))


def _nested_model(input_shape=(24, 24, 3)) -> tuple[keras.Model, keras.Model]:
    """A Functional base inside a Functional model, plus a nested augmentation Sequential that is not a stage."""
    base_in = keras.Input(input_shape)
    b = keras.layers.Conv2D(4, 3, activation="relu", padding="same", name="base_c1")(base_in)
    b = keras.layers.MaxPooling2D()(b)
    b = keras.layers.Conv2D(7, 3, activation="relu", padding="same", name="base_c2")(b)
    base = keras.Model(base_in, b, name="base")
    aug = keras.Sequential([keras.layers.RandomFlip("horizontal")], name="aug")
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(aug(inputs))
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)), base


def _square_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class 1: a bright square somewhere inside a random corner quadrant; class 0: background noise only."""
    x = rng.uniform(0, 60, (n, S, S, 1)).astype(np.float32)
    y = rng.integers(0, 2, n)
    corner = rng.integers(0, 4, n)
    for i in np.flatnonzero(y):
        qr, qc = divmod(int(corner[i]), 2)
        r = qr * Q + rng.integers(0, Q - SQ + 1)
        c = qc * Q + rng.integers(0, Q - SQ + 1)
        x[i, r : r + SQ, c : c + SQ] = 255.0
    return x, y, corner


def _quadrant_mass(heat: np.ndarray, corner: int) -> float:
    qr, qc = divmod(int(corner), 2)
    total = float(heat.sum())
    return float(heat[qr * Q : (qr + 1) * Q, qc * Q : (qc + 1) * Q].sum()) / total if total > 0 else 0.0


def _argmax_quadrant(heat: np.ndarray) -> int:
    r, c = np.unravel_index(int(heat.argmax()), heat.shape)
    return int(r // Q) * 2 + int(c // Q)


@pytest.fixture(scope="module")
def trained():
    """Two tiny detectors of the square (softmax and sigmoid heads), trained a few epochs; ~1 s each."""
    models = {}
    for head in ("softmax", "sigmoid"):
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        x, y, _ = _square_images(320, rng)
        inputs = keras.Input((S, S, 1))
        h = keras.layers.Rescaling(1 / 255)(inputs)
        h = keras.layers.Conv2D(8, 3, activation="relu", padding="same")(h)
        h = keras.layers.MaxPooling2D()(h)
        h = keras.layers.Conv2D(16, 3, activation="relu", padding="same", name="last_conv")(h)
        h = keras.layers.Flatten()(keras.layers.MaxPooling2D()(h))
        out = (
            keras.layers.Dense(1, activation="sigmoid")
            if head == "sigmoid"
            else keras.layers.Dense(2, activation="softmax")
        )
        model = keras.Model(inputs, out(h))
        loss = "binary_crossentropy" if head == "sigmoid" else "sparse_categorical_crossentropy"
        model.compile(keras.optimizers.Adam(3e-3), loss, metrics=["accuracy"])
        model.fit(x, y, epochs=6, batch_size=32, verbose=0)
        xt, yt, ct = _square_images(60, rng)
        acc = model.evaluate(xt, yt, verbose=0)[1]
        models[head] = (model, xt, yt, ct, acc)
    return models


@pytest.fixture(scope="module")
def mobilenet_model():
    base = keras.applications.MobileNetV2(
        input_shape=(64, 64, 3), include_top=False, weights=None, alpha=0.35
    )
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(keras.layers.RandomFlip("horizontal")(inputs))
    x = base(x, training=False)
    x = keras.layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x)), base


# ---------------------------------------------------------------------------------------- feature maps


@pytest.mark.parametrize("channels", [1, 3])
def test_identity_kernel_feature_map_equals_input(channels):
    inputs = keras.Input((9, 11, channels))
    conv = keras.layers.Conv2D(channels, 3, padding="same", activation=None, name="identity")
    model = keras.Model(inputs, conv(_augmentation(inputs)))
    kernel = np.zeros((3, 3, channels, channels), np.float32)
    for c in range(channels):
        kernel[1, 1, c, c] = 1.0
    conv.set_weights([kernel, np.zeros(channels, np.float32)])

    x = np.random.default_rng(1).uniform(0, 255, (9, 11, channels)).astype(np.float32)
    ((name, maps),) = ins.FeatureMapExtractor(model)(x)
    assert name == "identity"
    # Equality also proves the augmentation layers ran with training=False.
    np.testing.assert_allclose(maps, x, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(ins.tile_maps(maps), ins.tile_maps(x))


def test_extractor_shapes_match_summary_and_are_deterministic():
    model = _small_cnn()
    extractor = ins.FeatureMapExtractor(model)
    x = np.random.default_rng(2).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    first = extractor(x)
    second = extractor(x[None])
    assert [n for n, _ in first] == ["c1", "c2", "c3"]
    expected = {"c1": (30, 30, 4), "c2": (13, 13, 6), "c3": (4, 4, 8)}
    for name, maps in first:
        assert maps.shape == expected[name] == tuple(model.get_layer(name).output.shape[1:])
    for (n1, a), (n2, b) in zip(first, second, strict=True):
        assert n1 == n2
        np.testing.assert_array_equal(a, b)

    pooled = ins.FeatureMapExtractor(model, include_pooling=True)(x)
    assert [n for n, _ in pooled] == ["c1", "p1", "c2", "p2", "c3"]
    assert dict(pooled)["p1"].shape == (15, 15, 4)
    assert dict(pooled)["p2"].shape == (6, 6, 6)
    assert [layer.name for layer in ins.conv_layers(model, include_pooling=True)] == [
        "c1",
        "p1",
        "c2",
        "p2",
        "c3",
    ]


def test_conv_layers_includes_depthwise_and_separable():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="a")(inputs)
    x = keras.layers.DepthwiseConv2D(3, name="b")(x)
    x = keras.layers.SeparableConv2D(5, 3, name="c")(x)
    x = keras.layers.Dense(2, name="d")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, x)
    assert [layer.name for layer in ins.conv_layers(model)] == ["a", "b", "c"]
    grid = ins.kernel_grid(model, "b", upscale=2)  # 4 depthwise filters, gray in R, G and B
    assert grid.shape == (6, 4 * 6 + 3 * ins.GRID_PAD, 3) and not ins.kernels_in_colour(model, "b")


def test_extractor_errors_are_user_errors():
    inputs = keras.Input((8, 8, 1))
    dense_only = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    with pytest.raises(UserError, match="no convolution layers"):
        ins.FeatureMapExtractor(dense_only)
    extractor = ins.FeatureMapExtractor(_small_cnn())
    with pytest.raises(UserError, match="32×32×3"):
        extractor(np.zeros((28, 28, 3), np.float32))
    with pytest.raises(UserError, match="one image"):
        extractor(np.zeros((2, 32, 32, 3), np.float32))


def test_extractor_treats_nested_base_as_one_layer():
    model, base = _nested_model()
    assert ins.conv_layers(model) == [base]  # the augmentation Sequential is not a stage
    ((name, maps),) = ins.FeatureMapExtractor(model)(np.full((24, 24, 3), 128.0, np.float32))
    assert name == "base"
    assert maps.shape == (12, 12, 7)


# ------------------------------------------------------------------------------------------- tile_maps


@pytest.mark.parametrize("c", [1, 5, 8, 13, 64])
@pytest.mark.parametrize(("cols", "pad"), [(8, 1), (3, 0), (1, 2), (16, 3)])
def test_tile_maps_shape_adds_up(c, cols, pad):
    h, w = 5, 7
    maps = np.random.default_rng(c).normal(size=(h, w, c)).astype(np.float32)
    img = ins.tile_maps(maps, cols=cols, pad=pad)
    ncols = min(cols, c)
    rows = math.ceil(c / ncols)
    assert img.dtype == np.uint8
    assert img.shape == (rows * h + (rows - 1) * pad, ncols * w + (ncols - 1) * pad)


def test_tile_maps_each_tile_is_its_normalised_map_at_its_offset():
    h, w, c, cols, pad = 5, 7, 13, 4, 2
    rng = np.random.default_rng(3)
    maps = rng.normal(size=(h, w, c)) * rng.uniform(0.1, 100, size=c) + rng.uniform(-50, 50, size=c)
    img = ins.tile_maps(maps, cols=cols, pad=pad)
    covered = np.zeros(img.shape, bool)
    for i in range(c):
        m = maps[..., i]
        ref = np.rint((m - m.min()) / (m.max() - m.min()) * 255)
        r0, c0 = (i // cols) * (h + pad), (i % cols) * (w + pad)
        np.testing.assert_allclose(img[r0 : r0 + h, c0 : c0 + w], ref, atol=1)
        covered[r0 : r0 + h, c0 : c0 + w] = True
    # Everything else (separators and the three empty cells of the last row) is the pad value.
    assert np.all(img[~covered] == ins.PAD_VALUE)
    assert (~covered).sum() == img.size - c * h * w


def test_tile_maps_constant_and_nan_maps_become_zero_without_warnings():
    maps = np.zeros((4, 4, 3), np.float32)
    maps[..., 0] = 7.0
    maps[..., 1] = np.arange(16).reshape(4, 4)
    maps[..., 2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = ins.tile_maps(maps, pad=1)
    assert img.shape == (4, 3 * 4 + 2)
    assert np.all(img[:, 0:4] == 0)
    assert img[:, 5:9].min() == 0 and img[:, 5:9].max() == 255
    assert np.all(img[:, 10:14] == 0)


def test_tile_maps_max_maps_keeps_the_first_maps():
    maps = np.random.default_rng(4).normal(size=(6, 6, 20))
    limited = ins.tile_maps(maps, cols=4, pad=1, max_maps=6)
    assert limited.shape == (2 * 6 + 1, 4 * 6 + 3)
    np.testing.assert_array_equal(limited[:6], ins.tile_maps(maps[..., :4], cols=4, pad=1))


# ---------------------------------------------------------------------------------- colours and overlay


def test_apply_colormap_matches_matplotlib_lookup():
    gray = np.array([[0, 128], [255, 64]], np.uint8)
    rgb = ins.apply_colormap(gray, "viridis")
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    ref = np.rint(matplotlib.colormaps["viridis"](gray / 255.0)[..., :3] * 255)
    np.testing.assert_allclose(rgb, ref, atol=1)
    with pytest.raises(UserError, match="colormap"):
        ins.apply_colormap(gray, "no-such-map")
    with pytest.raises(ValueError):
        ins.apply_colormap(gray.astype(np.float32))


@pytest.mark.parametrize("shape", [(10, 12), (10, 12, 1), (10, 12, 3)])
def test_overlay_shapes_and_blend_ends(shape):
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, shape).astype(np.uint8)
    heat = rng.uniform(0, 1, (10, 12)).astype(np.float32)
    out = ins.overlay(image, heat)
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8
    rgb = np.broadcast_to(image.reshape(10, 12, -1), (10, 12, 3))
    np.testing.assert_array_equal(ins.overlay(image, heat, alpha=0.0), rgb)
    gray = np.rint(heat * 255).astype(np.uint8)
    np.testing.assert_array_equal(
        ins.overlay(image, heat, alpha=1.0, colormap="jet"), ins.apply_colormap(gray, "jet")
    )
    # A heatmap at model resolution is resized onto a bigger original picture.
    assert ins.overlay(np.zeros((40, 48, 3), np.uint8), heat).shape == (40, 48, 3)


# ---------------------------------------------------------------------------------------------- kernels


def _separator(img: np.ndarray) -> np.ndarray:
    """Where an RGB grid holds the separator colour."""
    return np.all(img == np.asarray(ins.SEPARATOR_RGB, np.uint8), axis=-1)


def test_kernel_grid_rgb_for_three_channel_input():
    inputs = keras.Input((16, 16, 3))
    conv = keras.layers.Conv2D(5, 3, name="first")
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="second")(conv(inputs)))
    grid = ins.kernel_grid(model)
    assert grid.dtype == np.uint8 and ins.kernels_in_colour(model)
    assert grid.shape == (3 * 8, 5 * 24 + 4 * ins.GRID_PAD, 3)
    k0 = conv.get_weights()[0][..., 0]  # (3, 3, 3)
    ref = np.rint((k0 - k0.min()) / (k0.max() - k0.min()) * 255).repeat(8, 0).repeat(8, 1)
    np.testing.assert_allclose(grid[:24, :24], ref, atol=1)
    # The second layer has 5 input channels, so its kernels are grayscale means, still drawn as RGB.
    assert not ins.kernels_in_colour(model, "second")
    assert ins.kernel_grid(model, "second", cols=8, pad=2, upscale=4).shape == (12, 2 * 12 + 2, 3)


def test_kernel_grid_grayscale_for_one_channel_input():
    inputs = keras.Input((16, 16, 1))
    conv = keras.layers.Conv2D(10, 3)
    model = keras.Model(inputs, conv(inputs))
    grid = ins.kernel_grid(model, cols=4, pad=1, upscale=8)
    assert grid.ndim == 3 and grid.dtype == np.uint8 and not ins.kernels_in_colour(model)
    assert grid.shape == (3 * 24 + 2, 4 * 24 + 3, 3)
    k3 = conv.get_weights()[0][:, :, 0, 3]
    ref = np.rint((k3 - k3.min()) / (k3.max() - k3.min()) * 255).repeat(8, 0).repeat(8, 1)
    for ch in range(3):  # gray: the same value in R, G and B
        np.testing.assert_allclose(grid[:24, 3 * 25 : 3 * 25 + 24, ch], ref, atol=1)
    with pytest.raises(UserError, match="no layer named"):
        ins.kernel_grid(model, "nope")


@pytest.mark.parametrize(("n", "cols", "pad"), [(10, 4, 2), (8, 8, 1), (5, 3, 2), (1, 8, 2)])
def test_kernel_grid_gaps_are_neutral_separator_lines(n, cols, pad):
    """Each kernel tile has its own black and white pixels, so only a separator colour keeps neighbours apart."""
    inputs = keras.Input((16, 16, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(n, 3)(inputs))
    up = 6
    grid = ins.kernel_grid(model, cols=cols, pad=pad, upscale=up)
    ncols, rows, tile = min(cols, n), math.ceil(n / min(cols, n)), 3 * up
    assert grid.shape == (rows * tile + (rows - 1) * pad, ncols * tile + (ncols - 1) * pad, 3)
    sep = _separator(grid)
    for j in range(1, ncols):  # every vertical gap is separator colour, top to bottom
        x0 = j * (tile + pad) - pad
        assert sep[:, x0 : x0 + pad].all()
    for i in range(1, rows):
        y0 = i * (tile + pad) - pad
        assert sep[y0 : y0 + pad, :].all()
    tiles = ~sep
    assert tiles.sum() == n * tile * tile  # nothing but the kernels is drawn; empty cells are separator too
    assert len(set(ins.SEPARATOR_RGB)) > 1  # a tinted gray: no grayscale kernel pixel can take its colour


def test_kernel_grid_default_gap_is_two_pixels():
    inputs = keras.Input((16, 16, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3)(inputs))
    assert ins.GRID_PAD == 2
    grid = ins.kernel_grid(model, upscale=4)
    assert grid.shape == (12, 3 * 12 + 2 * 2, 3) and _separator(grid)[:, 12:14].all()


def test_kernel_grid_reads_the_first_conv_of_a_nested_base(mobilenet_model):
    model, _ = mobilenet_model
    grid = ins.kernel_grid(model)  # MobileNetV2's Conv1: 3x3x3 -> 16 filters at alpha 0.35
    assert grid.shape == (2 * 24 + ins.GRID_PAD, 8 * 24 + 7 * ins.GRID_PAD, 3)


@pytest.mark.parametrize(("c", "cols", "pad"), [(13, 4, 2), (8, 8, 1), (1, 8, 2), (64, 8, 2)])
def test_tile_maps_rgb_matches_tile_maps_with_neutral_gaps(c, cols, pad):
    """Feature-map grids: the gray grid's layout and sizes, tiles through the colormap, gaps in the separator colour."""
    h, w = 5, 7
    maps = np.random.default_rng(c).normal(size=(h, w, c)).astype(np.float32)
    gray = ins.tile_maps(maps, cols=cols, pad=pad)
    rgb = ins.tile_maps_rgb(maps, "viridis", cols=cols, pad=pad)
    assert rgb.shape == (*gray.shape, 3) and rgb.dtype == np.uint8
    ncols = min(cols, c)
    covered = np.zeros(gray.shape, bool)
    for i in range(c):
        r0, c0 = (i // ncols) * (h + pad), (i % ncols) * (w + pad)
        covered[r0 : r0 + h, c0 : c0 + w] = True
    np.testing.assert_array_equal(rgb[covered], ins.apply_colormap(gray, "viridis")[covered])
    assert _separator(rgb)[~covered].all()
    assert not _separator(rgb)[covered].any()  # viridis never takes the separator colour


# --------------------------------------------------------------------------------------------- Grad-CAM


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_grad_cam_finds_the_square(trained, head):
    model, xt, yt, ct, acc = trained[head]
    assert acc >= 0.9, "the detector did not learn; the heatmap test would mean nothing"
    hits, masses = [], []
    for xi, yi, ci in zip(xt, yt, ct, strict=True):
        if not yi:
            continue
        heat, cls = ins.grad_cam(model, xi, class_index=1, output_kind=head)
        assert cls == 1
        assert ins.grad_cam_result(model, xi, class_index=1, output_kind=head).evidence
        assert heat.shape == (S, S) and heat.dtype == np.float32
        assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0
        hits.append(_argmax_quadrant(heat) == ci)
        masses.append(_quadrant_mass(heat, ci))
    assert np.mean(hits) >= 0.6
    assert np.mean(masses) >= 0.5  # a quarter of the image holds most of the heat


def _probability_grad_cam(model: keras.Model, x: np.ndarray, cls: int) -> np.ndarray:
    """The old way, by hand: Grad-CAM of the softmax/sigmoid *output*, unnormalised (it fades when sure)."""
    import tensorflow as tf

    side = keras.Model(model.inputs[0], [model.get_layer("last_conv").output, model.outputs[0]])
    with tf.GradientTape() as tape:
        feats, out = side(x[None], training=False)
        score = out[0, cls] if out.shape[-1] > 1 else (out[0, 0] if cls == 1 else 1.0 - out[0, 0])
    weights = tf.reduce_mean(tape.gradient(score, feats), axis=(1, 2), keepdims=True)
    return np.asarray(tf.nn.relu(tf.reduce_sum(feats * weights, axis=-1))[0])


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_grad_cam_of_a_very_confident_prediction_still_finds_the_square(trained, head):
    """The same detector with its head scaled so every square is called with a margin of 150 logits: the
    softmax/sigmoid is exactly 1.0 in float32, its gradient exactly 0, so the probability's Grad-CAM is flat.
    The score before the squashing only scales, so Grad-CAM from it must be the unscaled model's map."""
    model, xt, yt, ct, _ = trained[head]
    chosen = np.flatnonzero(yt == 1)
    sure = keras.models.clone_model(model)
    sure.set_weights(model.get_weights())
    logit_model = keras.Model(model.inputs[0], model.layers[-1].input)
    out_layer = model.layers[-1]
    h = np.asarray(logit_model(xt[chosen], training=False))
    z = h @ np.asarray(out_layer.kernel) + np.asarray(out_layer.bias)
    margin = z[:, 0] if head == "sigmoid" else z[:, 1] - z[:, 0]
    chosen = chosen[margin > 0]  # the ones the detector gets right
    factor = 150.0 / float(margin[margin > 0].min())
    sure.layers[-1].kernel.assign(np.asarray(out_layer.kernel) * factor)
    sure.layers[-1].bias.assign(np.asarray(out_layer.bias) * factor)

    hits, masses = [], []
    for i in chosen:  # one image at a time, as the page asks (a batch may round the softmax differently)
        assert float(np.asarray(sure(xt[i : i + 1], training=False))[0, -1]) == 1.0, "not saturated"
        assert float(_probability_grad_cam(sure, xt[i], 1).max()) <= 1e-9  # the old map: (near) nothing
        cam = ins.grad_cam_result(sure, xt[i], class_index=1, output_kind=head)
        assert cam.evidence, "Grad-CAM from the logit must not fade with confidence"
        reference = ins.grad_cam_result(model, xt[i], class_index=1, output_kind=head)
        np.testing.assert_allclose(cam.heatmap, reference.heatmap, atol=1e-3)
        hits.append(_argmax_quadrant(cam.heatmap) == ct[i])
        masses.append(_quadrant_mass(cam.heatmap, ct[i]))
    assert len(chosen) >= 20
    assert np.mean(hits) >= 0.6 and np.mean(masses) >= 0.5


def test_grad_cam_through_a_separate_softmax_layer_and_a_logits_head_agree():
    """A softmax Activation/Softmax layer after a linear Dense is looked through too; a logits head is used as is."""
    keras.utils.set_random_seed(
        1
    )  # weights under which class 2 has evidence (an unseeded init may have none)
    inputs = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(3, 3, activation="relu", name="c")(inputs)
    logits = keras.layers.Dense(3, name="head")(keras.layers.Flatten()(h))
    plain = keras.Model(inputs, logits)
    x = np.random.default_rng(3).uniform(0, 255, (12, 12, 1)).astype(np.float32)
    want = ins.grad_cam_result(plain, x, class_index=2, output_kind="logits")
    assert want.evidence
    for squash in (keras.layers.Activation("softmax"), keras.layers.Softmax()):
        model = keras.Model(inputs, squash(logits))
        got = ins.grad_cam_result(model, x, class_index=2, output_kind="softmax")
        np.testing.assert_allclose(got.heatmap, want.heatmap, atol=1e-5)
        assert ins._GRAD_MODELS[model]["c"].pre_activation
    assert not ins._GRAD_MODELS[plain]["c"].pre_activation


def test_grad_cam_predicted_class_and_sigmoid_negation(trained):
    model, xt, yt, ct, _ = trained["sigmoid"]
    p = np.asarray(model(xt, training=False))[:, 0]
    for xi, pi in zip(xt[:8], p[:8], strict=True):
        assert ins.grad_cam(model, xi, output_kind="sigmoid")[1] == int(pi >= 0.5)
    # Evidence for "no square" (1 - p) must not sit on the square the way class 1's evidence does.
    with_square = np.flatnonzero(yt == 1)
    for_class = [
        _quadrant_mass(ins.grad_cam(model, xt[i], 1, output_kind="sigmoid")[0], ct[i]) for i in with_square
    ]
    against = [
        _quadrant_mass(ins.grad_cam(model, xt[i], 0, output_kind="sigmoid")[0], ct[i]) for i in with_square
    ]
    assert np.mean(against) < 0.3 < np.mean(for_class)

    softmax_model, xs, *_ = trained["softmax"]
    probs = np.asarray(softmax_model(xs[:8], training=False))
    for xi, pi in zip(xs[:8], probs, strict=True):
        assert ins.grad_cam(softmax_model, xi)[1] == int(pi.argmax())


def test_grad_cam_zero_gradients_give_zero_heatmap():
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(3, 3, activation="relu", kernel_initializer="zeros", name="dead")(inputs)
    out = keras.layers.Dense(2, activation="softmax", kernel_initializer="zeros")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, out)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        heat, cls = ins.grad_cam(model, np.full((12, 12, 1), 200.0, np.float32))
    assert heat.shape == (12, 12)
    assert np.all(heat == 0.0)
    assert cls in (0, 1)
    assert not ins.grad_cam_result(model, np.full((12, 12, 1), 200.0, np.float32)).evidence


def test_grad_cam_without_a_gradient_path_has_no_evidence():
    """Zero head weights: the class score ignores the conv output, so Grad-CAM must not draw a heatmap."""
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(3, 3, activation="relu", name="ignored")(inputs)
    out = keras.layers.Dense(2, activation="softmax", kernel_initializer="zeros")(
        keras.layers.GlobalAveragePooling2D()(x)
    )
    cam = ins.grad_cam_result(keras.Model(inputs, out), np.random.default_rng(0).uniform(0, 255, (12, 12, 1)))
    assert not cam.evidence and cam.note == ins.NO_EVIDENCE
    assert cam.heatmap.shape == (12, 12) and np.all(cam.heatmap == 0.0)


def test_grad_cam_of_an_all_zero_image_through_a_relu_net_has_no_evidence():
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", padding="same", name="c1")(inputs)  # zero biases: all 0
    x = keras.layers.Conv2D(4, 3, activation="relu", padding="same", name="c2")(x)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, out)
    cam = ins.grad_cam_result(model, np.zeros((16, 16, 1), np.float32))
    assert not cam.evidence and cam.note == ins.NO_EVIDENCE
    assert np.all(cam.heatmap == 0.0)
    heat, cls = ins.grad_cam(model, np.zeros((16, 16, 1), np.float32))  # the tuple API agrees
    assert np.all(heat == 0.0) and cls == cam.class_index


def test_grad_cam_of_a_constant_map_has_no_evidence_instead_of_a_flat_overlay():
    """A blank image through 'valid' convolutions gives the same positive value everywhere: today's code drew
    an all-ones heatmap (a uniform red overlay), which reads as evidence everywhere."""
    inputs = keras.Input((10, 10, 1))
    x = keras.layers.Conv2D(2, 3, activation="relu", kernel_initializer="ones", bias_initializer="ones",
                            name="flat")(inputs)  # fmt: skip
    out = keras.layers.Dense(1, activation="sigmoid", kernel_initializer="ones")(
        keras.layers.GlobalAveragePooling2D()(x)
    )
    model = keras.Model(inputs, out)
    blank = np.zeros((10, 10, 1), np.float32)  # every position of "flat" is relu(0 + 1) = 1
    cam = ins.grad_cam_result(model, blank, class_index=1, output_kind="sigmoid")
    assert not cam.evidence and cam.note == ins.NO_EVIDENCE and np.all(cam.heatmap == 0.0)
    varied = blank.copy()
    varied[2:5, 2:5] = 1.0  # a bright patch: now one region raises the score more than the rest
    cam = ins.grad_cam_result(model, varied, class_index=1, output_kind="sigmoid")
    assert cam.evidence and cam.note == "" and cam.heatmap.max() == pytest.approx(1.0)


def test_grad_cam_on_a_one_by_one_map_says_it_cannot_place_evidence():
    inputs = keras.Input((3, 3, 1))
    x = keras.layers.Conv2D(2, 3, activation="relu", bias_initializer="ones", name="tiny")(inputs)  # 1x1
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x))
    cam = ins.grad_cam_result(keras.Model(inputs, out), np.full((3, 3, 1), 9.0, np.float32))
    assert not cam.evidence and np.all(cam.heatmap == 0.0)
    assert cam.note.startswith("no evidence") and "1×1" in cam.note and "tiny" in cam.note


def test_grad_cam_builds_its_model_once_and_lets_it_go(trained):
    model, xt, *_ = trained["softmax"]
    ins.grad_cam(model, xt[0])
    first = ins._GRAD_MODELS[model]["last_conv"]
    ins.grad_cam(model, xt[1], class_index=0)
    assert ins._GRAD_MODELS[model]["last_conv"] is first
    assert len(ins._GRAD_MODELS[model]) == 1

    throwaway = _small_cnn()
    ins.grad_cam(throwaway, np.zeros((32, 32, 3), np.float32))
    ref = weakref.ref(throwaway)
    del throwaway
    gc.collect()
    assert ref() is None, "the Grad-CAM cache must not keep a model alive"


def test_grad_cam_named_layer_and_bad_arguments():
    model = _small_cnn(head="logits")
    x = np.random.default_rng(6).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    heat, cls = ins.grad_cam(model, x, class_index=2, layer_name="c1", output_kind="logits")
    assert heat.shape == (32, 32) and cls == 2
    with pytest.raises(UserError, match="no spatial feature map"):
        ins.grad_cam(model, x, layer_name="hidden", output_kind="logits")
    with pytest.raises(UserError, match="class 3"):
        ins.grad_cam(model, x, class_index=3, output_kind="logits")
    with pytest.raises(UserError, match="no layer named"):
        ins.grad_cam(model, x, layer_name="missing", output_kind="logits")
    with pytest.raises(UserError, match="classes 0 and 1"):
        ins.grad_cam(_small_cnn(head="sigmoid"), x, class_index=2, output_kind="sigmoid")


def test_grad_cam_through_nested_functional_models(mobilenet_model):
    model, _ = _nested_model()
    x = np.random.default_rng(7).uniform(0, 255, (24, 24, 3)).astype(np.float32)
    heat, cls = ins.grad_cam(model, x)
    assert heat.shape == (24, 24) and 0 <= cls < 3
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1

    mobile, base = mobilenet_model
    assert ins.conv_layers(mobile) == [base]
    heat, cls = ins.grad_cam(
        mobile, np.random.default_rng(8).uniform(0, 255, (64, 64, 3)), output_kind="logits"
    )
    assert heat.shape == (64, 64) and cls in (0, 1)
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1


# ------------------------------------------------------------------------------------------ activations


def test_layer_activations_any_layer():
    model = _small_cnn(k=3)
    x = np.random.default_rng(9).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    final = model.layers[-1].name
    acts = ins.layer_activations(model, x, ["c2", "hidden", final])
    assert acts["c2"].shape == (13, 13, 6)
    assert acts["hidden"].shape == (5,)
    np.testing.assert_allclose(
        acts[final], np.asarray(model(x[None], training=False))[0], rtol=1e-5, atol=1e-6
    )
    again = ins.layer_activations(model, x, ["c2", "hidden", final])
    np.testing.assert_array_equal(again["hidden"], acts["hidden"])
    assert len(ins._ACTIVATION_MODELS[model]) == 1
    assert ins.layer_activations(model, x, []) == {}
    with pytest.raises(UserError, match="no layer named"):
        ins.layer_activations(model, x, ["nope"])

    nested, _ = _nested_model()
    out = ins.layer_activations(nested, np.zeros((24, 24, 3), np.float32), ["base"])
    assert out["base"].shape == (12, 12, 7)
