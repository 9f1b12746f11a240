"""A battery of hostile command lines: each must end with one `error:` line, a non-zero exit, no traceback, and
nothing created, changed or removed in the data and runs folders (the Trust issue's "validate, then act")."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from core.__main__ import main
from tests.helpers import module_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return module_run(tmp_path_factory, "hostile")


def _snapshot(*roots: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under the roots with (size, mtime_ns, mode): any create, change or removal shows."""
    snap = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            st = p.lstat()
            snap[str(p)] = (st.st_size if p.is_file() else 0, st.st_mtime_ns, st.st_mode)
    return snap


def _bomb_keras(path: Path, config: dict | None = None, config_bytes: bytes | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        zf.writestr("config.json", config_bytes if config_bytes is not None else json.dumps(config))
    return path


def _huge_dense_config() -> dict:
    """A 1.6 KB model that declares a 784 x 300,000 Dense layer (235 M parameters, ~1 GB of float32)."""
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {
            "name": "bomb",
            "layers": [
                {"module": "keras.layers", "class_name": "InputLayer",
                 "config": {"batch_shape": [None, 28, 28, 1], "dtype": "float32", "name": "in"}},
                {"module": "keras.layers", "class_name": "Flatten", "config": {"name": "flat"}},
                {"module": "keras.layers", "class_name": "Dense",
                 "config": {"name": "big", "units": 300_000, "activation": "softmax"}},
            ],
        },
    }  # fmt: skip


def _cases(ctx: dict) -> dict[str, list[str]]:
    run, d, tmp = ctx["run"], ctx["dataset"], ctx["tmp"]
    train = ["train", "--dataset", d, "--quiet"]
    return {
        "epochs 0": [*train, "--epochs", "0"],
        "epochs -1": [*train, "--epochs", "-1"],
        "batch 0": [*train, "--batch-size", "0"],
        "batch -5": [*train, "--batch-size", "-5"],
        "lr 0": [*train, "--lr", "0"],
        "lr -1": [*train, "--lr", "-1"],
        "lr inf": [*train, "--lr", "inf"],
        "lr nan": [*train, "--lr", "nan"],
        "lr 1e9": [*train, "--lr", "1e9"],
        "seed -1": [*train, "--seed", "-1"],
        "seed 2**70": [*train, "--seed", str(2**70)],
        "limit 0": [*train, "--limit", "0"],
        "limit -1": [*train, "--limit", "-1"],
        "val split 1": [*train, "--val-split", "1"],
        "val split nan": [*train, "--val-split", "nan"],
        "image size 0x0": [*train, "--image-size", "0", "0"],
        "image size 5000": [*train, "--image-size", "5000", "5000"],
        "image size 2x2 (below the model's minimum)": [*train, "--image-size", "2", "2"],
        "target accuracy 2": [*train, "--target-accuracy", "2"],
        "early stopping -1": [*train, "--early-stopping", "-1"],
        "weights /dev/zero": ["train", "--dataset", d, "--preset", "mobilenetv2-transfer", "--weights", "/dev/zero"],
        "weights missing": ["train", "--dataset", d, "--preset", "mobilenetv2-transfer", "--weights", str(tmp / "no.h5")],
        "weights folder": ["train", "--dataset", d, "--preset", "mobilenetv2-transfer", "--weights", str(tmp)],
        "unknown dataset": ["train", "--dataset", "no-such-dataset"],
        "unknown preset": [*train, "--preset", "no-such-preset"],
        "train finished run": ["train", "--run", run],
        "train unknown run": ["train", "--run", "no-such-run"],
        "run id with ..": ["train", "--run", "../etc"],
        "stop unknown run": ["stop", "no-such-run"],
        "stop path": ["stop", "../../tmp"],
        "restore unknown run": ["runs", "--restore", "no-such-run"],
        "predict model /dev/zero": ["predict", "--model", "/dev/zero", str(tmp / "x.png")],
        "predict model folder": ["predict", "--model", str(tmp), str(tmp / "x.png")],
        "predict model text file": ["predict", "--model", str(ctx["text"]), str(tmp / "x.png")],
        "predict model huge Dense": ["predict", "--model", str(ctx["dense_bomb"]), str(tmp / "x.png")],
        "predict model 64 MB config": ["predict", "--model", str(ctx["config_bomb"]), str(tmp / "x.png")],
        "import /dev/zero": ["import", "/dev/zero", "--name", "z"],
        "import missing": ["import", str(tmp / "missing.zip"), "--name", "z"],
        "import reserved name mnist": ["import", str(ctx["good_zip"]), "--name", "mnist"],
        "import name with ..": ["import", str(ctx["good_zip"]), "--name", "../x"],
        "import over an existing dataset": ["import", str(ctx["good_zip"]), "--name", d],
        "export onto /dev/null": ["export", "--run", run, "--format", "keras", "--out", "/dev/null"],
        "export onto an existing file": ["export", "--run", run, "--format", "keras", "--out", str(ctx["text"])],
        "export unknown run": ["export", "--run", "no-such-run", "--format", "keras"],
        "evaluate unknown run": ["evaluate", "--run", "no-such-run"],
        "evaluate limit -1": ["evaluate", "--run", run, "--limit", "-1"],
        "unknown option": ["train", "--dataset", d, "--bogus"],
        "epochs banana": ["train", "--dataset", d, "--epochs", "banana"],
        "unknown format": ["export", "--run", run, "--format", "exe"],
        "no command": [],
    }  # fmt: skip


def _context(trained, tmp: Path) -> dict:
    root, dataset, run = trained
    text = tmp / "notes.txt"
    text.write_text("hello")
    good_zip = tmp / "good.zip"
    with zipfile.ZipFile(good_zip, "w") as zf:
        for p in (root / "data" / dataset).rglob("*.png"):
            zf.write(p, p.relative_to(root / "data" / dataset))
    return {
        "run": run.run_id, "dataset": dataset, "tmp": tmp, "text": text, "good_zip": good_zip,
        "dense_bomb": _bomb_keras(tmp / "dense.keras", _huge_dense_config()),
        "config_bomb": _bomb_keras(tmp / "config.keras", config_bytes=b" " * (64 << 20)),
    }  # fmt: skip


CASE_NAMES = list(_cases({"run": "r", "dataset": "d", "tmp": Path("t"), "text": "", "good_zip": "",
                          "dense_bomb": "", "config_bomb": ""}))  # fmt: skip


@pytest.mark.parametrize("case", CASE_NAMES)
def test_hostile_command_line_is_refused_in_one_line(case, trained, tmp_path, monkeypatch, capsys):
    if not Path("/dev/zero").exists() and "/dev/zero" in case:
        pytest.skip("no /dev/zero on this system")
    root = trained[0]
    monkeypatch.setenv("CONVNET_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("CONVNET_RUNS_DIR", str(root / "runs"))
    monkeypatch.setenv("CONVNET_NATIVE_LOGS", "1")  # keep fd 2 as pytest set it up
    ctx = _context(trained, tmp_path)
    argv = _cases(ctx)[case]
    before = _snapshot(root / "data", root / "runs")
    cwd_before = sorted(os.listdir(tmp_path))
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out = capsys.readouterr()
    assert code not in (0, None), f"{case}: exit 0\n{out.out}\n{out.err}"
    assert "Traceback" not in out.err + out.out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], f"{case}: {out.err!r}"
    assert _snapshot(root / "data", root / "runs") == before, f"{case} changed the data or runs folder"
    assert sorted(os.listdir(tmp_path)) == cwd_before, f"{case} created files next to its inputs"
