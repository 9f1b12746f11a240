"""Time-lapse and training dynamics, recorded by a real tiny training run and checked against references:
Grad-CAM against inspection.grad_cam_result, norms and dead units against the saved model; the CLI's frames."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from core.__main__ import build_parser
from core.analysis import inspection
from core.analysis.probabilities import to_probabilities
from core.data import datasets
from core.errors import UserError
from core.models import loading
from core.training import pinned, recordings, runs, trainer
from core.training.dynamics import Dynamics
from core.training.run_config import RunConfig
from core.training.timelapse import FrameMaker, TimeLapse
from tests import helpers

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("timelapse")
    with helpers.app_dirs(root):
        name = helpers.make_dataset()
        run = helpers.train_tiny_run(name, epochs=EPOCHS)
    return root, name, run


@pytest.fixture
def in_trained(trained, monkeypatch):
    root = trained[0]
    monkeypatch.setenv("CONVNET_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("CONVNET_RUNS_DIR", str(root / "runs"))
    return trained


def test_frames_exist_for_every_epoch_and_pinned_image(in_trained):
    _, name, run = in_trained
    index = recordings.read_index(run.path)
    assert index is not None and index.epochs == list(range(EPOCHS + 1))  # 0 = before training
    # default: one validation image per class, chosen with the run's seed
    assert [img["label"] for img in index.images] == [0, 1, 2]
    assert [img["class"] for img in index.images] == run.class_names
    val_files = pinned.validation_files(datasets.get_dataset(name), run.config.val_split, run.config.seed)
    assert all(img["id"] in val_files for img in index.images)
    assert [layer["name"] for layer in index.layers] == ["conv2d_0", "conv2d_1"]
    assert [layer["stored"] for layer in index.layers] == [[16, 16, 16], [8, 8, 16]]  # conv2d_1 has 32
    images = recordings.read_pinned(run.path)
    assert images.shape == (3, 16, 16, 1) and images.dtype == np.uint8
    for epoch in index.epochs:
        frame = recordings.read_frame(run.path, epoch, len(index.layers))
        assert [m.shape for m in frame.maps] == [(3, 16, 16, 16), (3, 8, 8, 16)]
        assert all(m.dtype == np.uint8 for m in frame.maps)
        assert frame.cam.shape == (3, 16, 16) and frame.cam.dtype == np.uint8
        assert frame.evidence.shape == (3,) and frame.cam_class.shape == (3,)
        np.testing.assert_allclose(frame.probs.sum(axis=1), 1.0, atol=1e-5)
    assert len(index.seconds) == len(index.bytes) == EPOCHS + 1 and max(index.bytes) < 200_000
    assert not [p for p in recordings.timelapse_dir(run.path).iterdir() if p.name.startswith(".")]


def test_the_recorded_grad_cam_is_grad_cam_result_for_every_output_kind(in_trained):
    """The batched, traced recording gives each image the heatmap grad_cam_result computes for it alone."""
    run = in_trained[2]
    pins = recordings.read_pinned(run.path).astype(np.float32)
    noise = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 1)).astype(np.float32)
    cases = [(loading.load_run_model(run).model, "softmax", pins), (_one_unit("sigmoid"), "sigmoid", noise),
             (_one_unit(None), "logits", noise)]  # fmt: skip
    for model, kind, x in cases:
        got = FrameMaker(model, kind)(x)
        for i in range(len(x)):
            ref = inspection.grad_cam_result(model, x[i], output_kind=kind)
            assert (got["cam_class"][i], got["evidence"][i]) == (ref.class_index, ref.evidence), kind
            np.testing.assert_allclose(got["heat"][i], ref.heatmap, atol=1e-5)
        np.testing.assert_allclose(
            got["probs"], to_probabilities(np.asarray(model(x, training=False)), kind), atol=1e-5
        )
        assert got["probs"].shape[0] == len(x)


def _one_unit(activation: str | None) -> keras.Model:
    """A one-unit head (sigmoid, or a bare logit): class 0's evidence is the score's complement."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 1))
    h = keras.layers.Rescaling(1 / 255)(inputs)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(1, activation=activation, name="output")(h))


