"""AppTest of the Datasets page: counts, samples, quality, augmentation preview, zip import with bad input."""

from __future__ import annotations

import base64
import io
import re
import zipfile

from PIL import Image

from core.data import datasets
from core.errors import UserError
from core.training import runs
from tests.apptest_support import open_page, texts
from tests.helpers import make_dataset, make_image_folder

DATA_URI = re.compile(r"\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def sample_strips(at) -> list[Image.Image]:
    """The sample strips the page sent inside its markdown, decoded."""
    found = [m for md in at.markdown for m in DATA_URI.findall(md.value)]
    return [Image.open(io.BytesIO(base64.b64decode(b))) for b in found]


def test_datasets_page_renders_the_embedded_sample():
    at = open_page()
    assert not at.exception
    shown = texts(at)
    assert "Fashion-MNIST sample (embedded)" in shown and "10 classes" in shown and "7,000 images" in shown
    assert "No unreadable or stray files." in shown
    assert at.button(key="reshuffle") is not None
    strips = sample_strips(at)
    assert (
        len(strips) == 10 and not at.image
    )  # a strip per class; the augmentation preview waits to be asked for
    assert all(
        s.mode == "RGBA" and s.height == 72 and s.width == 8 * 72 + 7 * 6 for s in strips
    )  # 8 per class
    assert "**Ankle\\_boot** · 700 images" in texts(at)
    assert not [s for s in at.selectbox if s.key == "aug_preset"]
    at.button(key="reshuffle").click().run()
    assert not at.exception
    reshuffled = sample_strips(at)
    assert len(reshuffled) == 10 and [s.tobytes() for s in reshuffled] != [s.tobytes() for s in strips]
    at.toggle(key="aug_show").set_value(True).run()
    assert not at.exception and len(at.image) == 1  # the augmentation grid
    at.selectbox(key="aug_preset").set_value("cats-dogs-2").run()
    assert not at.exception
    assert not [
        b for b in at.button if (b.key or "").startswith("confirm_delete_dataset")
    ]  # read-only sample


def _zip_bytes(tmp_path, build) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        build(zf)
    return buf.getvalue()


def test_import_zip_then_bad_zips_give_one_line_errors(tmp_path):
    src = make_image_folder(tmp_path / "src", per_class=3)
    good = _zip_bytes(tmp_path, lambda zf: [zf.write(p, p.relative_to(src)) for p in src.rglob("*.png")])
    at = open_page()
    assert not at.get("file_uploader") and not at.text_input  # closed: a first visit loads no uploader code
    at.session_state["import_expander"] = True  # what opening it does
    at.run()
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


def test_delete_an_imported_dataset_to_the_trash_and_undo():
    make_dataset("tiny", per_class=3)
    at = open_page(active_dataset="tiny")
    assert "3 classes · 9 images" in texts(at)
    assert "cannot be undone" not in texts(at)
    at.button(key="confirm_delete_dataset_tiny").click().run()
    assert not at.exception
    try:
        datasets.get_dataset("tiny")
        raise AssertionError("the dataset is still there")
    except UserError:
        pass
    assert any((datasets.data_dir() / ".trash").iterdir())
    assert (
        at.session_state["active_dataset"] != "tiny"
        and "tiny" not in at.selectbox(key="active_dataset").options
    )
    (undo,) = [b for b in at.button if b.label == "Undo"]
    undo.click().run()
    assert not at.exception
    assert datasets.get_dataset("tiny").total == 9
    assert at.session_state["active_dataset"] == "tiny" and "3 classes · 9 images" in texts(at)
    assert not [b for b in at.button if b.label == "Undo"]


def test_import_a_folder_upload_with_hostile_paths_skipped(tmp_path):
    src = make_image_folder(tmp_path / "pets", per_class=3)
    files = [(str(p.relative_to(tmp_path)), p.read_bytes(), "image/png") for p in sorted(src.rglob("*.png"))]
    files += [("pets/../escape.png", files[0][1], "image/png"), ("/etc/evil.png", files[0][1], "image/png")]
    at = open_page(active_dataset="digits", import_expander=True)
    assert at.file_uploader(key="import_folder").accept_directory
    at.file_uploader(key="import_folder").set_value(files).run()
    at.button(key="import_button").click().run()
    assert not at.exception, at.exception
    assert at.session_state["active_dataset"] == "pets"  # named after the uploaded folder
    assert "Imported 9 images into pets." in texts(at) and "3 classes · 9 images" in texts(at)
    skipped = at.dataframe[0].value
    assert set(skipped["skipped"]) >= {"pets/../escape.png", "/etc/evil.png"}
    assert (
        not (datasets.data_dir() / "escape.png").exists()
        and not (datasets.data_dir().parent / "escape.png").exists()
    )


def test_start_here_on_the_datasets_page_until_the_first_run_exists():
    at = open_page(active_dataset="digits")
    assert "Start here" in texts(at)
    links = [str(e.proto.label) for e in at.get("page_link")]
    assert [s[:2] for s in links if s[:1].isdigit()] == ["1.", "2.", "3."], links
    run = runs.create_run({"preset": "fast", "dataset": "digits", "epochs": 1})
    runs.update_status(run.path, state="completed")
    at.run()
    assert not at.exception and "Start here" not in texts(at)


def test_names_shown_in_markdown_are_escaped():
    from pages._shared import md_text

    assert md_text("T-shirt_top") == "T-shirt\\_top"  # a hyphen inside a name starts nothing
    assert md_text("- a") == "\\- a" and md_text("12. b") == "12\\. b" and md_text("# c") == "\\# c"
    assert md_text("two\nlines") == "two lines"
    assert md_text("[a](b) *c* :red[d] $x$") == "\\[a\\](b) \\*c\\* \\:red\\[d\\] \\$x\\$"
    assert md_text("plain words 123") == "plain words 123"


def test_a_dataset_with_many_classes_sends_its_strips_ten_to_an_element():
    classes = [f"class [{i}]" for i in range(12)]  # brackets would open a link if the name were not escaped
    name = make_dataset("many_sets_", classes=classes, per_class=3)  # `_sets_` would be emphasis
    at = open_page(active_dataset=name)
    assert not at.exception
    assert any(md.value.startswith("**many\\_sets\\_** · 12 classes") for md in at.markdown), texts(at)
    with_strips = [md.value for md in at.markdown if "data:image/png;base64," in md.value]
    assert [v.count("data:image/png;base64,") for v in with_strips] == [10, 2]
    assert "**class \\[0\\]** · 3 images" in with_strips[0]
    assert all(s.height == 72 and s.width == 3 * 72 + 2 * 6 for s in sample_strips(at))  # 3 per class
