"""`python -m core dataset ...` as a person runs it: real subprocesses on real files, one-line errors, exit codes."""

from __future__ import annotations

import os

from core import paths
from core.data import datasets, editing
from tests.test_cli import assert_one_line_error, cli
from tests.test_dataset_editing import png


def test_build_a_dataset_from_the_shell_then_undo_each_removal(tmp_path, isolated_dirs):
    data = isolated_dirs[0]
    folder = tmp_path / "shots"
    folder.mkdir()
    for i in range(3):
        (folder / f"s{i}.png").write_bytes(png(30 * i + 10))
    (folder / "notes.txt").write_text("x")
    (folder / "nested").mkdir()
    single = tmp_path / "one.png"
    single.write_bytes(png(250))

    out = cli("dataset", "new", "pets", "cat", "dog")
    assert out.returncode == 0 and "created" in out.stdout, out.stderr
    out = cli("dataset", "add", "pets", "cat", str(folder))
    assert out.returncode == 0, out.stderr
    assert "added 3 images to pets/cat" in out.stdout and "skipped notes.txt" in out.stdout
    assert "nested" in out.stdout
    out = cli("dataset", "add", "pets", "bird", str(single))  # a new class is made on the way
    assert out.returncode == 0 and "added class bird" in out.stdout, out.stderr
    assert editing.tree("pets").counts == {"bird": {"": 1}, "cat": {"": 3}, "dog": {"": 0}}

    out = cli("dataset", "mv", "pets", "cat/s0.png", "cat/s1.png", "dog")
    assert out.returncode == 0 and "cat/s0.png -> dog/s0.png" in out.stdout, out.stderr
    out = cli("dataset", "ls", "pets", "--class", "dog", "--search", "S1")
    assert out.stdout.split() == ["dog/s1.png"]

    out = cli("dataset", "rm", "pets", "dog/s1.png")
    assert out.returncode == 0, out.stderr
    undo = out.stdout.strip().split("`")[1]  # the line says how to undo it
    assert undo == "python -m core dataset restore pets s1.png"
    assert editing.images("pets", "dog") == ["dog/s0.png"]
    assert cli(*undo.split()[3:]).returncode == 0
    assert editing.images("pets", "dog") == ["dog/s0.png", "dog/s1.png"]

    out = cli("dataset", "rm", "pets", "--class", "bird")
    assert out.returncode == 0 and "bird" not in editing.tree("pets").counts
    assert "bird" in cli("dataset", "trash", "pets").stdout
    assert cli("dataset", "restore", "pets", "bird").returncode == 0
    assert editing.tree("pets").total("bird") == 1

    assert cli("dataset", "rename", "pets", "--class", "bird", "parrot").returncode == 0
    assert cli("dataset", "rename", "pets", "zoo").returncode == 0
    assert datasets.get_dataset("zoo").class_totals() == {"cat": 1, "dog": 2, "parrot": 1}
    out = cli("dataset", "rm", "zoo")
    assert out.returncode == 0 and not (data / "zoo").exists()
    assert cli("dataset", "restore", "zoo").returncode == 0 and (data / "zoo" / "cat").is_dir()


def test_splits_layout_and_adding_into_a_split(tmp_path):
    img = tmp_path / "a.png"
    img.write_bytes(png())
    assert cli("dataset", "new", "sp", "a", "b", "--layout", "splits").returncode == 0
    out = cli("dataset", "add", "sp", "a", str(img), "--split", "test")
    assert out.returncode == 0, out.stderr
    assert editing.images("sp", "a") == ["test/a/a.png"]
    assert "(train 0, validation 0, test 1)" in cli("dataset", "ls", "sp").stdout


def test_errors_are_one_line_and_nothing_changes(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a picture")
    assert cli("dataset", "new", "d", "a", "b").returncode == 0
    before = sorted(p.relative_to(paths.data_dir()).as_posix() for p in paths.data_dir().rglob("*"))
    assert_one_line_error(cli("dataset", "new", "../evil", "a"), "dataset name")
    assert_one_line_error(cli("dataset", "new", "d", "a"), "already exists")
    assert_one_line_error(cli("dataset", "new", "e", "train"), "split folder")
    assert_one_line_error(cli("dataset", "add", paths.EMBEDDED_DATASET, "Bag", str(bad)), "read-only")
    assert_one_line_error(cli("dataset", "rm", paths.EMBEDDED_DATASET, "--class", "Bag"), "read-only")
    assert_one_line_error(cli("dataset", "rename", paths.EMBEDDED_DATASET, "mine"), "read-only")
    assert_one_line_error(cli("dataset", "mv", "d", "a/../../x.png", "b"), "no image")
    assert_one_line_error(cli("dataset", "rm", "d", "a/missing.png"), "no image")
    assert_one_line_error(cli("dataset", "rename", "d", "--class", "a", "B"), "already has a class")
    assert_one_line_error(cli("dataset", "restore", "d", "nothing"), "nothing called")
    assert_one_line_error(cli("dataset", "ls", "nope"), "unknown dataset")
    assert_one_line_error(cli("dataset", "add", "d", "a", str(tmp_path / "missing.png")), "cannot read")
    out = cli("dataset", "add", "d", "a", str(bad))  # read, but not a picture: reported, exit 1
    assert out.returncode == 1 and "skipped bad.png" in out.stdout and "added 0 images" in out.stdout
    usage = cli("dataset", "frobnicate")
    assert usage.returncode == 2 and len(usage.stderr.strip().splitlines()) == 1
    after = sorted(p.relative_to(paths.data_dir()).as_posix() for p in paths.data_dir().rglob("*"))
    assert after == before
    assert not [n for n in os.listdir(paths.data_dir()) if n.startswith(".new-")]
