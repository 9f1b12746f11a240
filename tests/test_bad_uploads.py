"""Every upload widget given a non-image, an empty file and a huge file answers with a one-line message, and the
page keeps working (a good upload right after still works)."""

from __future__ import annotations

import io
import os
import zipfile

import pytest

from tests import helpers
from tests.apptest_support import open_page
from tests.test_images import crafted_png

HUGE_IMAGE = crafted_png(40000, 40000)  # 1.6 gigapixels claimed in a few hundred bytes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return helpers.module_run(tmp_path_factory, "bad_uploads")


@pytest.fixture
def env(trained, monkeypatch):
    root, name, run = trained
    monkeypatch.setenv("CONVNET_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("CONVNET_RUNS_DIR", str(root / "runs"))
    return root, name, run


def _good_png(env) -> bytes:
    root, name, _ = env
    return (root / "data" / name / "circle" / "circle_000.png").read_bytes()


BAD_IMAGES = [
    ("notes.png", b"this is plain text, not a picture", "not an image"),
    ("empty.png", b"", "empty"),
    ("huge.png", HUGE_IMAGE, "image too large"),
    (
        "big.png",
        b"\x89PNG\r\n\x1a\n" + bytes(65 << 20),
        "big.png is larger than 64 MB; refused",
    ),  # past the widget
]


@pytest.mark.parametrize("page,key", [("pages/classify.py", "clf_files"), ("pages/inspect.py", "ins_files")])
def test_image_uploaders(env, page, key):
    _, name, run = env
    at = open_page(page, active_dataset=name, active_run=run.run_id)
    for fname, data, needle in BAD_IMAGES:
        at.file_uploader(key=key).set_value((fname, data, "image/png")).run()
        assert not at.exception, (fname, at.exception)
        errors = [e.value for e in at.error]
        assert any(needle in e and "\n" not in e for e in errors), (fname, errors)
    at.file_uploader(key=key).set_value(("good.png", _good_png(env), "image/png")).run()
    assert not at.exception and not at.error
    assert at.get("plotly_chart") or len(at.image) >= 2  # probabilities (Classify) or maps (Inspect) shown


def test_model_uploader(env):
    _, name, run = env
    at = open_page("pages/classify.py", active_dataset=name, active_run=run.run_id)
    at.radio(key="clf_model_source").set_value(at.radio(key="clf_model_source").options[1]).run()
    cases = [("notes.keras", b"plain text", "not a .keras"), ("empty.keras", b"", "empty"),
             ("huge.keras", os.urandom(8 * 2**20), "not a .keras")]  # fmt: skip
    for fname, data, needle in cases:
        at.file_uploader(key="clf_model_file").set_value((fname, data, "application/octet-stream")).run()
        assert not at.exception, (fname, at.exception)
        assert any(needle in e.value for e in at.error), (fname, [e.value for e in at.error])
    good = run.model_path.read_bytes()
    at.file_uploader(key="clf_model_file").set_value(("model.keras", good, "application/octet-stream")).run()
    at.file_uploader(key="clf_files").set_value(("good.png", _good_png(env), "image/png")).run()
    assert not at.exception and not at.error and at.get("plotly_chart")


def _zip_bomb() -> bytes:
    """Two class folders, each with one member that inflates to 80 MB of zeros (past the 64 MB per-file cap)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for c in ("a", "b"):
            with zf.open(f"{c}/big.png", "w", force_zip64=True) as fh:
                chunk = bytes(2**20)
                for _ in range(80):
                    fh.write(chunk)
    return buf.getvalue()


def test_dataset_zip_uploader(env, tmp_path):
    _, name, _ = env
    at = open_page(active_dataset=name, import_expander=True)
    cases = [("notes.zip", b"plain text", "not a zip"), ("empty.zip", b"", "zip"),
             ("huge.zip", _zip_bomb(), "two classes")]  # fmt: skip
    for fname, data, needle in cases:
        at.file_uploader(key="import_zip").set_value((fname, data, "application/zip")).run()
        at.text_input(key="import_name").input(fname.split(".")[0]).run()
        at.button(key="import_button").click().run()
        assert not at.exception, (fname, at.exception)
        assert any(needle in e.value for e in at.error), (fname, [e.value for e in at.error])
    root, _, _ = env
    assert sorted(p.name for p in (root / "data").iterdir()) == [name], (
        "a failed import left something behind"
    )
