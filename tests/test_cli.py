"""The CLI as a person runs it: real subprocesses, one-line errors, non-zero exits, no tracebacks."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers import make_image_folder

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env={**os.environ},
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def assert_one_line_error(out: subprocess.CompletedProcess, needle: str) -> None:
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], out.stderr


def test_datasets_lists_the_catalog_with_counts():
    out = cli("datasets")
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first.startswith("fashion-mnist-sample") and "10 classes" in first and "train 6000" in first
    assert "digits" in out.stdout


def test_import_zip_and_folder_report_skips(tmp_path, isolated_dirs):
    src = make_image_folder(tmp_path / "src", per_class=3)
    (src / "circle" / "notes.txt").write_text("not an image")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in src.rglob("*"):
            if p.is_file():
                zf.write(p, Path("wrapped") / p.relative_to(src))
        zf.writestr("../evil.png", b"x")
    zpath = tmp_path / "shapes.zip"
    zpath.write_bytes(buf.getvalue())
    out = cli("import", str(zpath), "--name", "shapes")
    assert out.returncode == 0, out.stderr
    assert "imported 9 images" in out.stdout and "skipped" in out.stdout and "evil.png" in out.stdout
    assert (isolated_dirs[0] / "shapes" / "circle").is_dir()
    folder = cli("import", str(src), "--name", "shapes2")
    assert folder.returncode == 0 and "imported 9 images" in folder.stdout
    assert "shapes2" in cli("datasets").stdout


def test_errors_are_one_line_with_non_zero_exit(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    assert_one_line_error(cli("import", str(bad), "--name", "x"), "not a zip")
    assert_one_line_error(cli("import", str(tmp_path / "missing.zip"), "--name", "x"), "")
    assert_one_line_error(cli("predict", "--run", "no-such-run", "x.png"), "no run")
    assert_one_line_error(cli("evaluate", "--run", "../etc"), "not a run id")
    assert_one_line_error(cli("export", "--run", "nope", "--format", "keras"), "no run")
    usage = cli("train", "--epochs", "banana")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_predict_and_export_on_a_trained_run(tmp_path):
    from tests.helpers import make_dataset, train_tiny_run

    make_dataset("p", per_class=6)
    run = train_tiny_run("p")
    good = next((tmp_path / "data" / "p" / "square").glob("*.png"))
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    out = cli("predict", "--run", run.run_id, str(good), str(bad))
    assert out.returncode == 1 and "Traceback" not in out.stderr  # one image failed
    first, second = (json.loads(line) for line in out.stdout.strip().splitlines())
    assert first["file"] == str(good) and set(first["probabilities"]) == {"circle", "square", "stripes"}
    assert abs(sum(first["probabilities"].values()) - 1) < 1e-5
    assert second["file"] == str(bad) and "not an image" in second["error"]
    ok = cli("predict", "--model", str(run.model_path), str(good))
    assert ok.returncode == 0 and json.loads(ok.stdout)["probabilities"] == first["probabilities"]
    dest = tmp_path / "m.tflite"
    exp = cli("export", "--run", run.run_id, "--format", "tflite", "--out", str(dest))
    assert exp.returncode == 0, exp.stderr
    assert exp.stdout.strip() == str(dest) and dest.stat().st_size > 1000


def test_train_run_with_another_strategy_is_refused(isolated_dirs):
    from core.training import trainer
    from tests.helpers import make_dataset

    make_dataset("s", per_class=3)
    run = trainer.start_run(trainer.TrainRequest(dataset="s", epochs=1))
    assert_one_line_error(
        cli("train", "--run", run.run_id, "--strategy", "mirrored"), "created for --strategy default"
    )


def test_download_offline_says_unreachable_and_where_to_put_the_file(tmp_path):
    env = {**os.environ, "KERAS_HOME": str(tmp_path), "CONVNET_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "core", "download", "mnist"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert_one_line_error(out, "network is unreachable")
    assert str(tmp_path / "datasets" / "mnist.npz") in out.stderr and "mnist.npz" in out.stderr
    assert out.returncode == 2
