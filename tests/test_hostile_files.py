"""Hostile paths and model files: fifos, devices, folders, oversized members and models that declare too much.

Anything that could hang or eat memory on a regression runs in a subprocess with a timeout, so it fails instead.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.analysis.prediction import NON_FINITE, predict_sources
from core.errors import UserError
from core.models import loading

REPO = Path(__file__).resolve().parents[1]
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no fifos on this system")
needs_dev_zero = pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero on this system")


def run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env={**os.environ}, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def strict_json(line: str) -> dict:
    def refuse(const: str):
        raise AssertionError(f"not JSON: {const} in {line}")

    return json.loads(line, parse_constant=refuse)


def png_file(path: Path) -> Path:
    Image.fromarray(np.full((8, 8), 120, np.uint8)).save(path)
    return path


def tiny_model_file(path: Path, nan: bool = False) -> Path:
    import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(2, activation="softmax", name="out")(x)
    model = keras.Model(inputs, outputs)
    if nan:  # what --lr inf used to "train" into
        model.get_layer("out").kernel.assign(np.full((64, 2), np.nan, np.float32))
    loading.save_model(
        model, path, {"class_names": ["a", "b"], "output_kind": "softmax", "input_shape": [8, 8, 1]}
    )
    return path


# ------------------------------------------------------------------ user paths: fifo, /dev/zero, folders


@needs_fifo
@needs_dev_zero
def test_load_image_refuses_special_files_without_reading(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    code = (
        "import sys\nfrom core.data.images import load_image\nfrom core.errors import UserError\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n        load_image(p)\n        print('read', p)\n"
        "    except UserError as e:\n        print('refused', e)\n"
    )
    out = run(["-c", code, str(fifo), "/dev/zero", str(tmp_path)], timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("refused") for line in lines), out.stdout
    assert "not a regular file" in lines[0] and "not a regular file" in lines[1] and "folder" in lines[2]


def test_load_image_refuses_a_file_over_the_byte_cap(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"\0" * 4096)
    with pytest.raises(UserError, match="over the 1 KiB limit"):
        from core.data.images import load_image

        load_image(big, max_bytes=1024)


@needs_fifo
@needs_dev_zero
def test_import_refuses_fifo_and_dev_zero_and_skips_special_members(tmp_path):
    fifo = tmp_path / "data.zip"
    os.mkfifo(fifo)
    for source in (str(fifo), "/dev/zero"):
        out = run(["-m", "core", "import", source, "--name", "x"], timeout=30)
        assert out.returncode == 2 and "not a regular file" in out.stderr, out.stderr
    src = tmp_path / "src"
    for cls in ("a", "b"):
        (src / cls).mkdir(parents=True)
        png_file(src / cls / "one.png")
    os.mkfifo(src / "a" / "pipe.png")
    out = run(["-m", "core", "import", str(src), "--name", "ok"], timeout=60)
    assert out.returncode == 0, out.stderr
    assert "imported 2 images" in out.stdout and "skipped a/pipe.png: not a regular file" in out.stdout


@needs_fifo
@needs_dev_zero
def test_predict_cli_hostile_paths_and_non_finite_outputs_are_per_file_errors(tmp_path):
    model = tiny_model_file(tmp_path / "nan.keras", nan=True)
    good = png_file(tmp_path / "good.png")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    out = run(["-m", "core", "predict", "--model", str(model), str(good), str(fifo), "/dev/zero", str(tmp_path)],
              timeout=180)  # fmt: skip
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    rows = [strict_json(line) for line in out.stdout.strip().splitlines()]
    assert [r["file"] for r in rows] == [str(good), str(fifo), "/dev/zero", str(tmp_path)]
    assert rows[0]["error"] == NON_FINITE and "probabilities" not in rows[0]
    assert all("error" in r for r in rows)
    as_model = run(["-m", "core", "predict", "--model", str(fifo), str(good)], timeout=180)
    assert as_model.returncode == 2 and "not a regular file" in as_model.stderr, as_model.stderr


def test_non_finite_outputs_become_an_error_entry(tmp_path):
    lm = loading.describe(
        loading.load_model(tiny_model_file(tmp_path / "nan.keras", nan=True)), {}, "nan.keras"
    )
    ok = loading.describe(loading.load_model(tiny_model_file(tmp_path / "ok.keras")), {}, "ok.keras")
    img = png_file(tmp_path / "x.png")
    bad, good = predict_sources(lm, [("x", img)])[0], predict_sources(ok, [("x", img)])[0]
    assert bad.error == NON_FINITE and bad.probabilities is None
    assert good.error is None and abs(sum(good.probabilities.values()) - 1) < 1e-5
    json.dumps(bad.as_json(), allow_nan=False)


# ------------------------------------------------------------------ .keras files that declare too much


def _layer(cls: str, config: dict, build_shape: list | None = None) -> dict:
    layer = {"module": "keras.layers", "class_name": cls, "config": {"name": cls.lower(), **config},
             "registered_name": None}  # fmt: skip
    if build_shape is not None:
        layer["build_config"] = {"input_shape": build_shape}
    return layer


def _sequential(*layers: dict) -> dict:
    return {"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": list(layers)},
            "registered_name": None}  # fmt: skip


def _keras_zip(path: Path, config: dict | str, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        zf.writestr("config.json", config if isinstance(config, str) else json.dumps(config))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


INPUT = _layer("InputLayer", {"batch_shape": [None, 784], "dtype": "float32"})


def test_huge_declared_dense_layer_is_refused_before_building(tmp_path):
    # 784 x 70,000 = 55 M parameters (the attack used 300,000 units: 5.5 GB); the file is under 1 KB
    path = _keras_zip(tmp_path / "dense.keras", _sequential(INPUT, _layer("Dense", {"units": 70_000})))
    assert path.stat().st_size < 2000
    with pytest.raises(UserError, match=r"dense.keras declares 54,950,000 parameters"):
        loading.load_model(path)


def test_build_config_shape_counts_even_when_the_graph_says_otherwise(tmp_path):
    small = _layer("InputLayer", {"batch_shape": [None, 4], "dtype": "float32"})
    dense = _layer("Dense", {"units": 70_000}, build_shape=[None, 784])  # Keras builds from this shape
    path = _keras_zip(tmp_path / "liar.keras", _sequential(small, dense))
    with pytest.raises(UserError, match="declares 54,950,000 parameters"):
        loading.load_model(path)


def test_unknown_layer_with_a_huge_size_is_refused(tmp_path):
    odd = _layer("EinsumDense", {"output_shape": [200_000], "equation": "ab,bc->ac", "units": 200_000})
    path = _keras_zip(tmp_path / "odd.keras", _sequential(INPUT, odd))
    with pytest.raises(UserError, match="layer size over"):
        loading.load_model(path)


def test_oversized_config_json_is_refused_before_parsing(tmp_path):
    padded = json.dumps(_sequential(INPUT, _layer("Dense", {"units": 2}))) + " " * (
        loading.MAX_CONFIG_BYTES + 1
    )
    path = _keras_zip(tmp_path / "big_config.keras", padded)
    assert path.stat().st_size < 100_000  # 8 MB of spaces compress to a few KB
    with pytest.raises(UserError, match="big_config.keras: config.json inside declares"):
        loading.load_model(path)


def test_member_count_is_capped(tmp_path):
    extra = {f"assets/{i}.txt": b"x" for i in range(loading.MAX_MEMBERS)}
    path = _keras_zip(tmp_path / "many.keras", _sequential(INPUT, _layer("Dense", {"units": 2})), extra)
    with pytest.raises(UserError, match="entries inside"):
        loading.load_model(path)


def test_weights_file_declaring_huge_arrays_is_refused(tmp_path):
    import h5py

    h5 = tmp_path / "w.h5"
    with h5py.File(h5, "w") as f:  # 60 M floats declared, none written: a few KB on disk
        f.create_dataset("layers/dense/vars/0", shape=(60_000_000,), dtype="f4", chunks=(4096,))
    cfg = _sequential(INPUT, _layer("Dense", {"units": 2}))
    path = _keras_zip(tmp_path / "weights.keras", cfg, {"model.weights.h5": h5.read_bytes()})
    with pytest.raises(UserError, match="weights.keras holds 60,000,000 weights"):
        loading.load_model(path)


def test_our_own_models_still_load_and_count_exactly(tmp_path):
    import keras

    path = tiny_model_file(tmp_path / "ok.keras")
    cfg = json.loads(zipfile.ZipFile(path).read("config.json"))
    assert loading.declared_params(cfg) == (64 * 2 + 2, set())
    assert isinstance(loading.load_model(path), keras.Model)


def test_upload_errors_name_the_users_file(tmp_path):
    path = _keras_zip(tmp_path / "x.keras", _sequential(INPUT, _layer("Dense", {"units": 70_000})))
    with pytest.raises(UserError) as err:
        loading.load_uploaded(path.read_bytes(), "my holiday model.keras")
    assert "my holiday model.keras" in str(err.value) and "upload.keras" not in str(err.value)
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("config.json", "{not json")
    with pytest.raises(UserError) as err:
        loading.load_uploaded(broken.getvalue(), "mine.keras")
    assert "mine.keras" in str(err.value) and "upload.keras" not in str(err.value)
