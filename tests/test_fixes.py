"""Fix in place on real tiny folders: relabel, set aside, keep, bulk, undo; the catalog and decode cache follow."""

from __future__ import annotations

import os

import pytest

from core import paths
from core.data import datasets, decode_cache, fixes
from core.errors import UserError
from tests.helpers import make_dataset


def _files(name: str) -> set[str]:
    info = datasets.get_dataset(name)
    assert info.path is not None
    return set(
        decode_cache.relative_paths(
            info.path, [p for per in info.files.values() for fs in per.values() for p in fs]
        )
    )


def test_relabel_moves_the_file_and_undo_puts_it_back():
    name = make_dataset("flat", per_class=4)
    root = paths.data_dir() / name
    before = datasets.get_dataset(name).counts["all"]
    data = (root / "circle" / "circle_000.png").read_bytes()
    act = fixes.relabel(name, "circle/circle_000.png", "square")
    assert act.new_path == "square/circle_000.png" and act.from_class == "circle" and act.to_class == "square"
    assert not (root / "circle" / "circle_000.png").exists()
    assert (root / "square" / "circle_000.png").read_bytes() == data
    counts = datasets.get_dataset(name).counts["all"]
    assert counts == {**before, "circle": before["circle"] - 1, "square": before["square"] + 1}
    assert "circle/circle_000.png" in fixes.handled(name)
    undone = fixes.undo(name)
    assert [a.id for a in undone] == [act.id]
    assert (root / "circle" / "circle_000.png").read_bytes() == data
    assert not (root / "square" / "circle_000.png").exists()
    assert datasets.get_dataset(name).counts["all"] == before
    assert fixes.journal(name)[0].undone and not fixes.handled(name)
    with pytest.raises(UserError, match="nothing to undo"):
        fixes.undo(name)


def test_a_fix_marks_the_dataset_folder_changed():
    """Views keyed by the folder's mtime (Datasets page samples) must notice a move between two class folders."""
    name = make_dataset("stamp", per_class=3)
    root = paths.data_dir() / name
    os.utime(root, ns=(1_000_000_000, 1_000_000_000))
    fixes.relabel(name, "circle/circle_000.png", "square")
    assert root.stat().st_mtime_ns > 1_000_000_000
    os.utime(root, ns=(1_000_000_000, 1_000_000_000))
    fixes.undo(name)
    assert root.stat().st_mtime_ns > 1_000_000_000


def test_relabel_never_replaces_a_file_with_the_same_name():
    name = make_dataset("clash", per_class=3)
    root = paths.data_dir() / name
    (root / "square" / "circle_000.png").write_bytes(b"theirs")
    act = fixes.relabel(name, "circle/circle_000.png", "square")
    assert act.new_path == "square/circle_000-2.png"
    assert (root / "square" / "circle_000.png").read_bytes() == b"theirs"
    fixes.undo(name, act.id)
    assert (root / "circle" / "circle_000.png").is_file()


def test_set_aside_hides_the_image_from_training_and_keeps_the_file():
    name = make_dataset("split", per_class=6, split=True)
    root = paths.data_dir() / name
    rel = "train/stripes/stripes_002.png"
    assert rel in _files(name)
    act = fixes.set_aside(name, rel)
    assert act.new_path == f"{fixes.QUARANTINE_DIR}/{rel}" and (root / act.new_path).is_file()
    assert rel not in _files(name) and not any(".quarantine" in f for f in _files(name))
    assert datasets.get_dataset(name).counts["train"]["stripes"] == 5
    assert fixes.set_aside_paths(name) == [act.new_path]
    fixes.undo(name)
    assert (root / rel).is_file() and not (root / fixes.QUARANTINE_DIR).exists()  # our empty folders tidied


def test_relabel_in_a_split_dataset_stays_in_its_split():
    name = make_dataset("split2", per_class=6, split=True)
    act = fixes.relabel(name, "test/circle/circle_000.png", "square")
    assert act.new_path == "test/square/circle_000.png"
    assert datasets.get_dataset(name).counts["test"]["square"] == 3


def test_decode_cache_key_changes_after_a_fix():
    name = make_dataset("cache", per_class=4)
    root = paths.data_dir() / name
    before = decode_cache.fingerprint(root, sorted(_files(name)))
    splits = datasets.load_splits(name, (16, 16), 1, splits=("train", "val"))
    n = len(splits["train"]) + len(splits["val"])
    fixes.set_aside(name, "square/square_001.png")
    after = decode_cache.fingerprint(root, sorted(_files(name)))
    assert before != after
    again = datasets.load_splits(name, (16, 16), 1, splits=("train", "val"))
    assert len(again["train"]) + len(again["val"]) == n - 1
    assert not any("square_001" in p for p in (again["train"].paths or []) + (again["val"].paths or []))


def test_bulk_is_one_group_and_failures_are_reported_per_image():
    name = make_dataset("bulk", per_class=4)
    root = paths.data_dir() / name
    picks = ["circle/circle_000.png", "circle/circle_001.png", "circle/missing.png"]
    done, failed = fixes.apply(name, "relabel", picks, "stripes")
    assert len(done) == 2 and len(failed) == 1 and "missing.png" in failed[0]
    assert {a.group for a in done} == {done[0].group}
    assert (root / "stripes" / "circle_001.png").is_file()
    undone = fixes.undo(name)
    assert {a.id for a in undone} == {a.id for a in done}
    assert (root / "circle" / "circle_000.png").is_file() and (root / "circle" / "circle_001.png").is_file()


