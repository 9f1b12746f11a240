"""Dataset fingerprints: a planted change (file added, removed, relabelled, edited, moved between splits) flips it;
an unchanged folder keeps it, from the per-file cache; runs record it and the runs table says "dataset changed"."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.data import fingerprint
from core.training import progress, runs, trainer
from core.training.run_config import RunConfig
from tests.helpers import make_dataset

REPO = Path(__file__).resolve().parents[1]


def fp(name: str) -> fingerprint.Fingerprint:
    out = fingerprint.dataset_fingerprint(name)
    assert out is not None
    return out


@pytest.fixture
def folder(isolated_dirs) -> Path:
    data, _ = isolated_dirs
    make_dataset("tiny", per_class=6)
    return data / "tiny"


def test_unchanged_folder_keeps_its_fingerprint_and_reads_no_file_twice(folder):
    first = fp("tiny")
    assert first.files == 18 and first.hashed == 18 and first.digest.startswith("fp1:")
    again = fp("tiny")
    assert again.digest == first.digest and again.hashed == 0  # every hash came from the cache
    victim = folder / "circle" / "circle_000.png"
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))  # touched, same bytes
    touched = fp("tiny")
    assert touched.digest == first.digest and touched.hashed == 1


def _add(folder: Path) -> None:
    shutil.copyfile(folder / "circle" / "circle_000.png", folder / "circle" / "circle_new.png")


def _remove(folder: Path) -> None:
    (folder / "square" / "square_003.png").unlink()


def _relabel(folder: Path) -> None:
    (folder / "square" / "square_003.png").rename(folder / "stripes" / "square_003.png")


def _rename(folder: Path) -> None:
    (folder / "square" / "square_003.png").rename(folder / "square" / "square_zzz.png")


def _edit_same_size_and_mtime(folder: Path) -> None:
    """New bytes, same size, and the old mtime put back: the cache key matches, so only a fresh cache sees it."""
    victim = folder / "stripes" / "stripes_001.png"
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[-20] ^= 0xFF
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))


def _edit(folder: Path) -> None:
    victim = folder / "stripes" / "stripes_001.png"
    victim.write_bytes(victim.read_bytes() + b"\0")


@pytest.mark.parametrize("change", [_add, _remove, _relabel, _rename, _edit])
def test_a_planted_change_flips_the_fingerprint(folder, change):
    before = fp("tiny").digest
    change(folder)
    after = fp("tiny")
    assert after.digest != before
    assert after.hashed <= 1  # only the new or edited file is read


def test_the_cache_is_keyed_by_size_and_mtime_and_a_lost_cache_still_gives_the_true_hash(folder):
    before = fp("tiny").digest
    _edit_same_size_and_mtime(folder)
    assert fp("tiny").digest == before  # the documented trade-off (make and git's index make the same one)
    for f in fingerprint.cache_dir().iterdir():
        f.write_text("{not json")  # a damaged cache is ignored, never trusted
    fresh = fp("tiny")
    assert fresh.digest != before and fresh.hashed == 18


def test_moving_a_file_between_splits_flips_it(isolated_dirs):
    data, _ = isolated_dirs
    make_dataset("split", per_class=6, split=True)
    before = fp("split").digest
    src = data / "split" / "test" / "circle" / "circle_000.png"
    src.rename(data / "split" / "train" / "circle" / "circle_moved.png")
    assert fp("split").digest != before


def test_same_images_elsewhere_give_the_same_fingerprint_and_a_cache_per_folder(isolated_dirs):
    data, _ = isolated_dirs
    make_dataset("one", per_class=4)
    shutil.copytree(data / "one", data / "two")
    assert fp("one").digest == fp("two").digest
    assert len(list(fingerprint.cache_dir().glob("*.json"))) == 2


def test_array_dataset_is_hashed_once_from_its_file():
    first = fp("digits")
    assert first.files == 1 and first.hashed == 1
    again = fp("digits")
    assert again.digest == first.digest and again.hashed == 0
    assert fingerprint.dataset_fingerprint("no-such-dataset") is None


def test_run_config_round_trips_the_fingerprint_and_old_configs_still_read():
    cfg = RunConfig(dataset="tiny", class_names=["a", "b"], dataset_fingerprint="fp1:abc")
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.dataset_fingerprint == "fp1:abc"
    old = {k: v for k, v in cfg.to_dict().items() if k != "dataset_fingerprint"}
    assert RunConfig.from_dict(old).dataset_fingerprint is None
    assert "dataset_fingerprint" not in RunConfig.from_dict(old).to_dict()  # written back as it was
    with pytest.raises(ValueError, match="dataset_fingerprint"):
        RunConfig.from_dict({**old, "dataset_fingerprint": 7})


def test_a_run_records_its_fingerprint_and_the_runs_table_says_when_the_data_changed(folder, isolated_dirs):
    run = trainer.start_run(trainer.TrainRequest(dataset="tiny", preset="fast", epochs=1))
    stored = json.loads((run.path / "config.json").read_text())
    assert stored["dataset_fingerprint"] == fp("tiny").digest
    old = trainer.start_run(trainer.TrainRequest(dataset="tiny", preset="fast", epochs=1))
    cfg = json.loads((old.path / "config.json").read_text())
    del cfg["dataset_fingerprint"]  # a run from before fingerprints
    (old.path / "config.json").write_text(json.dumps(cfg))

    def table() -> dict[str, str]:
        return {row["id"]: row["data"] for row in progress.runs_table(runs.list_runs())}

    assert table() == {run.run_id: "unchanged", old.run_id: "not recorded"}
    _relabel(folder)
    assert table() == {run.run_id: "dataset changed", old.run_id: "not recorded"}

    _, runs_root = isolated_dirs
    code = (
        "from core.__main__ import main\nrc = main(['runs'])\nimport sys\n"
        "print('TF' if 'tensorflow' in sys.modules or 'keras' in sys.modules else 'no TF')"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ}, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "dataset changed since this run (fingerprint " in done.stdout
    assert done.stdout.count("dataset changed") == 1 and done.stdout.strip().endswith("no TF")

    shutil.rmtree(folder)
    assert table()[run.run_id] == "dataset gone"


def test_the_listing_reuses_a_fingerprint_only_while_the_folders_look_untouched(folder, monkeypatch):
    first = fingerprint.listing_fingerprint("tiny")
    assert first == fp("tiny").digest
    _edit(folder)  # bytes changed in place: no folder mtime moves
    assert fingerprint.listing_fingerprint("tiny") == first  # reused, for at most LISTING_MAX_AGE_S
    monkeypatch.setattr(fingerprint, "LISTING_MAX_AGE_S", 0.0)
    edited = fingerprint.listing_fingerprint("tiny")
    assert edited != first and edited == fp("tiny").digest
    monkeypatch.setattr(fingerprint, "LISTING_MAX_AGE_S", 3600.0)
    _relabel(folder)  # moves two class folders' mtimes: seen at once
    assert fingerprint.listing_fingerprint("tiny") == fp("tiny").digest != edited
