"""A run's life: trained once under its lock, liveness by psutil, deleted into a trash and restored, renamed,
never brought back by a stray write after deletion, and a killed writer's temp files swept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from filelock import FileLock

from core import atomic
from core.errors import UserError
from core.models import loading
from core.training import jobs, runs, trainer
from tests.helpers import make_dataset, wait_for

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env={**os.environ},
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def one_line_error(out: subprocess.CompletedProcess, needle: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], out.stderr


def _queued(name: str = "tiny", **kw) -> runs.Run:
    make_dataset(name, per_class=4)
    return trainer.start_run(trainer.TrainRequest(dataset=name, epochs=1, batch_size=8, **kw))


def _snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}


def _stale_temp(folder: Path, name: str) -> Path:
    p = folder / name
    p.write_bytes(b"half a model")
    old = time.time() - 3600
    os.utime(p, (old, old))
    return p


def test_a_run_is_trained_once_and_a_finished_run_is_refused_untouched():
    run = _queued()
    leftover = _stale_temp(run.path, ".model.keras.tmp-abcd1234.keras")
    assert trainer.train_run(run.path)["state"] == "completed"
    assert not leftover.exists(), "a killed save's temp file survived the next start"
    before = _snapshot(run.path)
    with pytest.raises(UserError, match="already completed; start a new run"):
        trainer.train_run(run.path)
    assert _snapshot(run.path) == before
    out = cli("train", "--run", run.run_id)
    one_line_error(out, f"run {run.run_id} is already completed; start a new run")
    assert _snapshot(run.path) == before, "model.keras, progress or status changed"
    for state in ("stopped", "failed", "running"):
        runs.update_status(run.path, state=state)
        with pytest.raises(UserError, match=f"already {state}"):
            trainer.train_run(run.path)
        with pytest.raises(UserError, match=f"already {state}"):
            jobs.launch(runs.get_run(run.run_id))


def test_a_second_trainer_is_refused_while_the_lock_is_held():
    run = _queued()
    lock = FileLock(str(run.path / "train.lock"))
    lock.acquire(timeout=0)  # as a trainer in another process holds it
    before = _snapshot(run.path)
    try:
        with pytest.raises(UserError, match="already being trained by another process"):
            trainer.train_run(run.path)
        assert _snapshot(run.path) == before and runs.get_run(run.run_id).state == "queued"
    finally:
        lock.release()


def test_liveness_comes_from_psutil_and_a_zombie_is_dead():
    me = os.getpid()
    assert abs(trainer.process_start_time(me) - psutil.Process(me).create_time()) < 1e-3
    assert trainer.process_start_time(2**22 + 12345) is None
    assert jobs.is_alive({"pid": me, "pid_start": trainer.process_start_time(me)})
    assert not jobs.is_alive({"pid": me, "pid_start": trainer.process_start_time(me) - 5})
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # not reaped: a zombie until we wait
    try:
        deadline = time.time() + 30
        while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE and time.time() < deadline:
            time.sleep(0.05)
        status = {"pid": zombie.pid, "pid_start": psutil.Process(zombie.pid).create_time()}
        assert not jobs.is_alive(status)
    finally:
        zombie.wait()
    offenders = [p.name for p in (REPO / "core").rglob("*.py") if "/proc" in p.read_text()]
    assert offenders == [], f"Linux-only /proc used in {offenders}"


def test_stop_on_an_unknown_id_creates_nothing():
    with pytest.raises(UserError, match="no run"):
        jobs.stop("20990101-000000-fast-none-abcd")
    assert list(runs.runs_dir().iterdir()) == []
    out = cli("stop", "20990101-000000-fast-none-abcd")
    one_line_error(out, "no run")
    assert list(runs.runs_dir().iterdir()) == []


def test_list_runs_sweeps_a_finished_runs_leftover_temps_but_not_an_active_runs():
    done = _queued("a")
    runs.update_status(done.path, state="completed")
    active = _queued("b")
    stale = [_stale_temp(done.path, n) for n in (".model.keras.tmp-x1y2.keras", ".status.json.tmp-a1b2.tmp")]
    fresh = done.path / ".progress.tmp-zz.tmp"
    fresh.write_bytes(b"being written")
    kept = _stale_temp(active.path, ".model.keras.tmp-q9.keras")
    jobs.list_runs()
    assert not any(p.exists() for p in stale) and fresh.exists() and kept.exists()


def test_delete_moves_to_the_trash_and_restore_brings_it_back():
    run = _queued()
    with pytest.raises(UserError, match="still queued"):
        runs.delete_run(run.run_id)
    runs.update_status(run.path, state="completed")
    before = _snapshot(run.path)
    entry = runs.delete_run(run.run_id)
    assert entry == run.run_id and not run.path.exists()
    assert [r.run_id for r in runs.list_runs()] == [] and [e.original for e in runs.trashed_runs()] == [entry]
    with pytest.raises(UserError, match="no run"):
        runs.get_run(run.run_id)
    back = runs.restore_run(entry)
    assert back.run_id == run.run_id and _snapshot(back.path) == before and runs.trashed_runs() == []
    with pytest.raises(UserError, match="nothing called"):
        runs.restore_run(entry)


def test_labels_live_beside_status_and_short_labels_read_well():
    run = _queued()
    runs.update_status(run.path, state="completed", best_val_accuracy=0.875, warnings=["loss exploded: x"])
    status_before = (run.path / "status.json").read_bytes()
    r = runs.get_run(run.run_id)
    assert r.name == "" and r.note == "" and r.warnings == ["loss exploded: x"]
    stamp = time.strftime("%b", time.strptime(run.run_id[:15], "%Y%m%d-%H%M%S"))
    label = r.short_label()
    parts = label.split(" · ")
    assert parts[0].startswith(stamp) and parts[0].endswith(run.run_id[-4:]), label
    assert parts[1:] == ["fast", "tiny", "val 87.5%", "completed"] and r.label() == label
    named = runs.set_label(run.run_id, name="  baseline  ", note="first try\nlr from the notebook")
    assert named.name == "baseline" and named.short_label().startswith("baseline · fast")
    again = runs.get_run(run.run_id)
    assert again.name == "baseline" and again.note == "first try\nlr from the notebook"
    assert (run.path / "status.json").read_bytes() == status_before, "labels must never touch status.json"
    assert json.loads((run.path / runs.LABEL_FILE).read_text()) == {
        "name": "baseline",
        "note": "first try\nlr from the notebook",
    }
    assert runs.set_label(run.run_id, note="").name == "baseline" and runs.get_run(run.run_id).note == ""
    for bad, msg in [(dict(name="a\nb"), "one line"), (dict(name="x" * 500), "at most")]:
        with pytest.raises(UserError, match=msg):
            runs.set_label(run.run_id, **bad)
    with pytest.raises(UserError, match="no run"):
        runs.set_label("20990101-000000-fast-none-abcd", name="x")


def test_cli_runs_delete_restore_trash_rename_note():
    run = _queued()
    runs.update_status(
        run.path, state="completed", warnings=["validation accuracy stayed at chance level: hint"]
    )
    listing = cli("runs")
    assert listing.returncode == 0 and run.run_id in listing.stdout
    assert (
        "fast · tiny" in listing.stdout and "warning: validation accuracy stayed at chance" in listing.stdout
    )
    assert cli("runs", "--rename", run.run_id, "my run").returncode == 0
    assert cli("runs", "--note", run.run_id, "try sgd next").returncode == 0
    listing = cli("runs").stdout
    assert "my run · fast · tiny" in listing and "note: try sgd next" in listing
    out = cli("runs", "--delete", run.run_id)
    assert out.returncode == 0 and f"--restore {run.run_id}" in out.stdout and not run.path.exists()
    assert run.run_id in cli("runs", "--trash").stdout and run.run_id not in cli("runs").stdout
    one_line_error(cli("runs", "--delete", run.run_id), "no run")
    assert cli("runs", "--restore", run.run_id).returncode == 0 and runs.get_run(run.run_id).name == "my run"
    one_line_error(cli("runs", "--restore", run.run_id), "nothing called")
    make_dataset("gone", per_class=2)
    out = cli("datasets", "--delete", "gone")
    assert out.returncode == 0 and "--restore gone" in out.stdout
    assert "gone" in cli("datasets", "--trash").stdout and "gone " not in cli("datasets").stdout
    one_line_error(cli("datasets", "--delete", "mnist"), "built-in")
    assert cli("datasets", "--restore", "gone").stdout.strip() == "restored gone"


def test_a_run_deleted_while_training_stays_deleted(tmp_path):
    make_dataset("slow", per_class=40, size=32)
    run = jobs.start(trainer.TrainRequest(dataset="slow", preset="fast", epochs=200, batch_size=4))
    assert runs.get_run(run.run_id).state == "queued", "launch must leave the run for the job to claim"
    assert wait_for(lambda: runs.read_progress(run.path)[1] is not None, 180), "job never reported a batch"
    moved = tmp_path / "moved"
    os.replace(run.path, moved)  # what a delete (or someone's rm) does under a running job
    proc = jobs._children[run.run_id]
    assert proc.wait(timeout=120) == 0
    time.sleep(0.5)
    assert not run.path.exists(), f"run folder came back: {sorted(p.name for p in run.path.iterdir())}"
    log = (moved / "job.log").read_text()
    assert "Traceback" not in log and "was deleted while training" in log, log[-2000:]
    assert json.loads((moved / "status.json").read_text())["state"] == "running"  # nothing written after
    if (moved / "model.keras").exists():
        loading.load_model(moved / "model.keras")
    assert atomic.sweep_temp_files(moved, older_than_s=0) == []
