"""The warm spare training process: a run handed to it trains to completion in it, claims are exclusive, spares of
other settings are never used, and a spare leaves when its launcher is gone."""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import replace

import numpy as np
import psutil
import pytest

from core import atomic, paths
from core.training import jobs, prepared, progress, runs, spare, trainer
from core.training.runs import process_start_time
from tests.helpers import make_dataset, make_image_folder, wait_for


@pytest.fixture
def warm(monkeypatch):
    monkeypatch.setenv(spare.SWITCH_ENV, "1")
    monkeypatch.setenv(spare.IDLE_ENV, "120")
    yield
    for home, _phase, _info in spare.spares():
        (home / "leave").touch()


def _fake_spare(name: str, key: str, phase_file: str = "ready.json", pid: int | None = None):
    home = spare.spare_root() / name
    home.mkdir(parents=True)
    pid = os.getpid() if pid is None else pid
    atomic.write_json(home / phase_file, {"pid": pid, "pid_start": process_start_time(pid), "key": key})
    return home


def test_a_run_handed_to_the_spare_trains_there_and_a_new_spare_follows(warm):
    name = make_dataset(per_class=8)
    assert spare.ensure()
    assert wait_for(lambda: [p for _h, p, _i in spare.spares()] == ["ready"], timeout=120), spare.spares()
    ((home, _phase, info),) = spare.spares()
    run = trainer.start_run(trainer.TrainRequest(dataset=name, preset="fast", epochs=1, batch_size=8))
    t = time.time()
    launched = jobs.launch(run)
    assert launched.status["warm_start"] is True and launched.status["pid"] == info["pid"]
    done = jobs.wait(run.run_id, timeout_s=120)
    assert done.state == "completed", done.status
    assert done.status["pid"] == info["pid"]
    assert (done.path / "model.keras").is_file()
    assert "completed" in (done.path / "job.log").read_text()
    epochs, _ = runs.read_progress(done.path)
    assert epochs and epochs[0]["t"] - t < 60
    assert wait_for(lambda: not home.exists(), timeout=10), "the spare's folder stays after it became a job"
    assert wait_for(
        lambda: not psutil.pid_exists(info["pid"]) or psutil.Process(info["pid"]).status() == "zombie", 20
    )
    assert not spare.ensure(busy=True), "no new spare while a run trains"
    assert spare.ensure() and [p for _h, p, _i in spare.spares()] == ["warming"]
    (new_home, _p, new_info) = spare.spares()[0]
    (new_home / "leave").touch()
    assert wait_for(lambda: not new_home.exists(), timeout=120), "a spare asked to leave stays"


def _prepared_spare(cfg) -> tuple:
    """Ask for `cfg` to be prepared and wait until a spare has it."""
    assert spare.ensure(prepare=cfg.to_dict())
    assert wait_for(lambda: [p for _h, p, _i in spare.spares()] == ["ready"], timeout=120), spare.spares()
    ((home, _phase, info),) = spare.spares()
    assert wait_for(lambda: (home / spare.PREPARED_FILE).is_file(), timeout=120), "the spare prepared nothing"
    assert atomic.read_json(home / spare.PREPARED_FILE, {})["ok"] is True, (home / "spare.log").read_text()
    return home, info


def _weights(run) -> tuple[list[str], list]:
    """Layer names (what Inspect shows) and weights of a run's saved model."""
    from core.models.loading import load_model

    model = load_model(run.path / "model.keras")
    return [layer.name for layer in model.layers], model.get_weights()


