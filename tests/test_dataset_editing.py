"""Dataset editing on real files: new datasets, classes, images added/moved/removed, hostile names, undo."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from core import paths
from core.data import datasets, editing
from core.errors import UserError
from tests.helpers import make_dataset


def png(value: int = 200, size: int = 12, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    a = np.full((size, size, 3) if mode == "RGB" else (size, size), value, np.uint8)
    Image.fromarray(a, mode).save(buf, "PNG")
    return buf.getvalue()


def jpeg(size: int = 20) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def listing(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if ".trash" not in p.parts)


def test_new_flat_dataset_add_images_and_the_catalog_reads_it():
    root = editing.new_dataset("pets", ["cat", "dog"])
    assert root == paths.data_dir() / "pets" and listing(root) == ["cat", "dog"]
    assert not [p for p in paths.data_dir().iterdir() if p.name.startswith(".new-")]
    rep = editing.add_images("pets", "cat", [("a.png", png()), ("photo.jpg", jpeg()), ("b.PNG", png(10))])
    assert rep.added == ["cat/a.png", "cat/photo.jpg", "cat/b.png"] and rep.skipped == []
    editing.add_images("pets", "dog", [("x.png", png(50)), ("y.png", png(60))])
    info = datasets.get_dataset("pets")
    assert info.layout == "flat" and info.class_names == ["cat", "dog"]
    assert info.class_totals() == {"cat": 3, "dog": 2}
    # re-encoded as the importer does: the JPEG photo stays JPEG, the stored PNG decodes to the same pixels
    assert (root / "cat" / "photo.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert np.asarray(Image.open(root / "dog" / "x.png")).max() == 50
    t = editing.tree("pets")
    assert t.layout == "flat" and t.counts == {"cat": {"": 3}, "dog": {"": 2}}


def test_splits_layout_adds_into_a_split_and_the_catalog_sees_a_split_dataset():
    root = editing.new_dataset("sp", ["a", "b"], layout="splits")
    assert listing(root) == sorted(
        f"{s}{c}" for s in ("train", "validation", "test") for c in ("", "/a", "/b")
    )
    editing.add_images("sp", "a", [("1.png", png(1)), ("2.png", png(2))])  # default: train
    editing.add_images("sp", "b", [("1.png", png(3))], split="test")
    editing.add_images("sp", "b", [("1.png", png(4))], split="val")  # an alias of validation
    info = datasets.get_dataset("sp")
    assert info.layout == "split" and info.counts["train"] == {"a": 2, "b": 0}
    assert info.counts["test"]["b"] == 1 and info.counts["val"]["b"] == 1
    with pytest.raises(UserError, match="train, validation or test"):
        editing.add_images("sp", "a", [("1.png", png())], split="holdout")
    editing.new_dataset("flat1", ["a"])
    with pytest.raises(UserError, match="without a split"):
        editing.add_images("flat1", "a", [("1.png", png())], split="train")


def test_bad_files_are_skipped_with_reasons_and_names_are_cleaned():
    editing.new_dataset("d", ["c"])
    files = [
        ("../../evil.png", png()),  # traversal: skipped like a zip member would be
        ("/abs/x.png", png()),
        (".hidden.png", png()),
        ("notes.txt", b"hello"),
        ("broken.png", b"\x89PNG\r\n\x1a\nnot really"),
        ("sub/dir/ok one.png", png(7)),  # a folder upload's relative path: the file name is kept, cleaned
        ("ok one.png", png(8)),  # clash with the cleaned name above: suffixed
    ]
    rep = editing.add_images("d", "c", files)
    assert rep.added == ["c/ok_one.png", "c/ok_one-1.png"]
    reasons = dict(rep.skipped)
    assert "outside" in reasons["../../evil.png"] and "absolute" in reasons["/abs/x.png"]
    assert "hidden" in reasons[".hidden.png"] and "not an image file type" in reasons["notes.txt"]
    assert "corrupt" in reasons["broken.png"] or "not an image" in reasons["broken.png"]
    root = paths.data_dir() / "d"
    assert listing(root) == ["c", "c/ok_one-1.png", "c/ok_one.png"]  # no temp files left
    assert not (paths.data_dir().parent / "evil.png").exists()
    # caps are checked before anything is written
    with pytest.raises(UserError, match="more than 2 files"):
        editing.add_images("d", "c", [("a.png", png())] * 3, max_files=2)
    with pytest.raises(UserError, match="more than"):
        editing.add_images("d", "c", [("a.png", png())], max_total_bytes=10)
    rep = editing.add_images("d", "c", [("big.png", png(size=64))], max_file_bytes=50)
    assert rep.added == [] and "larger than" in rep.skipped[0][1]
    assert listing(root) == ["c", "c/ok_one-1.png", "c/ok_one.png"]


def test_an_existing_file_is_never_replaced():
    editing.new_dataset("d", ["c"])
    target = paths.data_dir() / "d" / "c" / "a.png"
    target.write_bytes(png(1))
    before = target.read_bytes()
    rep = editing.add_images("d", "c", [("a.png", png(99)), ("A.png", png(98))])
    assert rep.added == ["c/a-1.png", "c/A-2.png"]  # case-insensitive clash counts too
    assert target.read_bytes() == before


@pytest.mark.parametrize("bad", ["..", ".", ".hidden", "a/b", "../x", "a\\b", "", "x" * 101, "with space"])
def test_hostile_dataset_names_are_refused_before_anything_is_created(bad):
    before = sorted(os.listdir(paths.data_dir()))
    with pytest.raises(UserError) as err:
        editing.new_dataset(bad, ["a"])
    assert "\n" not in str(err.value)
    assert sorted(os.listdir(paths.data_dir())) == before


@pytest.mark.parametrize("bad", ["..", ".", ".git", "a/b", "a\\b", "", " cat", "cat ", "train", "Validation",
                                 "test", "x" * 101, "nul\x00", "ends.", "__MACOSX"])  # fmt: skip
def test_hostile_class_names_are_refused_before_anything_is_created(bad):
    before = sorted(os.listdir(paths.data_dir()))
    with pytest.raises(UserError):
        editing.new_dataset("ok", ["fine", bad])
    assert sorted(os.listdir(paths.data_dir())) == before
    editing.new_dataset("ok", ["fine"])
    with pytest.raises(UserError):
        editing.add_class("ok", bad)
    with pytest.raises(UserError):
        editing.rename_class("ok", "fine", bad)
    assert listing(paths.data_dir() / "ok") == ["fine"]


def test_the_embedded_sample_and_built_ins_are_read_only():
    sample = paths.EMBEDDED_DATASET
    calls = [
        lambda: editing.add_class(sample, "new"),
        lambda: editing.rename_class(sample, "Bag", "Purse"),
        lambda: editing.delete_class(sample, "Bag"),
        lambda: editing.add_images(sample, "Bag", [("a.png", png())]),
        lambda: editing.move_image(sample, "train/Bag/x.png", "Coat"),
        lambda: editing.remove_image(sample, "train/Bag/x.png"),
        lambda: editing.rename_dataset(sample, "mine"),
        lambda: editing.rename_dataset("FASHION-mnist-SAMPLE", "mine"),
    ]
    before = listing(paths.embedded_dataset_dir())
    for call in calls:
        with pytest.raises(UserError, match="read-only") as err:
            call()
        assert "\n" not in str(err.value)
    assert listing(paths.embedded_dataset_dir()) == before
    with pytest.raises(UserError, match="read-only"):
        editing.add_class("mnist", "x")
    with pytest.raises(UserError, match="built-in"):
        editing.new_dataset(sample, ["a"])
    assert sample not in editing.editable_datasets()


def test_name_clashes_are_refused():
    editing.new_dataset("pets", ["cat", "dog"])
    with pytest.raises(UserError, match="already exists"):
        editing.new_dataset("Pets", ["x"])
    with pytest.raises(UserError, match="same name"):
        editing.new_dataset("other", ["a", "A"])
    with pytest.raises(UserError, match="already has a class"):
        editing.add_class("pets", "CAT")
    with pytest.raises(UserError, match="already has a class"):
        editing.rename_class("pets", "cat", "Dog")
    editing.new_dataset("zoo", [])
    with pytest.raises(UserError, match="already exists"):
        editing.rename_dataset("zoo", "PETS")
    editing.rename_class("pets", "cat", "Cat")  # a change of case only is a rename
    assert editing.tree("pets").classes == ["Cat", "dog"]


def test_classes_add_rename_delete_and_undo_across_splits():
    editing.new_dataset("sp", ["a", "b"], layout="splits")
    editing.add_images("sp", "a", [("1.png", png(1))])
    editing.add_images("sp", "a", [("2.png", png(2))], split="test")
    editing.add_class("sp", "c")
    assert editing.tree("sp").counts["c"] == {"train": 0, "validation": 0, "test": 0}
    editing.rename_class("sp", "a", "alpha")
    t = editing.tree("sp")
    assert t.classes == ["alpha", "b", "c"] and t.counts["alpha"] == {"train": 1, "validation": 0, "test": 1}
    entry = editing.delete_class("sp", "alpha")
    assert editing.tree("sp").classes == ["b", "c"]
    assert [e.entry for e in editing.trash_entries("sp")] == [entry]
    assert datasets.get_dataset("sp").class_names == []  # the trash is invisible to the catalog
    restored = editing.restore("sp", entry)
    assert sorted(restored) == ["test/alpha", "train/alpha", "validation/alpha"]
    assert editing.tree("sp").counts["alpha"] == {"train": 1, "validation": 0, "test": 1}
    assert editing.trash_entries("sp") == []
    assert not (paths.data_dir() / "sp" / ".trash" / entry).exists()
    with pytest.raises(UserError, match="no class"):
        editing.delete_class("sp", "nope")


def test_restore_refuses_when_the_name_is_taken_again():
    editing.new_dataset("d", ["c"])
    editing.add_images("d", "c", [("a.png", png(1))])
    entry = editing.delete_class("d", "c")
    editing.add_class("d", "c")
    with pytest.raises(UserError, match="exists again"):
        editing.restore("d", entry)
    editing.delete_class("d", "c")  # the new, empty one: its own entry c~2
    editing.restore("d", entry)
    assert editing.images("d", "c") == ["c/a.png"]
    with pytest.raises(UserError, match="nothing called"):
        editing.restore("d", "../../etc")


def test_move_image_with_clash_and_remove_with_undo():
    editing.new_dataset("d", ["a", "b"])
    editing.add_images("d", "a", [("x.png", png(1)), ("y.png", png(2))])
    editing.add_images("d", "b", [("x.png", png(3))])
    new = editing.move_image("d", "a/x.png", "b")
    assert new == "b/x-1.png"
    assert editing.images("d", "a") == ["a/y.png"] and editing.images("d", "b") == ["b/x-1.png", "b/x.png"]
    assert np.asarray(Image.open(paths.data_dir() / "d" / new)).max() == 1  # the moved picture, not the other
    entry = editing.remove_image("d", "a/y.png")
    assert editing.images("d", "a") == []
    assert editing.restore("d", entry) == ["a/y.png"]
    assert editing.images("d", "a") == ["a/y.png"]
    assert editing.images("d", "b", query="X-1") == ["b/x-1.png"]
    for bad in ["../d/a/y.png", "a/../a/y.png", "a/.y.png", "/a/y.png", "a/missing.png", "zz/y.png", "y.png"]:
        with pytest.raises(UserError, match="no image"):
            editing.move_image("d", bad, "b")
        with pytest.raises(UserError, match="no image"):
            editing.remove_image("d", bad)
    with pytest.raises(UserError, match="already in class"):
        editing.move_image("d", "a/y.png", "a")
    with pytest.raises(UserError, match="no class"):
        editing.move_image("d", "a/y.png", "zebra")


def test_move_in_a_splits_dataset_stays_in_its_split():
    editing.new_dataset("sp", ["a", "b"], layout="splits")
    editing.add_images("sp", "a", [("x.png", png(1))], split="validation")
    assert editing.move_image("sp", "validation/a/x.png", "b") == "validation/b/x.png"
    assert editing.images("sp", "b") == ["validation/b/x.png"]


def test_links_are_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.png").write_bytes(png())
    editing.new_dataset("d", ["a", "b"])
    root = paths.data_dir() / "d"
    os.symlink(outside / "keep.png", root / "a" / "link.png")
    os.symlink(outside, paths.data_dir() / "linked")
    with pytest.raises(UserError, match="no image"):
        editing.remove_image("d", "a/link.png")
    with pytest.raises(UserError, match="no image"):
        editing.move_image("d", "a/link.png", "b")
    with pytest.raises(UserError, match="link"):
        editing.add_class("linked", "x")
    assert "linked" not in editing.editable_datasets()
    assert (outside / "keep.png").exists() and os.listdir(outside) == ["keep.png"]


def test_rename_dataset_and_whole_dataset_delete_reuses_the_dataset_trash():
    make_dataset("tiny", per_class=2)
    editing.rename_dataset("tiny", "small")
    assert datasets.get_dataset("small").total == 6
    with pytest.raises(UserError, match="unknown dataset"):
        editing.tree("tiny")
    with pytest.raises(UserError, match="letters, digits"):
        editing.rename_dataset("small", "../escape")
    entry = datasets.delete_dataset("small")
    assert "small" not in editing.editable_datasets()
    datasets.restore_dataset(entry)
    assert editing.tree("small").counts["circle"] == {"": 2}


def test_a_new_empty_dataset_is_editable_but_not_trainable_yet():
    editing.new_dataset("empty", ["a", "b"])
    assert "empty" in editing.editable_datasets()
    assert "empty" not in datasets.names()  # the catalog lists datasets with images
    editing.add_images("empty", "a", [("1.png", png())])
    assert "empty" in datasets.names()


def test_a_trash_that_is_a_link_is_never_used(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "c").mkdir(parents=True)
    (elsewhere / "c.json").write_text('{"original": "c", "paths": ["c"]}')
    editing.new_dataset("d", ["a"])
    os.symlink(elsewhere, paths.data_dir() / "d" / ".trash")
    with pytest.raises(UserError, match="link"):
        editing.restore("d", "c")
    with pytest.raises(UserError, match="link"):
        editing.delete_class("d", "a")
    assert editing.tree("d").classes == ["a"] and (elsewhere / "c").is_dir()
