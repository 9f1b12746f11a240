"""The shared no-replace move: taken names get the caller's suffix numbering and no file is ever replaced."""

from __future__ import annotations

import os

from core.data import file_moves


def test_a_taken_name_gets_the_callers_suffix_and_nothing_is_replaced(tmp_path):
    src_dir, dst = tmp_path / "a", tmp_path / "b"
    src_dir.mkdir()
    dst.mkdir()
    (dst / "x.png").write_bytes(b"old")
    for first, expected in ((1, "x-1.png"), (2, "x-2.png")):
        (src_dir / "x.png").write_bytes(b"new")
        assert file_moves.move_no_replace(src_dir / "x.png", dst, "x.png", first_suffix=first) == expected
        assert not (src_dir / "x.png").exists() and (dst / expected).read_bytes() == b"new"
    assert (dst / "x.png").read_bytes() == b"old"
    (src_dir / "y.png").write_bytes(b"y")
    got = file_moves.move_no_replace(
        src_dir / "y.png", dst, "y.png", taken={"y.png"}
    )  # case-insensitive view
    assert got == "y-1.png" and sorted(os.listdir(dst)) == ["x-1.png", "x-2.png", "x.png", "y-1.png"]


def test_claim_refuses_an_existing_target(tmp_path):
    (tmp_path / "s").write_bytes(b"s")
    (tmp_path / "d").write_bytes(b"d")
    assert not file_moves.claim(tmp_path / "s", tmp_path / "d")
    assert (tmp_path / "s").read_bytes() == b"s" and (tmp_path / "d").read_bytes() == b"d"
