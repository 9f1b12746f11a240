"""In a real browser: train the default preset for one epoch on the embedded dataset, see the curve and 'completed';
the run is handed to the warm spare process the Train page keeps (warm start on, as for a user), which had prepared
the form's settings (data, model, traced train step) before the click; the sidebar
follows the new run, and the form keeps its settings across a visit to another page."""

import json
import re

import pytest
from playwright.sync_api import expect

from core.training.runs import default_name
from tests.e2e.conftest import AppServer, press_train, screenshot
from tests.helpers import wait_for


@pytest.fixture(scope="module")
def app_server(chromium_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e-train")
    (root / "runs").mkdir()
    (root / "data").mkdir()
    server = AppServer(root / "runs", root / "data", env={"CONVNET_WARM_START": "1"}).start()
    yield server
    server.stop()


def _prepared(runs_dir):
    def check() -> bool:
        for marker in (runs_dir / ".spare").glob("*/prepared.json"):
            try:
                return bool(json.loads(marker.read_text()).get("ok"))
            except (OSError, ValueError):
                return False
        return False

    return check


def test_train_one_epoch_from_the_browser(app_server, page):
    page.goto(f"{app_server.url}/train")
    expect(page.get_by_role("heading", name="Train")).to_be_visible(timeout=90_000)
    expect(page.get_by_text("Model summary").first).to_be_visible(timeout=60_000)
    spare_ready = lambda: any((app_server.runs_dir / ".spare").glob("*/ready.json"))  # noqa: E731
    assert wait_for(spare_ready, timeout=120), "the Train page started no warm spare"
    assert wait_for(_prepared(app_server.runs_dir), timeout=120), (
        "the spare did not prepare the form's settings"
    )
    press_train(page, {"Epochs": 1}, settle_ms=1500)  # the epochs shape nothing prepared: it stays prepared
    expect(page.get_by_text("completed", exact=True).first).to_be_visible(timeout=240_000)
    curves = page.locator(".js-plotly-plot").first
    expect(curves).to_be_visible()
    assert "accuracy" in curves.inner_text() and "loss" in curves.inner_text()
    run_dirs = [p for p in app_server.runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(run_dirs) == 1 and (run_dirs[0] / "model.keras").is_file()
    status = json.loads((run_dirs[0] / "status.json").read_text())
    assert status.get("warm_start") is True and status.get("prepared_s"), status
    # a refresh finds the same run again from disk (the URL carries it)
    page.reload()
    expect(page.get_by_text(run_dirs[0].name).first).to_be_visible(timeout=90_000)
    assert page.get_by_test_id("stException").count() == 0
    # the sidebar's active run is the run just trained, by its short label (name · preset · dataset · acc · state)
    sidebar = page.get_by_test_id("stSidebar")
    active = sidebar.get_by_role("combobox", name="Active run")
    expect(active).to_have_value(
        re.compile(
            rf"^{re.escape(default_name(run_dirs[0].name))} · fast · fashion-mnist-sample · .* · completed$"
        )
    )
    # the form's settings survive a visit to another page (a reload is a new session, so set one again first,
    # after the live view's one full rerun for the finished run)
    page.wait_for_timeout(3000)
    epochs = page.get_by_label("Epochs")
    epochs.fill("3")
    epochs.press("Enter")
    page.wait_for_timeout(1500)
    sidebar.get_by_role("link", name="Datasets").click()
    expect(page.get_by_role("heading", name="Datasets")).to_be_visible(timeout=90_000)
    sidebar.get_by_role("link", name="Train").click()
    expect(page.get_by_role("heading", name="Train")).to_be_visible(timeout=60_000)
    expect(page.get_by_label("Epochs")).to_have_value("3", timeout=30_000)
    assert page.get_by_test_id("stException").count() == 0
    screenshot(page, "train")
