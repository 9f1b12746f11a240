"""The trash: a removal is a rename that can be undone; nothing is replaced, links are never followed."""

from __future__ import annotations

import json
import os

import pytest

from core import paths
from core.data import datasets, trash
from core.errors import UserError
from tests.helpers import make_dataset


def _folder(root, name: str, text: str = "x"):
    p = root / name
    p.mkdir()
    (p / "file.txt").write_text(text)
    return p


def test_move_restore_and_list_round_trip(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    entry = trash.move_to_trash(_folder(root, "alpha", "one"), root)
    assert entry == "alpha" and not (root / "alpha").exists()
    assert (root / ".trash" / "alpha" / "file.txt").read_text() == "one"
    meta = json.loads((root / ".trash" / "alpha.json").read_text())
    assert meta["original"] == "alpha" and meta["deleted_at"] > 0
    # the same name again gets its own entry; nothing in the trash is replaced
    second = trash.move_to_trash(_folder(root, "alpha", "two"), root)
    assert second == "alpha~2"
    listed = trash.list_trash(root)
    assert {(e.entry, e.original) for e in listed} == {("alpha", "alpha"), ("alpha~2", "alpha")}
    assert listed[0].deleted_at >= listed[1].deleted_at
    back = trash.restore(root, "alpha~2")
    assert back == root / "alpha" and (back / "file.txt").read_text() == "two"
    assert not (root / ".trash" / "alpha~2.json").exists()
    # restoring the other one would replace the folder now back in place: refused, both kept
    with pytest.raises(UserError, match="exists again"):
        trash.restore(root, "alpha")
    assert (root / "alpha" / "file.txt").read_text() == "two"
    assert (root / ".trash" / "alpha" / "file.txt").read_text() == "one"
    for bad in ("nope", "", "../root", ".trash", "alpha.json"):
        with pytest.raises(UserError):
            trash.restore(root, bad)


def test_links_and_foreign_paths_are_never_moved(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = _folder(tmp_path, "outside", "keep")
    os.symlink(outside, root / "link")
    with pytest.raises(UserError, match="link"):
        trash.move_to_trash(root / "link", root)
    assert (root / "link").is_symlink() and (outside / "file.txt").read_text() == "keep"
    with pytest.raises(UserError):
        trash.move_to_trash(outside, root)  # not inside root
    with pytest.raises(UserError, match="does not exist"):
        trash.move_to_trash(root / "missing", root)
    assert outside.is_dir() and trash.list_trash(root) == []


def test_entry_without_its_record_still_restores_under_its_name(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    trash.move_to_trash(_folder(root, "beta"), root)
    trash.move_to_trash(_folder(root, "beta"), root)
    (root / ".trash" / "beta~2.json").unlink()
    assert {e.original for e in trash.list_trash(root)} == {"beta"}
    trash.restore(root, "beta~2")
    assert (root / "beta").is_dir()


def test_delete_and_restore_a_dataset_and_the_catalog_ignores_the_trash():
    make_dataset("shapes", per_class=2)
    entry = datasets.delete_dataset("shapes")
    assert entry == "shapes" and (paths.data_dir() / ".trash" / "shapes").is_dir()
    assert "shapes" not in datasets.names() and ".trash" not in datasets.names()
    with pytest.raises(UserError, match="unknown dataset"):
        datasets.get_dataset("shapes")
    assert [e.original for e in datasets.trashed_datasets()] == ["shapes"]
    assert datasets.restore_dataset(entry) == "shapes"
    assert datasets.get_dataset("shapes").counts == {"all": {"circle": 2, "square": 2, "stripes": 2}}
    (paths.data_dir() / ".hidden" / "cls").mkdir(parents=True)
    assert ".hidden" not in datasets.names()


@pytest.mark.parametrize(
    ("name", "needle"),
    [(paths.EMBEDDED_DATASET, "embedded"), ("mnist", "built-in"), ("digits", "built-in"),
     ("nope", "unknown dataset"), ("../runs", "unknown dataset"), (".trash", "unknown dataset")],
)  # fmt: skip
def test_refused_dataset_deletes_are_one_line(name, needle):
    with pytest.raises(UserError, match=needle) as info:
        datasets.delete_dataset(name)
    assert "\n" not in str(info.value)
    assert paths.embedded_dataset_dir().is_dir()
