"""Every preset, layer for layer: parameter counts against the notebooks, heads, builder, transfer offline."""

from __future__ import annotations

import numpy as np
import pytest

from core.analysis.probabilities import to_probabilities
from core.errors import UserError
from core.models import architectures

# (preset, input shape, classes) -> (total params, trainable params) as printed by the source notebooks
NOTEBOOK_COUNTS = {
    ("jedi-sith-binary", (200, 200, 3), 2): (622_753, 622_753),
    ("jedi-sith-ternary", (400, 400, 3), 3): (20_596_647, 20_596_647),
    ("mobilenetv2-transfer", (160, 160, 3), 2): (2_260_546, 2_562),
    ("xception-transfer", (299, 299, 3), 2): (20_923_012, 20_868_484),
    ("fashion-cnn", (28, 28, 1), 10): (93_322, 93_322),
    ("fashion-dense", (28, 28, 1), 10): (101_770, 101_770),
}


@pytest.mark.parametrize("key", list(NOTEBOOK_COUNTS), ids=lambda k: k[0])
def test_parameter_counts_match_notebooks(key):
    preset, shape, k = key
    model = architectures.build_model(preset, shape, k, weights=None)
    counts = architectures.param_counts(model)
    assert (counts["total"], counts["trainable"]) == NOTEBOOK_COUNTS[key]


def _conv_dense_signature(model):
    out = []
    for layer in model.layers:
        name = type(layer).__name__
        if name == "Conv2D":
            out.append(("Conv2D", layer.filters, tuple(layer.kernel_size)))
        elif name == "Dense":
            out.append(("Dense", layer.units))
        elif name in ("Dropout",):
            out.append(("Dropout", layer.rate))
        elif name in ("MaxPooling2D", "Flatten", "GlobalMaxPooling2D", "GlobalAveragePooling2D", "Rescaling"):
            out.append((name,))
        elif name.startswith("Random"):
            out.append((name,))
    return out


def test_jedi_binary_layer_order_is_the_notebooks():
    model = architectures.build_model("jedi-sith-binary", (200, 200, 3), 2)
    sig = _conv_dense_signature(model)
    assert sig[:5] == [
        ("RandomFlip",),
        ("RandomRotation",),
        ("RandomContrast",),
        ("RandomZoom",),
        ("Rescaling",),
    ]
    assert sig[5:8] == [("Conv2D", 16, (3, 3)), ("Dropout", 0.2), ("MaxPooling2D",)]
    assert [s for s in sig if s[0] == "Conv2D"] == [("Conv2D", f, (3, 3)) for f in (16, 32, 64, 64, 64)]
    assert sig[-5:] == [("Flatten",), ("Dropout", 0.2), ("Dense", 512), ("Dropout", 0.2), ("Dense", 1)]


def test_mnist_lab_and_cats_dogs_layers():
    sig = _conv_dense_signature(architectures.build_model("mnist-lab", (28, 28, 1), 10))
    assert sig == [("Rescaling",), ("Conv2D", 64, (8, 8)), ("Conv2D", 128, (8, 8)), ("MaxPooling2D",),
                   ("Dropout", 0.25), ("Flatten",), ("Dense", 128), ("Dropout", 0.5), ("Dense", 10)]  # fmt: skip
    sig1 = _conv_dense_signature(architectures.build_model("cats-dogs-1", (160, 160, 3), 2))
    assert sig1 == [("Conv2D", 32, (3, 3)), ("MaxPooling2D",), ("Conv2D", 64, (3, 3)), ("MaxPooling2D",),
                    ("Dropout", 0.2), ("Flatten",), ("Dense", 128), ("Dropout", 0.2), ("Dense", 2)]  # fmt: skip
    sig2 = _conv_dense_signature(architectures.build_model("cats-dogs-2", (160, 160, 3), 2))
    assert sig2 == [("RandomFlip",), ("RandomRotation",)] + sig1
    sig3 = _conv_dense_signature(architectures.build_model("cats-dogs-3", (160, 160, 3), 2))
    assert [s for s in sig3 if s[0] == "Conv2D"] == [
        ("Conv2D", 32, (3, 3)),
        ("Conv2D", 32, (3, 3)),
        ("Conv2D", 64, (3, 3)),
    ]
    sig_h = _conv_dense_signature(architectures.build_model("horses-humans", (150, 150, 3), 2))
    assert [s for s in sig_h if s[0] in ("Conv2D", "Dense")] == [
        ("Conv2D", 16, (3, 3)), ("Conv2D", 32, (3, 3)), ("Conv2D", 64, (3, 3)), ("Dense", 512), ("Dense", 1)]  # fmt: skip


