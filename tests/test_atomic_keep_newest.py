"""Small report caches keep their newest files and never touch a link, a folder or another pattern."""

from __future__ import annotations

import os

from core.atomic import keep_newest


def test_keep_newest_deletes_only_the_oldest_plain_files_of_the_pattern(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    for i in range(5):
        p = folder / f"r{i}.json"
        p.write_text("{}")
        os.utime(p, (1000 + i, 1000 + i))
    (folder / "other.txt").write_text("x")
    (folder / "dir.json").mkdir()
    outside = tmp_path / "outside-target.json"
    outside.write_text("{}")
    os.utime(outside, (1, 1))
    (folder / "link.json").symlink_to(outside)
    keep_newest(folder, "*.json", 2)
    assert sorted(p.name for p in folder.iterdir()) == [
        "dir.json",
        "link.json",
        "other.txt",
        "r3.json",
        "r4.json",
    ]
    assert outside.exists()
