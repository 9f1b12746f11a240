"""In a real browser, on the Improve page: relabel one of the run's worst mistakes, undo it, retrain with the same
settings and open the new run on Evaluate.

The relabel is driven from the hardest-examples section (the run's planted mislabels lead it); the audit section
needs core.analysis.audit, which this test does not depend on.
"""

from __future__ import annotations

import re

import pytest
from PIL import Image
from playwright.sync_api import expect

from core.analysis import evaluation_runs
from core.data import fixes
from core.training import runs
from tests.e2e.conftest import screenshot
from tests.helpers import make_image_folder, train_tiny_run, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shapes_run(app_server):
    """A split dataset whose test split files three squares under circle, and a run trained and evaluated on it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONVNET_DATA_DIR", str(app_server.data_dir))
        mp.setenv("CONVNET_RUNS_DIR", str(app_server.runs_dir))
        root = make_image_folder(app_server.data_dir / "shapes", split=True, per_class=16)
        for i, f in enumerate(sorted((root / "test" / "square").iterdir())[:3]):
            Image.open(f).save(root / "test" / "circle" / f"mislabelled_{i}.png")
        run = train_tiny_run("shapes", epochs=4)
        evaluation_runs.evaluate_run(run.run_id)
    return root, run


def _pick_dataset(page, title: str) -> None:
    box = page.get_by_test_id("stSidebar").get_by_role("combobox", name="Dataset")
    box.click()
    page.get_by_role("option", name=title, exact=True).click()
    expect(box).to_have_value(title)


def test_relabel_undo_and_retrain(app_server, page, shapes_run, monkeypatch):
    root, run = shapes_run
    monkeypatch.setenv("CONVNET_DATA_DIR", str(app_server.data_dir))
    monkeypatch.setenv("CONVNET_RUNS_DIR", str(app_server.runs_dir))
    page.set_default_timeout(120_000)
    # start where a person starts: a deep link's first sidebar choice is lost once (page_guard switches modes)
    page.goto(app_server.url)
    expect(page.get_by_role("heading", name="Datasets", exact=True)).to_be_visible()
    _pick_dataset(page, "shapes")
    page.get_by_test_id("stSidebar").get_by_role("link", name="Improve").click()
    expect(page.get_by_role("heading", name="Improve", exact=True)).to_be_visible()
    expect(page.get_by_text("shapes", exact=True).first).to_be_visible()
    expect(page.get_by_text("Most confused classes").first).to_be_visible()
    relabel = page.get_by_role("button", name=re.compile(r"^Relabel as ")).first
    expect(relabel).to_be_visible()
    before = {p.relative_to(root).as_posix() for p in root.rglob("*.png")}
    relabel.click()
    notice = page.get_by_text(re.compile(r"^Relabelled \S+ as \w+$"))
    expect(notice).to_be_visible()
    moved = fixes.journal("shapes")[0]
    assert moved.kind == "relabel" and not (root / moved.path).exists() and (root / moved.new_path).is_file()
    screenshot(page, "improve_relabelled")
    page.get_by_role("button", name="Undo last").click()
    expect(page.get_by_text(re.compile(r"^Undone: relabelled "))).to_be_visible()
    assert {p.relative_to(root).as_posix() for p in root.rglob("*.png")} == before
    page.get_by_role("button", name="Retrain with these fixes").click()
    expect(page.get_by_text(re.compile(r"^Before and after"))).to_be_visible()
    new_ids = [r.run_id for r in runs.list_runs() if r.run_id != run.run_id]
    assert len(new_ids) == 1
    assert wait_for(lambda: runs.get_run(new_ids[0]).state == "completed", timeout=300)
    open_new = page.get_by_role("button", name="Open the retrained run on Evaluate")
    expect(open_new).to_be_enabled(timeout=60_000)
    heading = page.get_by_role("heading", name="Evaluate", exact=True)
    for _ in range(3):  # a click that lands while the polling fragment reruns the whole page can be lost once
        open_new.click()
        try:
            expect(heading).to_be_visible(timeout=30_000)
            break
        except AssertionError:
            continue
    expect(heading).to_be_visible()
    expect(page.get_by_text(new_ids[0]).first).to_be_visible()
    assert page.get_by_test_id("stException").count() == 0
    screenshot(page, "improve_retrained")