@pytest.mark.parametrize(
    "preset,k,kind,units",
    [("jedi-sith-binary", 2, "sigmoid", 1), ("jedi-sith-binary", 3, "softmax", 3), ("cats-dogs-1", 2, "logits", 2),
     ("fast", 10, "softmax", 10), ("horses-humans", 2, "sigmoid", 1)],
)  # fmt: skip
def test_heads_adapt_to_class_count(preset, k, kind, units):
    shape = (96, 96, 3)
    model = architectures.build_model(preset, shape, k)
    assert architectures.output_kind(preset, k) == kind
    assert model.outputs[0].shape[-1] == units
    x = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype("float32")
    p = to_probabilities(np.asarray(model(x, training=False)), kind)
    assert p.shape == (2, k)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_every_preset_builds_and_runs_on_its_default_size():
    for name, p in architectures.PRESETS.items():
        if p.transfer:
            continue
        h, w = p.image_size or (28, 28)
        c = p.channels or 1
        model = architectures.build_model(name, (h, w, c), 3)
        assert model.inputs[0].shape[1:] == (h, w, c)


def test_builder_spec_shapes():
    spec = architectures.BuilderSpec(conv_blocks=3, filters=8, filter_growth=2, kernel_size=3, dense_units=32)
    model = architectures.build_model("custom", (32, 32, 1), 4, builder=spec)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [8, 16, 32]
    assert model.outputs[0].shape[-1] == 4
    aug = architectures.build_model(
        "custom", (32, 32, 3), 2, builder=architectures.BuilderSpec(augmentation=True)
    )
    assert any(type(layer).__name__ == "RandomZoom" for layer in aug.layers)


def test_bad_requests_are_user_errors():
    with pytest.raises(UserError, match="unknown preset"):
        architectures.build_model("nope", (28, 28, 1), 2)
    with pytest.raises(UserError, match="at least two classes"):
        architectures.build_model("fast", (28, 28, 1), 1)
    with pytest.raises(UserError, match="at least 71x71"):
        architectures.build_model("xception-transfer", (28, 28, 3), 2, weights=None)
    with pytest.raises(UserError, match="3-channel"):
        architectures.build_model("mobilenetv2-transfer", (96, 96, 1), 2, weights=None)
    with pytest.raises(UserError, match="at least 94x94"):
        architectures.build_model("jedi-sith-binary", (93, 93, 3), 2)
    with pytest.raises(UserError, match="too small"):
        architectures.build_model("custom", (8, 8, 1), 2, builder=architectures.BuilderSpec(kernel_size=9))


def test_transfer_offline_says_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("CONVNET_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        architectures.build_model("mobilenetv2-transfer", (96, 96, 3), 2)
    msg = str(err.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5" in msg and "random" in msg
    assert "\n" not in msg
    with pytest.raises(UserError, match="weights file not found"):
        architectures.build_model(
            "mobilenetv2-transfer", (96, 96, 3), 2, weights=str(tmp_path / "missing.h5")
        )


def test_transfer_from_a_local_weights_file(tmp_path):
    """The 'point to a weights file' path: save a base's weights, build the preset from that file."""
    import keras

    base = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights=None, alpha=1.0)
    path = tmp_path / "base.weights.h5"
    base.save_weights(path)
    model = architectures.build_model("mobilenetv2-transfer", (96, 96, 3), 2, weights=str(path))
    inner = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    np.testing.assert_allclose(inner.get_weights()[0], base.get_weights()[0])
    assert architectures.param_counts(model)["trainable"] == 1280 * 2 + 2