def test_dynamics_has_one_row_per_epoch_matching_the_saved_model(in_trained):
    _, name, run = in_trained
    rows = recordings.read_dynamics(run.path)
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    for r in rows:
        assert set(r["weight_norm"]) == set(r["update_ratio"]) == {"conv2d_0", "conv2d_1", "dense", "output"}
        assert set(r["dead_relu"]) == {"conv2d_0", "conv2d_1", "dense"}  # the ReLU layers
        assert all(v > 0 for v in r["weight_norm"].values()) and all(
            0 < v < 1 for v in r["update_ratio"].values()
        )
        assert all(0.0 <= v <= 1.0 for v in r["dead_relu"].values())
    # reference: the saved model is the weights of epoch `saved_epoch`
    model = loading.load_run_model(run).model
    row = rows[run.status["saved_epoch"] - 1]
    for layer in model.layers:
        if layer.trainable_weights:
            norm = np.sqrt(sum(float(np.sum(np.square(w.numpy()))) for w in layer.trainable_weights))
            assert row["weight_norm"][layer.name] == pytest.approx(norm, rel=1e-5)
    cfg = run.config
    h, w, c = cfg.input_shape
    train = datasets.load_splits(name, (h, w), c, val_split=cfg.val_split, seed=cfg.seed, splits=("train",))
    probe = pinned.probe_images(train["train"], cfg.seed, (h, w), c).astype(np.float32)
    side = keras.Model(model.inputs[0], [model.get_layer(n).output for n in row["dead_relu"]])
    for n, out in zip(row["dead_relu"], side(probe, training=False), strict=True):
        units = np.asarray(out).reshape(-1, np.asarray(out).shape[-1])
        assert row["dead_relu"][n] == pytest.approx(float(np.mean(units.max(axis=0) <= 0)))


def test_pinned_images_are_checked_before_a_run_exists(in_trained):
    _, name, run = in_trained
    info = datasets.get_dataset(name)
    val = pinned.validation_files(info, 0.2, 213)
    file_name = val[-1].rsplit("/", 1)[-1]
    cfg = trainer.resolve(trainer.TrainRequest(dataset=name, pinned=[file_name, val[0], val[0]]))
    assert cfg.pinned == [val[-1], val[0]]  # a unique file name becomes its path; duplicates go
    assert RunConfig.from_dict(cfg.to_dict()).pinned == cfg.pinned
    training_file = next(p for p in (info.path / "circle").iterdir() if f"circle/{p.name}" not in val)
    for pins, needle in [
        (["nope.png"], "'nope.png' is not in the validation split"),
        ([f"circle/{training_file.name}"], "is not in the validation split"),
        ([f"#{i}" for i in range(11)], "at most 10"),
        ("circle", "must be a list"),
    ]:
        with pytest.raises(UserError, match=needle):
            trainer.resolve(trainer.TrainRequest(dataset=name, pinned=pins))  # type: ignore[arg-type]
    with pytest.raises(UserError, match='give "#N"'):
        trainer.resolve(trainer.TrainRequest(dataset="digits", pinned=["a.png"]))
    assert trainer.resolve(trainer.TrainRequest(dataset="digits", pinned=["#3"])).pinned == ["#3"]
    cli = build_parser().parse_args(["train", "--dataset", name, "--pin", val[0], "--pin", file_name])
    assert cli.pin == [val[0], file_name]


def test_pinned_images_of_a_person_are_recorded():
    name = helpers.make_dataset("pins", per_class=6)
    val = pinned.validation_files(datasets.get_dataset(name), 0.2, 213)
    run = helpers.train_tiny_run(name, epochs=1, pinned=[val[-1]])
    index = recordings.read_index(run.path)
    assert index is not None and [img["id"] for img in index.images] == [val[-1]]
    assert index.images[0]["class"] == val[-1].split("/")[0] and index.epochs == [0, 1]


class _DeleteAfterFirstEpoch(keras.callbacks.Callback):
    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            shutil.rmtree(self.run_dir)


def _tiny_model(seed: int, optimizer) -> tuple[keras.Model, np.ndarray, np.ndarray, list[pinned.Pin]]:
    """A one-conv model on 12 random 16x16 images of 3 classes, and the first three pinned."""
    keras.utils.set_random_seed(seed)
    x = np.random.default_rng(seed).uniform(0, 255, (12, 16, 16, 1)).astype(np.float32)
    y = np.arange(12) % 3
    inputs = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(h)))
    model.compile(optimizer, "sparse_categorical_crossentropy")
    return model, x, y, [pinned.Pin(f"#{i}", int(y[i]), x[i].astype(np.uint8)) for i in range(3)]


def test_a_run_deleted_mid_training_ends_recording_quietly_and_no_pins_record_nothing(tmp_path):
    run_dir, other = tmp_path / "run", tmp_path / "other"
    run_dir.mkdir()
    other.mkdir()
    model, x, y, pins = _tiny_model(0, "adam")
    tl, dyn = TimeLapse(run_dir, pins, ["a", "b", "c"], "softmax"), Dynamics(run_dir, x[:4])
    nothing = TimeLapse(other, [], ["a", "b", "c"], "softmax")
    model.fit(x, y, epochs=3, batch_size=4, verbose=0,
              callbacks=[_DeleteAfterFirstEpoch(run_dir), tl, dyn, nothing])  # fmt: skip
    assert not run_dir.exists()  # never recreated
    assert tl.gone and dyn.gone and tl.epochs == []  # frame 0 is drawn when epoch 1 ends: after the delete
    assert list(other.iterdir()) == [] and nothing.epochs == []


