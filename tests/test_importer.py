"""core.data.importer: zips and folders in the accepted layouts, and hostile archives that must never escape data_dir."""

from __future__ import annotations

import io
import os
import stat
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.images import load_image, to_model_input
from core.data.importer import ImportReport, import_dataset
from core.errors import UserError


def png(value: int = 100, mode: str = "L", size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    colour = (
        value
        if mode in ("L", "1", "P")
        else (value, 255 - value, value // 2) + ((200,) if mode == "RGBA" else ())
    )
    Image.new(mode, size, colour).save(buf, "PNG")
    return buf.getvalue()


def jpeg(value: int = 100, exif_orientation: int | None = None, size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    kwargs = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    Image.new("RGB", size, (value, 50, 200)).save(buf, "JPEG", quality=95, **kwargs)
    return buf.getvalue()


def make_tree(root: Path, files: dict[str, bytes | None]) -> Path:
    """None makes an empty folder."""
    for rel, content in files.items():
        p = root / rel
        if content is None:
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content)
    return root


def make_zip(path: Path, files: dict[str, bytes | None], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            if content is None:
                zf.writestr(zipfile.ZipInfo(name.rstrip("/") + "/"), b"")
            else:
                zf.writestr(zipfile.ZipInfo(name), content, compress_type=zipfile.ZIP_DEFLATED)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def no_leftovers(data_dir: Path) -> bool:
    return not [p for p in data_dir.iterdir() if p.name.startswith(".import-")]


def all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def reasons(report: ImportReport) -> dict[str, str]:
    return dict(report.skipped)


TWO_CLASSES = {"cat/a.png": png(10), "cat/b.jpg": jpeg(20), "dog/c.png": png(200)}


# ------------------------------------------------------------------ layouts


def test_flat_folder_imports_into_default_data_dir(tmp_path, isolated_dirs):
    data_dir, _ = isolated_dirs
    src = make_tree(tmp_path / "src", TWO_CLASSES)
    report = import_dataset(src, "pets")
    assert report.path == data_dir / "pets"
    assert report.name == "pets" and report.layout == "flat"
    assert report.class_counts == {"all": {"cat": 2, "dog": 1}}
    assert report.imported == 3 and report.skipped == []
    assert all_files(report.path) == {"cat/a.png", "cat/b.jpg", "dog/c.png"}
    assert no_leftovers(data_dir)


def test_stored_files_give_the_same_model_input_as_the_originals(tmp_path):
    originals = {
        "cat/rgba.png": png(30, "RGBA"),
        "cat/photo.jpg": jpeg(120, size=(16, 12)),
        "dog/gray.png": png(77, "L"),
        "dog/anim.gif": png(5, "P"),
    }
    src = make_tree(tmp_path / "src", originals)
    report = import_dataset(src, "same", data_dir=tmp_path / "data")
    stored = sorted(all_files(report.path))
    assert stored == ["cat/photo.jpg", "cat/rgba.png", "dog/anim.png", "dog/gray.png"]
    for rel, raw in originals.items():
        if rel.endswith(".jpg"):
            continue  # re-encoded at quality 95: close, checked below
        out = report.path / (rel.rsplit(".", 1)[0] + ".png")
        for channels in (1, 3):
            a = to_model_input(load_image(raw), (8, 8), channels)
            b = to_model_input(load_image(out), (8, 8), channels)
            assert np.array_equal(a, b), (rel, channels)
    a = to_model_input(load_image(originals["cat/photo.jpg"]), (12, 16), 3)
    b = to_model_input(load_image(report.path / "cat/photo.jpg"), (12, 16), 3)
    assert np.abs(a - b).max() <= 6
    # transparency flattened over white at import, so the stored file has no alpha left to interpret differently
    assert Image.open(report.path / "cat/rgba.png").mode == "RGB"


def test_split_layout_zip_normalises_val(tmp_path):
    files = {
        "train/cat/1.png": png(1),
        "train/cat/2.png": png(2),
        "train/dog/1.png": png(3),
        "val/cat/1.png": png(4),
        "val/dog/1.png": png(5),
        "test/dog/9.jpg": jpeg(6),
        "readme.txt": b"hello",
    }
    zpath = make_zip(tmp_path / "ds.zip", files)
    report = import_dataset(zpath, "split", data_dir=tmp_path / "data")
    assert report.layout == "split"
    assert report.class_counts == {
        "train": {"cat": 2, "dog": 1},
        "validation": {"cat": 1, "dog": 1},
        "test": {"dog": 1},
    }
    assert report.imported == 6
    assert (report.path / "validation" / "cat" / "1.png").is_file()
    assert not (report.path / "val").exists()
    assert reasons(report) == {"readme.txt": "outside the train/validation/test folders"}


def test_wrapping_folder_and_mac_metadata(tmp_path):
    files = {
        "pets/cat/a.png": png(1),
        "pets/dog/b.png": png(2),
        "pets/.DS_Store": b"\x00\x00\x00\x01Bud1",
        "__MACOSX/pets/cat/._a.png": b"\x00\x05\x16\x07",
        "__MACOSX/pets/dog/._b.png": b"\x00\x05\x16\x07",
    }
    report = import_dataset(make_zip(tmp_path / "p.zip", files), "wrapped", data_dir=tmp_path / "data")
    assert report.class_counts == {"all": {"cat": 1, "dog": 1}}
    r = reasons(report)
    assert r["__MACOSX/"] == "macOS metadata (__MACOSX)"
    assert r["pets/.DS_Store"] == "hidden file or folder"
    assert len(report.skipped) == 2  # the __MACOSX folder is reported once, not per file
    assert all_files(report.path) == {"cat/a.png", "dog/b.png"}


def test_wrapping_folder_around_split_layout(tmp_path):
    files = {"ds/train/cat/a.png": png(1), "ds/train/dog/b.png": png(2), "ds/test/cat/c.png": png(3)}
    src = make_tree(tmp_path / "src", files)
    report = import_dataset(src, "wrapsplit", data_dir=tmp_path / "data")
    assert report.layout == "split"
    assert report.class_counts == {"test": {"cat": 1}, "train": {"cat": 1, "dog": 1}}


def test_unreadable_nested_and_non_image_files_are_skipped_with_reasons(tmp_path):
    files = {
        **TWO_CLASSES,
        "cat/notes.txt": b"not a picture",
        "cat/fake.png": b"this is text pretending to be a png",
        "cat/sub/deep.png": png(9),
        "loose.png": png(9),
        "dog/vector.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    }
    report = import_dataset(make_zip(tmp_path / "m.zip", files), "mixed", data_dir=tmp_path / "data")
    r = reasons(report)
    assert r["cat/notes.txt"] == "not an image file type (.txt)"
    assert r["cat/fake.png"] == "not an image (or a format we don't read)"
    assert "nested" in r["cat/sub/deep.png"]
    assert r["loose.png"] == "not inside a class folder"
    assert r["dog/vector.svg"] == "not an image file type (.svg)"
    assert report.imported == 3


def test_exif_orientation_applied_on_import(tmp_path):
    files = {"cat/rot.jpg": jpeg(100, exif_orientation=6, size=(20, 10)), "dog/b.png": png(3)}
    report = import_dataset(make_tree(tmp_path / "src", files), "exif", data_dir=tmp_path / "data")
    stored = Image.open(report.path / "cat" / "rot.jpg")
    assert stored.size == (10, 20)
    assert stored.getexif().get(0x0112) in (None, 1)


def test_colliding_output_names_are_made_unique(tmp_path):
    files = {"cat/a.png": png(1), "cat/a.gif": png(2, "P"), "cat/a-1.bmp": png(3), "dog/b.png": png(4)}
    report = import_dataset(make_tree(tmp_path / "src", files), "dups", data_dir=tmp_path / "data")
    assert report.class_counts["all"]["cat"] == 3
    assert len(list((report.path / "cat").iterdir())) == 3


# ------------------------------------------------------------------ hostile zips and folders


def test_traversal_absolute_drive_and_symlink_entries_are_skipped(tmp_path):
    data_dir = tmp_path / "data"
    zpath = make_zip(
        tmp_path / "evil.zip",
        {
            **TWO_CLASSES,
            "../evil.png": png(1),
            "cat/../../evil2.png": png(1),
            "/etc/x.png": png(1),
            "C:/windows/x.png": png(1),
            "cat\\..\\..\\evil3.png": png(1),
        },
        symlinks={"cat/link.png": "../../../../etc/passwd"},
    )
    before = all_files(tmp_path)
    report = import_dataset(zpath, "safe", data_dir=data_dir)
    r = reasons(report)
    assert r["../evil.png"] == "path goes outside the folder (..)"
    assert r["cat/../../evil2.png"] == "path goes outside the folder (..)"
    assert r["/etc/x.png"] == "absolute path"
    assert r["C:/windows/x.png"] == "path with a drive letter"
    assert r["cat\\..\\..\\evil3.png"] == "path goes outside the folder (..)"
    assert r["cat/link.png"] == "symbolic link"
    assert report.class_counts == {"all": {"cat": 2, "dog": 1}}
    # nothing new anywhere except inside data/safe
    new = all_files(tmp_path) - before
    assert all(p.startswith("data/safe/") for p in new), new
    assert not any(p.is_symlink() for p in report.path.rglob("*"))
    assert all_files(report.path) == {"cat/a.png", "cat/b.jpg", "dog/c.png"}


def test_zip_bomb_aborts_and_leaves_nothing(tmp_path):
    data_dir = tmp_path / "data"
    existing = make_tree(data_dir / "old", {"cat/x.png": png(1), "dog/y.png": png(2)})
    old_files = {p: p.read_bytes() for p in existing.rglob("*") if p.is_file()}
    zpath = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for rel, raw in TWO_CLASSES.items():
            zf.writestr(rel, raw)
        zf.writestr("dog/zeros.png", bytes(50 * 2**20))
    assert zpath.stat().st_size < 200_000
    start = time.perf_counter()
    with pytest.raises(UserError, match=r"^zip expands past 8 MiB"):
        import_dataset(zpath, "bomb", data_dir=data_dir, max_total_bytes=8 * 2**20)
    assert time.perf_counter() - start < 5
    assert not (data_dir / "bomb").exists()
    assert no_leftovers(data_dir)
    assert {p: p.read_bytes() for p in existing.rglob("*") if p.is_file()} == old_files


def test_member_over_its_cap_is_skipped_without_reading_it_all(tmp_path):
    zpath = tmp_path / "big.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, raw in TWO_CLASSES.items():
            zf.writestr(rel, raw)
        zf.writestr("dog/huge.png", bytes(20 * 2**20))
    report = import_dataset(zpath, "capped", data_dir=tmp_path / "data", max_member_bytes=2**20)
    assert reasons(report)["dog/huge.png"] == "file larger than 1 MiB"
    assert report.imported == 3


def test_member_count_cap(tmp_path):
    zpath = make_zip(
        tmp_path / "many.zip", {f"cat/{i}.png": png(i) for i in range(6)} | {"dog/x.png": png(1)}
    )
    with pytest.raises(UserError, match="more than 5 entries"):
        import_dataset(zpath, "many", data_dir=tmp_path / "data", max_members=5)
    src = make_tree(tmp_path / "src", {f"cat/{i}.png": png(i) for i in range(6)} | {"dog/x.png": png(1)})
    with pytest.raises(UserError, match="more than 5 entries"):
        import_dataset(src, "many", data_dir=tmp_path / "data", max_members=5)
    assert no_leftovers(tmp_path / "data")


@pytest.mark.parametrize(
    "content",
    [b"definitely not a zip", b"PK\x03\x04" + bytes(40), b""],
    ids=["text", "broken-header", "empty"],
)
def test_not_a_zip(tmp_path, content):
    path = tmp_path / "upload.zip"
    path.write_bytes(content)
    with pytest.raises(UserError, match=r"^not a zip file: upload.zip$"):
        import_dataset(path, "nz", data_dir=tmp_path / "data")
    assert not (tmp_path / "data" / "nz").exists()


def test_truncated_zip_is_not_a_zip(tmp_path):
    raw = make_zip(tmp_path / "ok.zip", TWO_CLASSES).read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(raw[: len(raw) - 30])
    with pytest.raises(UserError, match="^not a zip file: cut.zip$"):
        import_dataset(cut, "cut", data_dir=tmp_path / "data")


def test_corrupt_member_is_skipped(tmp_path):
    raw = bytearray(
        make_zip(tmp_path / "ok.zip", {**TWO_CLASSES, "dog/d.png": png(99, "RGB", (64, 64))}).read_bytes()
    )
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        info = zf.getinfo("dog/d.png")
    start = info.header_offset + 30 + len(info.filename)
    raw[start + 5 : start + 25] = bytes(20)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(raw))
    report = import_dataset(bad, "crc", data_dir=tmp_path / "data")
    assert reasons(report)["dog/d.png"] == "corrupt or unreadable"
    assert report.imported == 3


def test_one_class_only_is_refused(tmp_path):
    data_dir = tmp_path / "data"
    zpath = make_zip(tmp_path / "one.zip", {"cat/a.png": png(1), "cat/b.png": png(2), "dog/": None})
    with pytest.raises(UserError, match=r"^need at least two classes with images; found 1 \(cat\)$"):
        import_dataset(zpath, "one", data_dir=data_dir)
    assert not (data_dir / "one").exists() and no_leftovers(data_dir)


def test_only_unreadable_files_counts_as_no_class(tmp_path):
    src = make_tree(tmp_path / "src", {"cat/a.png": b"junk", "dog/b.png": b"junk"})
    with pytest.raises(UserError, match=r"found 0 \(none\)"):
        import_dataset(src, "junk", data_dir=tmp_path / "data")
    assert no_leftovers(tmp_path / "data")


def test_empty_class_folders_are_reported(tmp_path):
    zpath = make_zip(tmp_path / "e.zip", {**TWO_CLASSES, "bird/": None, "fish/notes.txt": b"x"})
    report = import_dataset(zpath, "withempty", data_dir=tmp_path / "data")
    r = reasons(report)
    assert r["bird/"] == "empty class folder"
    assert r["fish/"] == "no usable images in class folder"
    assert not (report.path / "bird").exists()
    src = make_tree(tmp_path / "src", {**TWO_CLASSES, "bird": None})
    report = import_dataset(src, "withempty2", data_dir=tmp_path / "data")
    assert reasons(report) == {"bird/": "empty class folder"}
    assert set(report.class_counts["all"]) == {"cat", "dog"}


def test_folder_source_symlinks_are_skipped(tmp_path):
    outside = make_tree(tmp_path / "outside", {"secret.png": png(42), "bird/x.png": png(43)})
    src = make_tree(tmp_path / "src", TWO_CLASSES)
    os.symlink(outside / "secret.png", src / "cat" / "link.png")
    os.symlink(outside / "bird", src / "bird")
    report = import_dataset(src, "links", data_dir=tmp_path / "data")
    r = reasons(report)
    assert r["cat/link.png"] == "symbolic link" and r["bird"] == "symbolic link"
    assert report.class_counts == {"all": {"cat": 2, "dog": 1}}
    assert not any(p.is_symlink() for p in report.path.rglob("*"))


# ------------------------------------------------------------------ names and existing datasets


@pytest.mark.parametrize(
    "name",
    ["", ".hidden", "../up", "a/b", "with space", "fashion-mnist-sample", "Fashion-MNIST-Sample", ".", ".."],
)
def test_bad_names_are_refused(tmp_path, name):
    src = make_tree(tmp_path / "src", TWO_CLASSES)
    with pytest.raises(UserError):
        import_dataset(src, name, data_dir=tmp_path / "data")
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []


def test_existing_dataset_is_untouched(tmp_path):
    data_dir = tmp_path / "data"
    existing = make_tree(data_dir / "pets", {"cat/x.png": png(1), "dog/y.png": png(2)})
    before = {p: p.read_bytes() for p in existing.rglob("*") if p.is_file()}
    src = make_tree(tmp_path / "src", TWO_CLASSES)
    with pytest.raises(UserError, match="^a dataset named pets already exists$"):
        import_dataset(src, "pets", data_dir=data_dir)
    assert {p: p.read_bytes() for p in existing.rglob("*") if p.is_file()} == before
    assert no_leftovers(data_dir)


def test_missing_source(tmp_path):
    with pytest.raises(UserError, match="^no such file or folder: nope.zip$"):
        import_dataset(tmp_path / "nope.zip", "x", data_dir=tmp_path / "data")


@pytest.mark.parametrize("name", ["digits", "mnist", "fashion_mnist", "cifar10", "MNIST", "Cifar10"])
def test_reserved_builtin_names_are_refused_before_anything_is_created(tmp_path, name):
    src = make_tree(tmp_path / "src", TWO_CLASSES)
    with pytest.raises(UserError, match="built-in"):
        import_dataset(src, name, data_dir=tmp_path / "data")
    assert list((tmp_path / "data").iterdir()) == []


# ------------------------------------------------------------------ member names without the UTF-8 flag


class _RawName(zipfile.ZipInfo):
    """Writes the name's cp437 bytes with the UTF-8 flag cleared, as many zip tools do for UTF-8 names."""

    def _encodeFilenameFlags(self):  # noqa: N802 (zipfile's own name)
        return self.filename.encode("cp437"), self.flag_bits & ~0x800


def _raw_zip(path: Path, files: dict[bytes, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for raw, content in files.items():
            info = _RawName(raw.decode("cp437"))
            info.flag_bits = 0  # no UTF-8 flag
            zf.writestr(info, content)
    with zipfile.ZipFile(path) as zf:  # what a reader sees: cp437, no flag
        assert all(not i.flag_bits & 0x800 for i in zf.infolist())
    return path


def test_utf8_names_without_the_flag_and_real_cp437_names(tmp_path):
    zpath = _raw_zip(
        tmp_path / "names.zip",
        {
            "été/a.png".encode(): png(10),  # UTF-8 bytes, flag not set (macOS, 7-Zip, Info-ZIP)
            "été/b.png".encode(): png(20),
            "café/c.png".encode("cp437"): png(200),  # genuinely cp437 (old DOS/Windows tools)
            "café/d.png".encode("cp437"): png(220),
        },
    )
    rep = import_dataset(zpath, "names", data_dir=tmp_path / "data")
    assert rep.class_counts == {"all": {"café": 2, "été": 2}}
    assert {p.name for p in (tmp_path / "data" / "names").iterdir()} == {"café", "été"}


def test_importer_and_catalog_read_training_and_valid_folders_alike(tmp_path, isolated_dirs):
    """One alias table: a zip with `training/` and `valid/` lands as train/validation, and the catalog sees both."""
    from core.data import datasets

    files = {"training/cat/1.png": png(1), "training/dog/1.png": png(2), "valid/cat/1.png": png(3),
             "valid/dog/1.png": png(4)}  # fmt: skip
    report = import_dataset(make_zip(tmp_path / "ds.zip", files), "aliases")
    assert report.layout == "split" and sorted(p.name for p in report.path.iterdir()) == [
        "train",
        "validation",
    ]
    info = datasets.get_dataset("aliases")
    assert {s: sum(c.values()) for s, c in info.counts.items()} == {"train": 2, "val": 2}
