"""Real-browser fixtures: Debian chromium driven by Playwright against `streamlit run app.py` on a free port.

Without chromium or playwright these tests skip with the reason; under CI=true they must run, so they fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage"]  # fmt: skip


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (Python package) is not installed: pip install -r requirements-dev.txt"
    if not Path(CHROMIUM).exists():
        return f"chromium not found at {CHROMIUM}: apt-get install -y chromium"
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run under CI: {reason}")
        pytest.skip(reason)
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """`streamlit run app.py` as a user starts it, with its own data and runs folders."""

    def __init__(self, runs_dir: Path, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.runs_dir, self.data_dir = runs_dir, data_dir
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = runs_dir.parent / f"streamlit-{self.port}.log"

    def start(self, timeout: float = 120) -> AppServer:
        env = {**os.environ, "CONVNET_RUNS_DIR": str(self.runs_dir), "CONVNET_DATA_DIR": str(self.data_dir),
               "TF_CPP_MIN_LOG_LEVEL": "2", **self.env}  # fmt: skip
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.port", str(self.port), "--server.address", "127.0.0.1",
               "--browser.gatherUsageStats", "false"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)  # fmt: skip
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return self
            except OSError:
                time.sleep(0.5)
            if self.proc.poll() is not None:
                break
        raise RuntimeError(f"streamlit did not start; log:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def app_server(chromium_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    (root / "runs").mkdir()
    (root / "data").mkdir()
    server = AppServer(root / "runs", root / "data").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    from playwright.sync_api import expect

    expect.set_options(timeout=90_000)  # TensorFlow work behind a page can take a while on 2 cores
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    ctx.close()


def press_train(page, numbers: dict[str, int], settle_ms: int = 1000) -> None:
    """Type the Train form's numbers (label -> value), let the reruns they start settle, then press Train."""
    for label, value in numbers.items():
        box = page.get_by_label(label)
        box.fill(str(value))
        box.press("Enter")
    page.wait_for_timeout(settle_ms)
    page.get_by_role("button", name="Train", exact=True).click()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
