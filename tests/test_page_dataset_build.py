"""AppTest of the Datasets page's Build section: new dataset, uploads, webcam shots, classes, the paged grid,
move/remove with undo, and one-line refusals; every change checked on disk and in the catalog."""

from __future__ import annotations

from core import paths
from core.data import datasets, editing
from tests.apptest_support import open_page, texts
from tests.test_dataset_editing import jpeg, png


def grid(at) -> list[str]:
    """Captions of the grid's thumbnails, in order."""
    return [c for i in at.image for c in i.captions if c.startswith("img")]


def _ok(at):
    at.run()
    assert not at.exception, at.exception
    return at


def _create(at, name: str, classes: str, layout: str = "flat"):
    at.text_input(key="build_new_name").input(name)
    at.text_input(key="build_new_classes").input(classes)
    at.radio(key="build_new_layout").set_value(layout)
    at.button(key="build_create").click()
    return _ok(at)


def test_build_a_dataset_from_uploads_and_webcam_shots():
    editing.new_dataset("other", ["x"])
    at = open_page()
    assert not at.exception
    assert not [w for w in at.selectbox if w.key == "build_dataset"]  # closed: its body does not even run
    at.session_state["build_expander"] = True  # what opening it does
    _ok(at)
    assert at.session_state["build_dataset"] == "other"
    datasets.delete_dataset("other")
    _ok(at)
    assert "fashion-mnist-sample is read-only" in texts(at)  # nothing editable now
    _create(at, "pets", "cat, dog")
    assert editing.tree("pets").classes == ["cat", "dog"]
    assert at.session_state["build_dataset"] == "pets" and at.session_state["build_class"] == "cat"

    at.file_uploader(key="build_files_0").set_value(
        [("a.png", png(10), "image/png"), ("b.png", png(20), "image/png"), ("c.jpg", jpeg(), "image/jpeg")]
    )
    _ok(at)
    at.button(key="build_files_button").click()
    _ok(at)
    assert editing.tree("pets").counts["cat"] == {"": 3}
    assert "Added 3 image(s) to cat." in texts(at)
    assert at.file_uploader(key="build_files_1").value in (None, [])  # emptied for the next batch
    # the first images made the dataset trainable: it is the active one now, with its counts
    assert at.session_state["active_dataset"] == "pets" and "1 classes · 3 images" in texts(at)

    at.segmented_control(key="build_class").set_value("dog")
    _ok(at)
    for i in range(2):  # two webcam shots into dog; the same shot seen again on a rerun is not added twice
        at.camera_input(key="build_camera").set_value((f"shot{i}.jpg", jpeg(24 + i), "image/jpeg"))
        _ok(at)
        _ok(at)
    assert editing.tree("pets").counts["dog"] == {"": 2}
    assert "Webcam shots this session: **dog** 2" in texts(at)
    at.file_uploader(key="build_folder_0").set_value(
        [("shots/x.png", png(30), "image/png"), ("shots/.DS_Store.png", png(1), "image/png"),
         ("shots/broken.png", b"nope", "image/png")]
    )  # fmt: skip
    _ok(at)
    at.button(key="build_folder_button").click()
    _ok(at)
    assert editing.images("pets", "dog") == ["dog/webcam-1.jpg", "dog/webcam.jpg", "dog/x.png"]
    assert "Skipped 2 file(s)." in texts(at)
    info = datasets.get_dataset("pets")
    assert info.class_totals() == {"cat": 3, "dog": 3}
    assert at.session_state["active_dataset"] == "pets" and "2 classes · 6 images" in texts(at)


def test_grid_pages_search_move_remove_and_undo():
    editing.new_dataset("many", ["a", "b"])
    editing.add_images("many", "a", [(f"img{i:02d}.png", png(i)) for i in range(30)])
    editing.add_images("many", "b", [("img00.png", png(99))])
    at = open_page(active_dataset="many", build_expander=True)
    assert at.session_state["build_dataset"] == "many"
    assert len(grid(at)) == 24  # one page of 24 thumbnails
    at.pagination(key="build_page").set_value(2)
    _ok(at)
    assert grid(at) == [f"img{i}.png" for i in range(24, 30)]
    at.text_input(key="build_search").input("img2")
    _ok(at)
    assert sorted(grid(at)) == [f"img{i}.png" for i in range(20, 30)]  # the page falls back to 1 of 1

    at.selectbox(key="build_to_a/img21.png").set_value("b")
    at.button(key="build_mv_a/img21.png").click()
    _ok(at)
    assert "b/img21.png" in editing.images("many", "b") and "a/img21.png" not in editing.images("many", "a")
    at.button(key="build_rm_a/img22.png").click()
    _ok(at)
    assert "a/img22.png" not in editing.images("many", "a")
    assert "Moved img22.png to the trash." in texts(at)
    undo = [b for b in at.button if (b.key or "").startswith("build_undo_many_")]
    undo[0].click()
    _ok(at)
    assert "a/img22.png" in editing.images("many", "a")
    assert datasets.get_dataset("many").class_totals() == {"a": 29, "b": 2}


def test_classes_rename_delete_undo_and_refusals_are_one_line():
    editing.new_dataset("d", ["a", "b"], layout="splits")
    editing.add_images("d", "a", [("x.png", png())])
    at = open_page(active_dataset="d", build_expander=True)
    at.text_input(key="build_add_class").input("c")
    at.button(key="build_add_class_button").click()
    _ok(at)
    assert editing.tree("d").classes == ["a", "b", "c"] and at.session_state["build_class"] == "c"
    at.text_input(key="build_add_class").input("evil/x")
    at.button(key="build_add_class_button").click()
    _ok(at)
    assert any("class name must not contain" in e.value for e in at.error)
    assert not (paths.data_dir() / "d" / "train" / "evil").exists()

    at.segmented_control(key="build_class").set_value("a")
    _ok(at)
    at.text_input(key="build_rename_class").input("alpha")
    at.button(key="build_rename_class_button").click()
    _ok(at)
    assert editing.tree("d").classes == ["alpha", "b", "c"]
    at.button(key="build_delete_class").click()
    _ok(at)
    assert editing.tree("d").classes == ["b", "c"] and "Moved class alpha to the trash." in texts(at)
    [b for b in at.button if (b.key or "").startswith("build_undo_d_")][0].click()
    _ok(at)
    assert editing.tree("d").counts["alpha"]["train"] == 1

    # a split dataset asks which split; a test image lands in test/
    at.segmented_control(key="build_class").set_value("b")
    at.radio(key="build_split").set_value("test")
    _ok(at)
    at.file_uploader(key="build_files_0").set_value(("t.png", png(5), "image/png"))
    _ok(at)
    at.button(key="build_files_button").click()
    _ok(at)
    assert editing.images("d", "b") == ["test/b/t.png"]

    _create(at, "d", "x, y")  # clash
    assert any("already exists" in e.value for e in at.error)
    _create(at, "new", "x, train")
    assert any("split folder" in e.value for e in at.error) and "new" not in editing.editable_datasets()

    at.text_input(key="build_rename_dataset").input("renamed")
    at.button(key="build_rename_dataset_button").click()
    _ok(at)
    assert "renamed" in editing.editable_datasets() and at.session_state["build_dataset"] == "renamed"
    at.button(key="build_delete_dataset").click()
    _ok(at)
    assert (
        "renamed" not in editing.editable_datasets()
        and "Moved dataset **renamed** to the trash." in texts(at)
    )
