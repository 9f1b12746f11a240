"""AppTest of the Datasets page: counts, samples, quality, augmentation preview, zip import with bad input."""

from __future__ import annotations

import io
import zipfile

from tests.apptest_support import open_page, texts
from tests.helpers import make_image_folder


def test_datasets_page_renders_the_embedded_sample():
    at = open_page()
    assert not at.exception
    shown = texts(at)
    assert "Fashion-MNIST sample (embedded)" in shown and "10 classes" in shown and "7,000 images" in shown
    assert "No unreadable or stray files." in shown
    assert at.button(key="reshuffle") is not None
    assert len(at.image) >= 11  # a sample row per class plus the augmentation grid
    at.button(key="reshuffle").click().run()
    assert not at.exception
    at.selectbox(key="aug_preset").set_value("cats-dogs-2").run()
    assert not at.exception


def _zip_bytes(tmp_path, build) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        build(zf)
    return buf.getvalue()


def test_import_zip_then_bad_zips_give_one_line_errors(tmp_path):
    src = make_image_folder(tmp_path / "src", per_class=3)
    good = _zip_bytes(tmp_path, lambda zf: [zf.write(p, p.relative_to(src)) for p in src.rglob("*.png")])
    at = open_page()
    at.file_uploader(key="import_zip").set_value(("shapes.zip", good, "application/zip")).run()
    at.text_input(key="import_name").input("shapes").run()
    at.button(key="import_button").click().run()
    assert not at.exception
    assert at.session_state["active_dataset"] == "shapes"
    assert "Imported 9 images into shapes." in texts(at) and "3 classes · 9 images" in texts(at)

    at.file_uploader(key="import_zip").set_value(("bad.zip", b"this is not a zip", "application/zip")).run()
    at.text_input(key="import_name").input("bad").run()
    at.button(key="import_button").click().run()
    assert not at.exception
    assert any("not a zip" in e.value for e in at.error)

    one_class = _zip_bytes(tmp_path, lambda zf: zf.write(next(src.rglob("*.png")), "only/x.png"))
    at.file_uploader(key="import_zip").set_value(("one.zip", one_class, "application/zip")).run()
    at.text_input(key="import_name").input("one").run()
    at.button(key="import_button").click().run()
    assert not at.exception and any("two classes" in e.value for e in at.error)


def test_not_downloaded_keras_dataset_says_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    at = open_page(active_dataset="cifar10")
    assert not at.exception
    assert "cifar-10-batches-py is missing" in texts(at)
    assert at.button(key="download") is not None