def test_keep_is_remembered_and_touches_no_file():
    name = make_dataset("keep", per_class=3)
    before = _files(name)
    fixes.keep(name, "square/square_000.png")
    assert fixes.kept(name) == {"square/square_000.png"}
    assert _files(name) == before
    fixes.undo(name)
    assert fixes.kept(name) == set()


def test_undo_a_chosen_earlier_action_and_refuse_when_the_file_moved_again():
    name = make_dataset("chain", per_class=4)
    a1 = fixes.relabel(name, "circle/circle_000.png", "square")
    fixes.set_aside(name, "square/square_000.png")
    fixes.undo(name, a1.id)  # an earlier action, not the last
    assert (paths.data_dir() / name / "circle" / "circle_000.png").is_file()
    a3 = fixes.relabel(name, "circle/circle_000.png", "square")
    fixes.set_aside(name, a3.new_path)
    with pytest.raises(UserError, match="undo the later fix"):
        fixes.undo(name, a3.id)
    fixes.undo(name)  # the set-aside, then the relabel
    fixes.undo(name, a3.id)
    assert (paths.data_dir() / name / "circle" / "circle_000.png").is_file()


def test_refusals_are_one_line():
    name = make_dataset("refuse", per_class=3)
    with pytest.raises(UserError, match="read-only"):
        fixes.relabel(paths.EMBEDDED_DATASET, "0/x.png", "1")
    fixes.keep(paths.EMBEDDED_DATASET, "0/x.png")  # a decision touches no file: allowed
    assert fixes.kept(paths.EMBEDDED_DATASET) == {"0/x.png"}
    for bad in ("../x.png", "/etc/passwd", ".quarantine/circle/x.png", "circle/../square/square_000.png"):
        with pytest.raises(UserError, match="not an image path"):
            fixes.relabel(name, bad, "square")
    with pytest.raises(UserError, match="not a class"):
        fixes.relabel(name, "circle/circle_000.png", "triangle")
    with pytest.raises(UserError, match="already in"):
        fixes.relabel(name, "circle/circle_000.png", "circle")
    with pytest.raises(UserError, match="unknown fix"):
        fixes.apply(name, "delete", ["circle/circle_000.png"])
    with pytest.raises(UserError, match="built-in array dataset"):
        fixes.set_aside("digits", "0/x.png")


def test_journal_lives_with_the_app_state_not_in_the_dataset():
    name = make_dataset("where", per_class=3)
    fixes.relabel(name, "circle/circle_000.png", "square")
    assert (fixes.fixes_dir() / f"{name}.json").is_file()
    assert fixes.fixes_dir().is_relative_to(paths.runs_dir())
    assert not any(p.name.endswith(".json") for p in (paths.data_dir() / name).rglob("*"))


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_a_link_is_not_moved(tmp_path):
    name = make_dataset("links", per_class=3)
    root = paths.data_dir() / name
    target = tmp_path / "outside.png"
    target.write_bytes((root / "circle" / "circle_000.png").read_bytes())
    os.symlink(target, root / "circle" / "link.png")
    with pytest.raises(UserError):
        fixes.relabel(name, "circle/link.png", "square")
    assert (root / "circle" / "link.png").is_symlink() and target.is_file()


def test_bulk_relabel_with_a_class_per_image():
    name = make_dataset("pertarget", per_class=3)
    root = paths.data_dir() / name
    targets = {"circle/circle_000.png": "square", "stripes/stripes_000.png": "circle"}
    done, failed = fixes.apply(name, "relabel", list(targets), targets)
    assert not failed and {a.new_path for a in done} == {"square/circle_000.png", "circle/stripes_000.png"}
    assert (root / "circle" / "stripes_000.png").is_file()


def test_fix_on_the_command_line():
    from tests.test_cli import assert_one_line_error, cli

    name = make_dataset("cli", per_class=3)
    root = paths.data_dir() / name
    out = cli(
        "fix",
        "relabel",
        "circle/circle_000.png",
        "circle/circle_001.png",
        "--dataset",
        name,
        "--to",
        "square",
    )
    assert out.returncode == 0, out.stderr
    assert "circle_000.png: circle → square -> square/circle_000.png" in out.stdout
    assert (root / "square" / "circle_001.png").is_file()
    out = cli("fix", "list", "--dataset", name)
    assert out.returncode == 0 and out.stdout.count("in force") == 2
    out = cli("fix", "undo", "--dataset", name)
    assert out.returncode == 0 and out.stdout.count("undone #") == 2
    assert (root / "circle" / "circle_000.png").is_file() and (root / "circle" / "circle_001.png").is_file()
    assert_one_line_error(cli("fix", "relabel", "circle/circle_000.png", "--dataset", name), "needs --to")
    assert_one_line_error(
        cli("fix", "set-aside", "0/x.png", "--dataset", paths.EMBEDDED_DATASET), "read-only"
    )
    assert_one_line_error(cli("fix", "undo", "--dataset", name), "nothing to undo")
