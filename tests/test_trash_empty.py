"""Emptying the trash on purpose: the CLI says what it frees and needs --yes; the Datasets page asks first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from core import paths
from core.data import datasets, editing, trash, trash_empty
from tests.apptest_support import open_page, texts
from tests.helpers import make_dataset

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env={**os.environ},
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def _fill_trash() -> Path:
    """A deleted dataset, a deleted image, a deleted run folder, and a folder the app did not put there."""
    make_dataset("gone", per_class=3)
    datasets.delete_dataset("gone")
    make_dataset("kept", per_class=3)
    editing.remove_image("kept", "circle/circle_000.png")
    run = paths.runs_dir() / "run-1"
    run.mkdir(parents=True)
    (run / "model.keras").write_bytes(b"x" * 5000)
    trash.move_to_trash(run, paths.runs_dir())
    foreign = trash.trash_dir(paths.data_dir()) / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not the app's")
    return foreign


def test_cli_needs_yes_then_removes_only_app_entries():
    foreign = _fill_trash()
    items = trash_empty.plan()
    assert sorted(i.where for i in items) == ["dataset kept", "datasets", "runs"]
    assert sum(i.size for i in items) >= 5000
    out = _cli("trash", "--empty")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: nothing removed; add --yes to empty the trash for good"
    ]
    assert "will free 3 trash entries" in out.stdout
    assert len(trash_empty.plan()) == 3  # nothing went without --yes
    out = _cli("trash", "--empty", "--yes")
    assert out.returncode == 0, out.stderr
    assert "emptied 3 trash entries" in out.stdout
    assert trash_empty.plan() == [] and trash.list_trash(paths.runs_dir()) == []
    assert (foreign / "keep.txt").read_text() == "not the app's"  # not the app's: untouched
    assert datasets.get_dataset("kept").total == 8  # the live dataset is untouched


def test_older_than_keeps_recent_entries():
    _fill_trash()
    record = trash.trash_dir(paths.runs_dir()) / "run-1.json"
    meta = json.loads(record.read_text())
    record.write_text(json.dumps({**meta, "deleted_at": time.time() - 10 * 86_400}))
    assert [i.where for i in trash_empty.plan(older_than_days=7)] == ["runs"]
    out = _cli("trash", "--empty", "--older-than", "7", "--yes")
    assert out.returncode == 0 and "emptied 1 trash entry" in out.stdout, out.stderr
    assert len(trash_empty.plan()) == 2
    assert _cli("trash", "--empty", "--older-than", "-1").returncode != 0


def test_datasets_page_empties_the_trash_after_a_confirmation():
    _fill_trash()
    at = open_page(active_dataset="kept")
    assert not at.exception
    assert "Remove **3 trash entries" in texts(at)
    at.button(key="confirm_empty_trash").click().run()
    assert not at.exception
    assert "Emptied the trash: 3 entries" in texts(at)
    assert trash_empty.plan() == []
    assert not [b for b in at.button if b.key == "confirm_empty_trash"]  # nothing left to empty