@pytest.mark.slow
def test_a_run_the_spare_prepared_is_the_run_a_fresh_process_trains(warm, monkeypatch):
    """Same weights to the bit and the same curves: the throwaway step and everything put back change nothing."""
    name = make_dataset(per_class=10)
    builder = {"conv_blocks": 2, "filters": 4, "dropout": 0.3, "dense_units": 8, "augmentation": True,
               "batch_norm": True}  # fmt: skip
    req = trainer.TrainRequest(dataset=name, preset="custom", builder=builder, epochs=2, batch_size=4,
                               class_weights="balanced", learning_rate=3e-3)  # fmt: skip
    _prepared_spare(trainer.resolve(req))
    prepared = jobs.wait(jobs.launch(trainer.start_run(req)).run_id, timeout_s=120)
    assert prepared.state == "completed" and prepared.status.get("prepared_s"), prepared.status
    monkeypatch.setenv(spare.SWITCH_ENV, "0")
    fresh = jobs.wait(jobs.launch(trainer.start_run(req)).run_id, timeout_s=180)
    assert (
        fresh.state == "completed" and "prepared_s" not in fresh.status and not fresh.status.get("warm_start")
    )
    (names_a, a), (names_b, b) = _weights(prepared), _weights(fresh)
    assert names_a == names_b, (
        "the prepared model's layers are named otherwise than a fresh process names them"
    )
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    curves = [[(e["loss"], e["val_loss"], e["val_accuracy"]) for e in runs.read_progress(r.path)[0]]
              for r in (prepared, fresh)]  # fmt: skip
    assert curves[0] == curves[1] and len(curves[0]) == 2


def test_a_dataset_changed_after_preparing_is_loaded_again(tmp_path):
    """In this process (the spare's code path without its start-up): parts prepared, then a file added."""
    name = make_dataset(per_class=10)
    req = trainer.TrainRequest(dataset=name, preset="fast", epochs=1, batch_size=8)
    assert prepared.on_request(trainer.resolve(req).to_dict(), tmp_path / "scratch") is True
    folder = paths.data_dir() / name / "circle"
    shutil.copy(sorted(folder.iterdir())[0], folder / "added.png")
    run = trainer.start_run(req)
    status = trainer.train_run(run.path)
    assert status["state"] == "completed", status
    assert "prepared_s" not in status, "trained on images prepared before the dataset changed"
    assert status["train_images"] + status["val_images"] == 31 and prepared._slot is None
    prepared._last_request = None


def test_prepared_parts_fit_only_the_run_they_were_prepared_for():
    cfg = trainer.resolve(trainer.TrainRequest(dataset=make_dataset(per_class=4), preset="fast", epochs=1))
    cfg = cfg.replace(dataset_fingerprint="fp1:abc")

    def offer(fp="fp1:abc", shaped=cfg):
        prepared._slot = prepared.Prepared(prepared.shaping_settings(shaped), fp, None, None, None, 1.0)  # type: ignore[arg-type]

    for run_cfg in (cfg, cfg.replace(epochs=9, pinned=["a.png"], lr_schedule="one-cycle", run_id="r2")):
        offer()
        assert prepared.take(run_cfg) is not None, (
            "a setting that acts after the build blocked the prepared parts"
        )
        assert prepared.take(run_cfg) is None, "taken twice"
    for other in (cfg.replace(learning_rate=0.5), cfg.replace(batch_size=3), cfg.replace(seed=1),
                  cfg.replace(dataset_fingerprint="fp1:changed"), cfg.replace(builder={"filters": 8})):  # fmt: skip
        offer()
        assert prepared.take(other) is None, f"prepared parts given to another run: {other}"
    offer(fp=None)
    assert prepared.take(cfg) is None, "prepared without a fingerprint, so its data cannot be checked"
    offer()
    kept = prepared._slot
    assert prepared.on_request(cfg.replace(epochs=7).to_dict(), paths.runs_dir() / "scratch") is True
    assert prepared._slot is kept, "prepared again because only the epochs changed"
    prepared._slot = prepared._last_request = None


def test_a_run_handed_over_while_the_spare_decodes_its_images_shows_how_far_it_is(warm):
    name = make_dataset(per_class=4)
    req = trainer.TrainRequest(dataset=name, preset="fast", epochs=1)
    shape = prepared.shaping_settings(trainer.resolve(req))
    home = _fake_spare("decoding", spare.settings_key(), "taken.json")
    report = spare._Requests(home).reporter(shape)
    report(0.2)  # no job yet: nothing to tell
    same, other = trainer.start_run(req), trainer.start_run(replace(req, learning_rate=0.5))
    atomic.write_json(home / "job.json", {"run_id": same.run_id})
    report(0.4)
    view = progress.summarize(runs.get_run(same.run_id), [], None)
    assert view.text.startswith("preparing data: 40%"), view.text
    atomic.write_json(home / "job.json", {"run_id": other.run_id})
    with pytest.raises(prepared.Abandon):  # a run for other settings does not wait for this preparation
        report(0.5)
    assert "preparing" not in runs.get_run(other.run_id).status


