"""What the Build section's grid shows (core.data.browse): pages of a class's images as `core.data.editing` lists
them, tile captions per layout, move targets, and the session's removals and webcam shots."""

from __future__ import annotations

from core.data import browse, editing
from tests.test_dataset_editing import png


def test_page_count_has_one_page_even_when_empty():
    assert [browse.page_count(n, 24) for n in (0, 1, 24, 25, 48, 49)] == [1, 1, 1, 2, 2, 3]


def test_pages_of_a_real_class_in_editing_order():
    editing.new_dataset("many", ["a", "b"])
    editing.add_images("many", "a", [(f"img{i:02d}.png", png(i)) for i in range(30)])
    found = editing.images("many", "a")
    first = browse.grid_page(found, 1, 24)
    assert (first.found, first.page, first.pages) == (30, 1, 2)
    assert first.shown == [f"a/img{i:02d}.png" for i in range(24)] and (first.first, first.last) == (1, 24)
    second = browse.grid_page(found, 2, 24)
    assert second.shown == [f"a/img{i:02d}.png" for i in range(24, 30)] and (second.first, second.last) == (
        25,
        30,
    )
    searched = browse.grid_page(
        editing.images("many", "a", "IMG2"), 2, 24
    )  # a narrower search: back to page 1
    assert (searched.page, searched.pages, searched.found) == (1, 1, 10)
    assert searched.shown == [f"a/img{i}.png" for i in range(20, 30)] and (searched.first, searched.last) == (
        1,
        10,
    )


def test_a_page_past_the_end_or_before_the_start_is_clamped():
    found = [f"c/{i}.png" for i in range(5)]
    assert browse.grid_page(found, 9, 2).page == 3 and browse.grid_page(found, 9, 2).shown == ["c/4.png"]
    assert browse.grid_page(found, 0, 2).shown == ["c/0.png", "c/1.png"]
    empty = browse.grid_page([], 3, 24)
    assert (empty.page, empty.pages, empty.shown, empty.first, empty.last) == (1, 1, [], 0, 0)


def test_tiles_caption_the_split_folder_only_in_a_splits_dataset():
    shown = ["train/cat/a.png", "test/cat/b.jpg"]
    assert [t.caption for t in browse.tiles(shown, "splits")] == ["train/a.png", "test/b.jpg"]
    assert [(t.rel, t.name, t.caption) for t in browse.tiles(["cat/a.png"], "flat")] == [
        ("cat/a.png", "a.png", "a.png")
    ]


def test_move_targets_are_the_other_classes_in_order():
    editing.new_dataset("d", ["b", "A", "c"])
    t = editing.tree("d")
    assert browse.move_targets(t.classes, "b") == ["A", "c"]
    assert browse.move_targets(["only"], "only") == []


def test_recent_removals_of_this_dataset_and_undo():
    removed = [("d", "e1", "x.png"), ("o", "e2", "y.png"), ("d", "e3", "z.png"), ("d", "e4", "class cat")]
    # the last three of the session, those of this dataset: e1 is too old to offer
    assert [r[1] for r in browse.recent_removals(removed, "d")] == ["e3", "e4"]
    assert [r[1] for r in browse.recent_removals(removed, "o")] == ["e2"]
    assert browse.recent_removals(removed, "d", last=0) == []
    assert [r[1] for r in browse.without_removal(removed, "d", "e3")] == ["e1", "e2", "e4"]
    assert browse.without_removal(removed, "o", "e3") == removed  # the entry of another dataset stays


def test_webcam_shots_counted_per_dataset_and_class():
    shots = browse.with_shot({}, "pets", "dog")
    shots = browse.with_shot(shots, "pets", "dog")
    shots = browse.with_shot(shots, "other", "dog")
    shots = browse.with_shot(shots, "pets", "cat")
    assert browse.shots_in(shots, "pets") == {"dog": 2, "cat": 1}
    assert browse.shots_in(shots, "other") == {"dog": 1} and browse.shots_in(shots, "none") == {}