class _Weights(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[np.ndarray]] = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(self.model.get_weights())


def test_frame_zero_shows_the_untrained_model_and_training_keeps_its_weights(tmp_path):
    """Frame 0 is drawn when epoch 1 ends (not before the first batch), from the weights training started with."""
    model, x, y, pins = _tiny_model(1, keras.optimizers.Adam(0.05))
    before = model.predict(np.stack([p.image for p in pins]).astype(np.float32), verbose=0)
    tl, ahead, after = TimeLapse(tmp_path, pins, ["a", "b", "c"], "softmax"), _Weights(), _Weights()
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[ahead, tl, after])
    assert tl.epochs == [0, 1, 2]
    zero, one = recordings.read_frame(tmp_path, 0, 1), recordings.read_frame(tmp_path, 1, 1)
    np.testing.assert_allclose(zero.probs, before, atol=1e-5)
    assert np.abs(one.probs - before).max() > 1e-3, "frame 1 should show the trained model"
    for a, b in zip(ahead.seen[0], after.seen[0], strict=True):
        np.testing.assert_array_equal(a, b)  # drawing frame 0 put the trained weights back


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONVNET_DATA_DIR": str(root / "data"), "CONVNET_RUNS_DIR": str(root / "runs")}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=240)  # fmt: skip


def test_cli_writes_png_frames_and_a_gif_per_pinned_image(in_trained, tmp_path, capsys):
    """In this process (TensorFlow is loaded already); the refusals below run as real subprocesses."""
    run = in_trained[2]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = build_parser().parse_args(["timelapse", "--run", run.run_id, "--out", str(out_dir)])
    assert args.fn(args) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert folder == out_dir / f"{run.run_id}_timelapse"
    gifs = sorted(folder.glob("*.gif"))
    assert [g.stem.split("-")[1] for g in gifs] == run.class_names
    for gif in gifs:
        pngs = sorted((folder / gif.stem).glob("*.png"))
        assert [p.name for p in pngs] == [f"epoch-{e:03d}.png" for e in range(EPOCHS + 1)]
        sizes = {Image.open(p).size for p in pngs}
        assert len(sizes) == 1  # every frame has the same layout
        with Image.open(gif) as anim:
            assert anim.n_frames == EPOCHS + 1 and anim.size == sizes.pop()
    assert [p.name for p in out_dir.iterdir()] == [folder.name]


def test_cli_refuses_bad_input_in_one_line(trained, tmp_path):
    root, _, run = trained
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / f"{run.run_id}_timelapse").mkdir()
    (tmp_path / "file.txt").write_text("mine")
    queued = runs.create_run(RunConfig(dataset="digits", class_names=["a", "b"], run_id="no-frames"))
    cases = [
        (["--run", "no-such-run", "--out", str(tmp_path)], "no run 'no-such-run'"),
        (["--run", queued.run_id, "--out", str(tmp_path)], "has no time-lapse"),
        (["--run", run.run_id, "--out", str(tmp_path / "taken")], "already exists"),
        (["--run", run.run_id, "--out", str(tmp_path / "file.txt")], "already exists"),
        (["--run", run.run_id, "--out", str(tmp_path / "missing" / "x")], "does not exist"),
        (["--run", run.run_id], "required: --out"),
    ]
    shutil.move(str(queued.path), str(root / "runs" / queued.run_id))  # into the module's runs folder
    for args, needle in cases:
        out = _cli(root, "timelapse", *args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), out.stderr
        assert needle in lines[0] and "Traceback" not in out.stderr
    assert (tmp_path / "file.txt").read_text() == "mine"
    assert not list((tmp_path / "taken" / f"{run.run_id}_timelapse").iterdir())


def test_queued_writes_run_in_order_and_a_failure_stops_recording_not_training(capsys):
    done: list[int] = []

    def refuse() -> None:
        raise PermissionError(13, "Permission denied")

    writes = recordings.QueuedWrites("time-lapse")
    for job in (lambda: done.append(1), lambda: done.append(2), refuse, lambda: done.append(4)):
        writes.submit(job)
    writes.close()
    assert done == [1, 2] and not writes.gone
    assert capsys.readouterr().err.strip() == "warning: time-lapse not recorded any more: Permission denied"
