"""Faults in a real browser: two sessions training at once, and a Streamlit restart during training."""

from __future__ import annotations

import os
import signal
import time

from playwright.sync_api import expect

from core.training import jobs, runs
from tests.e2e.conftest import AppServer, press_train


def _start_training(page, url: str, epochs: int) -> None:
    page.goto(f"{url}/train")
    expect(page.get_by_text("Model summary").first).to_be_visible(timeout=90_000)
    press_train(page, {"Epochs": epochs})


def _new_run(runs_dir, known: set[str], timeout: float = 60) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        # a run's folder is made a moment before its config.json is written into it
        fresh = {
            p.name for p in runs_dir.iterdir() if (p / "config.json").is_file() and not p.name.startswith(".")
        }
        fresh -= known
        if fresh:
            return fresh.pop()
        time.sleep(0.3)
    raise AssertionError("no run directory appeared")


def test_two_sessions_each_see_only_their_own_job(app_server, browser, monkeypatch):
    monkeypatch.setenv("CONVNET_RUNS_DIR", str(app_server.runs_dir))
    pages = [browser.new_context(viewport={"width": 1300, "height": 900}).new_page() for _ in range(2)]
    ids: list[str] = []
    for page in pages:
        page.set_default_timeout(90_000)
        known = {p.name for p in app_server.runs_dir.iterdir()}
        _start_training(page, app_server.url, epochs=2)
        ids.append(_new_run(app_server.runs_dir, known))
    for page, mine, other in ((pages[0], ids[0], ids[1]), (pages[1], ids[1], ids[0])):
        progress = page.get_by_test_id("stProgress").first
        expect(progress).to_contain_text(mine, timeout=60_000)
        assert other not in progress.inner_text()
    for run_id in ids:
        assert jobs.wait(run_id, timeout_s=300).state == "completed"
    for page, mine in zip(pages, ids, strict=True):
        expect(page.get_by_test_id("stProgress").first).to_contain_text(mine)
        expect(page.get_by_text("completed", exact=True).first).to_be_visible(timeout=60_000)
        page.context.close()


def test_server_restart_during_training_shows_the_true_status(chromium_path, browser, tmp_path, monkeypatch):
    tmp_path = tmp_path / "srv"
    (tmp_path / "runs").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("CONVNET_RUNS_DIR", str(tmp_path / "runs"))
    first = AppServer(tmp_path / "runs", tmp_path / "data").start()
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.set_default_timeout(90_000)
    try:
        _start_training(page, first.url, epochs=200)
        run_id = _new_run(tmp_path / "runs", set())
        deadline = time.time() + 120
        while runs.get_run(run_id).state != "running" and time.time() < deadline:
            time.sleep(0.5)
    finally:
        first.stop()  # the Streamlit server goes away; the training job is its own process and goes on
    second = AppServer(tmp_path / "runs", tmp_path / "data").start()
    try:
        assert jobs.get(run_id).state == "running"
        page.goto(f"{second.url}/train")
        table = page.get_by_test_id("stDataFrame").last
        expect(table).to_be_visible(timeout=90_000)
        expect(page.get_by_test_id("stMainBlockContainer").get_by_text("Runs", exact=True)).to_be_visible()
        expect(page.locator("[role=gridcell]", has_text="running").first).to_be_attached(timeout=60_000)
        assert jobs.get(run_id).state == "running"
        os.kill(int(runs.get_run(run_id).status["pid"]), signal.SIGKILL)  # the job dies while nobody watches
        time.sleep(1)
        page.goto(f"{second.url}/train")
        # the runs table is a canvas grid; its cells live in an accessible (hidden) table
        expect(page.get_by_text("failed: training process ended unexpectedly").first).to_be_attached(
            timeout=90_000
        )
        assert jobs.get(run_id).state == "failed"
    finally:
        second.stop()
        try:
            jobs.kill(run_id)
        except Exception:
            pass