def test_preparing_stops_when_a_run_for_other_settings_arrives(tmp_path, monkeypatch, capsys):
    from core.data import datasets

    monkeypatch.setattr(datasets, "PROGRESS_EVERY_S", 0.0)
    cfg = trainer.resolve(trainer.TrainRequest(dataset=make_dataset(per_class=30), preset="fast"))

    def another_run_arrived(_fraction):
        raise prepared.Abandon("r")

    assert prepared.prepare(cfg, tmp_path, another_run_arrived) is None
    assert "stopped preparing" in capsys.readouterr().out


def test_a_decode_stopped_by_its_progress_callback_drops_the_images_not_started(tmp_path, monkeypatch):
    from core.data import datasets

    folder = make_image_folder(tmp_path / "imgs", classes=("a",), per_class=400, size=32)
    files = sorted(folder.rglob("*.png"))
    decoded = []

    def counting(path, size, channels):
        decoded.append(path)
        return images_decode(path, size, channels)

    images_decode = datasets.decode_file
    monkeypatch.setattr(datasets, "decode_file", counting)
    monkeypatch.setattr(datasets, "PROGRESS_EVERY_S", 0.0)

    def stop(_fraction):
        raise prepared.Abandon("r")

    with pytest.raises(prepared.Abandon):
        datasets.decode_files([(p, 0) for p in files], (32, 32), 1, stop)
    assert len(decoded) < len(files) // 2, f"{len(decoded)} of {len(files)} decoded after the stop"


def test_a_claim_is_exclusive_and_records_the_process_before_the_job(warm):
    home = _fake_spare("a", spare.settings_key())
    order = []

    def mark(**proc):
        order.append(("status", proc["pid"], (home / "job.json").exists()))

    assert spare.claim("run-1", mark)["pid"] == os.getpid()
    assert order == [("status", os.getpid(), False)], "the job was handed over before its pid was recorded"
    assert atomic.read_json(home / "job.json", None) == {"run_id": "run-1"}
    assert spare.claim("run-2", mark) is None, "one spare was given two runs"


def test_spares_of_other_settings_or_dead_ones_are_never_used(warm, monkeypatch):
    other = _fake_spare("other", "not-these-settings")
    dead = _fake_spare("dead", spare.settings_key(), pid=_dead_pid())
    assert spare.claim("run-1", lambda **_: pytest.fail("claimed a spare it must not use")) is None
    assert spare.ensure(busy=True) is False
    assert (other / "leave").exists(), "a spare of other settings was not asked to leave"
    assert not dead.exists(), "a dead spare's folder was kept"
    monkeypatch.setenv("CONVNET_DATA_DIR", str(spare.spare_root() / "elsewhere"))
    assert spare.settings_key() != atomic.read_json(other / "ready.json", {})["key"]


def test_a_spare_that_died_warming_up_is_not_respawned_at_once(warm):
    home = _fake_spare("broken", spare.settings_key(), "spawn.json", pid=_dead_pid())
    assert spare.ensure() is False
    assert not home.exists()
    assert spare.spares() == [], "respawned right after a failed start"


def test_a_spare_leaves_when_its_launcher_is_gone_or_it_is_asked(tmp_path):
    home = tmp_path / "s"
    home.mkdir()
    atomic.write_json(home / "ready.json", {"pid": os.getpid()})
    t = time.time()
    assert spare.wait_for_job(home, _dead_pid(), None, idle_s=60) is None
    assert time.time() - t < 3 and (home / "closing.json").exists()
    atomic.write_json(home / "ready.json", {"pid": os.getpid()})
    (home / "leave").touch()
    assert spare.wait_for_job(home, os.getpid(), process_start_time(os.getpid()), idle_s=60) is None
    (home / "leave").unlink()
    atomic.write_json(home / "job.json", {"run_id": "r1"})
    assert spare.wait_for_job(home, os.getpid(), process_start_time(os.getpid()), idle_s=60) == "r1"


def test_switched_off_nothing_is_started(monkeypatch):
    monkeypatch.setenv(spare.SWITCH_ENV, "0")
    assert spare.ensure() is False
    assert spare.claim("r", lambda **_: None) is None
    assert not spare.spare_root().exists()


def _dead_pid() -> int:
    proc = psutil.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
