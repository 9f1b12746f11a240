"""Every number and path a person gives is checked in `trainer.resolve`, before a run folder exists."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import paths, validation
from core.errors import UserError
from core.models import architectures
from core.training import trainer
from tests.helpers import make_dataset

REPO = Path(__file__).resolve().parents[1]


def _req(**kw) -> trainer.TrainRequest:
    return trainer.TrainRequest(dataset=kw.pop("dataset", "v"), **kw)


def _no_runs() -> bool:
    return not any(paths.runs_dir().iterdir())


BAD = [
    (dict(seed=-1), "seed"),
    (dict(seed=2**32), "seed"),
    (dict(limit=-1), "limit"),
    (dict(limit=0), "limit"),
    (dict(epochs=0), "epochs"),
    (dict(epochs=10_001), "epochs"),
    (dict(epochs=2.5), "epochs"),
    (dict(batch_size=0), "batch size"),  # was silently replaced by the preset's default
    (dict(batch_size=65_537), "batch size"),
    (dict(learning_rate=0.0), "learning rate"),  # was silently replaced by the preset's default
    (dict(learning_rate=math.inf), "learning rate"),
    (dict(learning_rate=math.nan), "learning rate"),
    (dict(learning_rate=-1e-3), "learning rate"),
    (dict(learning_rate=11.0), "learning rate"),
    (dict(val_split=math.nan), "validation split"),
    (dict(val_split=1.0), "validation split"),
    (dict(val_split=-0.1), "validation split"),
    (dict(image_size=(0, 0)), "image size"),  # was taken as "no size given"
    (dict(image_size=(2000, 2000)), "image size"),
    (dict(image_size=(3, 3)), "at least 4x4"),  # fast pools twice
    (dict(preset="xception-transfer", image_size=(70, 70), weights="random"), "at least 71x71"),
    (dict(preset="mobilenetv2-transfer", image_size=(31, 31), weights="random"), "at least 32x32"),
    (dict(preset="jedi-sith-binary", image_size=(93, 93)), "at least 94x94"),
    (dict(target_accuracy=math.nan), "target accuracy"),
    (dict(early_stopping=-1), "early-stopping"),
    (dict(channels=0), "channels"),
    (dict(preset="custom", builder={"conv_blocks": 2, "filters": 0}), "filters"),
]


@pytest.mark.parametrize(("bad", "needle"), BAD, ids=[f"{k}" for k, _ in BAD])
def test_bad_numbers_are_refused_before_a_run_exists(bad, needle):
    make_dataset("v", per_class=2)
    with pytest.raises(UserError, match=needle):
        trainer.start_run(_req(**bad))
    assert _no_runs()


def test_zero_and_edge_values_are_kept_not_defaulted():
    make_dataset("v", per_class=2)
    cfg = trainer.resolve(_req(seed=0, val_split=0.0, learning_rate=1e-7, batch_size=1, image_size=(4, 4)))
    assert (cfg.seed, cfg.val_split, cfg.learning_rate, cfg.batch_size) == (0, 0.0, 1e-7, 1)
    assert cfg.input_shape[:2] == (4, 4)
    assert trainer.resolve(_req(seed=2**32 - 1, limit=1)).limit == 1


def _weights_cases(tmp_path: Path) -> list[tuple[str, str]]:
    folder = tmp_path / "folder.h5"
    folder.mkdir()
    wrong = tmp_path / "weights.txt"
    wrong.write_bytes(b"x")
    cases = [
        (str(tmp_path / "missing.h5"), "not found"),
        (str(folder), "folder"),
        (str(wrong), ".h5"),
    ]
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.h5"
        os.mkfifo(fifo)
        cases.append((str(fifo), "not a regular file"))
    return cases


def test_weights_path_must_be_a_regular_weights_file(tmp_path):
    make_dataset("v", per_class=2, rgb=True)
    for weights, needle in _weights_cases(tmp_path):
        with pytest.raises(UserError, match=needle):
            trainer.start_run(_req(preset="mobilenetv2-transfer", image_size=(32, 32), weights=weights))
    assert _no_runs()
    good = tmp_path / "base.weights.h5"
    good.write_bytes(b"\x89HDF\r\n\x1a\n")
    cfg = trainer.resolve(_req(preset="mobilenetv2-transfer", image_size=(32, 32), weights=str(good)))
    assert cfg.weights == str(good)


def test_oversized_weights_file_is_refused(tmp_path, monkeypatch):
    make_dataset("v", per_class=2, rgb=True)
    big = tmp_path / "big.h5"
    big.write_bytes(b"\0" * 2048)
    monkeypatch.setattr(validation, "MAX_WEIGHTS_BYTES", 1024)
    with pytest.raises(UserError, match="over the 1 KiB limit"):
        trainer.resolve(_req(preset="xception-transfer", image_size=(71, 71), weights=str(big)))


@pytest.mark.parametrize("preset", [n for n, p in architectures.PRESETS.items() if not p.transfer])
def test_min_image_side_is_the_smallest_that_builds(preset):
    side = architectures.min_image_side(preset)
    if not preset == "custom":
        assert side == architectures.computed_min_side(preset)  # the table matches the model
    architectures.build_model(preset, (side, side, 3), 2)
    if side > 1:
        with pytest.raises(UserError):
            architectures.build_model(preset, (side - 1, side - 1, 3), 2)


def test_custom_builder_min_side_follows_blocks_and_kernel():
    spec = architectures.BuilderSpec(conv_blocks=3, kernel_size=5)
    side = architectures.min_image_side("custom", spec)
    architectures.build_model("custom", (side, side, 1), 2, builder=spec)
    with pytest.raises(UserError):
        architectures.build_model("custom", (side - 1, side - 1, 1), 2, builder=spec)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env={**os.environ},
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize("flag", [("--seed", "-1"), ("--lr", "inf"), ("--limit", "-1")])
def test_cli_refuses_bad_numbers_with_one_line_and_no_run(flag):
    make_dataset("v", per_class=2)
    out = _cli("train", "--dataset", "v", "--epochs", "1", *flag)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert _no_runs()


# ------------------------------------------------------------------ offline downloads say which file goes where

UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: refused at once, no real network involved


def test_offline_dataset_download_names_the_file_folder_and_url(monkeypatch, tmp_path):
    from dataclasses import replace

    from core.data import keras_datasets

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    src = keras_datasets.SOURCES["mnist"]
    monkeypatch.setitem(keras_datasets.SOURCES, "mnist", replace(src, url=UNREACHABLE + "mnist.npz"))
    with pytest.raises(UserError) as err:
        keras_datasets.load_arrays("mnist", allow_download=True)
    msg = str(err.value)
    assert "network is unreachable" in msg and "127.0.0.1:9" in msg
    assert str(tmp_path / "keras" / "datasets" / "mnist.npz") in msg and UNREACHABLE + "mnist.npz" in msg
    assert "Click Download" not in msg and "(Exception)" not in msg and "\n" not in msg


def test_offline_cifar_and_fashion_say_exactly_what_to_place(monkeypatch, tmp_path):
    from core.data import keras_datasets

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("CONVNET_OFFLINE", "1")
    monkeypatch.setattr(keras_datasets, "_debian_fashion_present", lambda: False)
    with pytest.raises(UserError, match="cifar-10-batches-py-target_archive") as err:
        keras_datasets.load_arrays("cifar10", allow_download=True)
    assert "cifar-10-python.tar.gz" in str(err.value) and "network is unreachable" in str(err.value)
    with pytest.raises(UserError) as err:
        keras_datasets.load_arrays("fashion_mnist", allow_download=True)
    assert str(tmp_path / "datasets" / "fashion-mnist") in str(err.value)
    assert "train-images-idx3-ubyte.gz" in str(err.value)


def test_offline_imagenet_weights_name_the_file_folder_and_url(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(architectures, "IMAGENET_ORIGIN", UNREACHABLE)
    with pytest.raises(UserError) as err:
        architectures.build_model("mobilenetv2-transfer", (32, 32, 3), 2)
    msg = str(err.value)
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert "network is unreachable" in msg and str(tmp_path / "models" / name) in msg
    assert f"{UNREACHABLE}mobilenet_v2/{name}" in msg and "(Exception)" not in msg


@pytest.mark.parametrize("given", [{}, {"image_size": (16, 16), "channels": 1}])
def test_a_folder_of_unreadable_images_is_refused_before_a_run_exists(given):
    for cls in ("a", "b"):
        (paths.data_dir() / "broken" / cls).mkdir(parents=True)
        for i in range(3):
            (paths.data_dir() / "broken" / cls / f"{i}.png").write_bytes(b"not a picture")
    with pytest.raises(UserError, match="no readable images"):
        trainer.start_run(_req(dataset="broken", **given))  # with its size given, nothing is probed but this
    assert _no_runs()
