"""The whole journey a new user takes on the embedded dataset, in a real browser, with a screenshot per page:
Datasets -> Train (2 epochs, the curve grows) -> Classify a PNG and a JPEG -> Inspect -> Evaluate -> export."""

from __future__ import annotations

import io
import zipfile

from PIL import Image
from playwright.sync_api import expect

from core.paths import embedded_dataset_dir
from tests.e2e.conftest import press_train, screenshot

# epochs drawn in the live loss/accuracy figure (the one whose subplot titles say "loss")
CURVE_POINTS = """() => Math.max(0, ...[...document.querySelectorAll('.js-plotly-plot')]
    .filter(p => p.layout && (p.layout.annotations || []).some(a => a.text === 'loss') && p.data && p.data[0])
    .map(p => p.data[0].x.length))"""


# Every point count the loss curve shows, noted on each animation frame: polling from the test (300 ms apart, each
# Playwright call slow on a busy machine) once missed the 3 s in which the curve had one point.
CURVE_WATCH = f"""() => {{
  window.__curveSeen = new Set();
  const tick = () => {{ window.__curveSeen.add(({CURVE_POINTS})()); requestAnimationFrame(tick); }};
  requestAnimationFrame(tick);
}}"""

IMAGES_LOADED = "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)"


def _shot(page, name: str) -> None:
    page.wait_for_function(IMAGES_LOADED, timeout=30_000)
    page.wait_for_timeout(500)
    screenshot(page, name)


def _open_page(page, name: str) -> None:
    """Click a sidebar link until the page's title shows: on 2 busy cores a click that lands while the training
    page's fragment reruns was lost once here (the Train page stayed); a person would click again."""
    link = page.get_by_test_id("stSidebar").get_by_role("link", name=name)
    heading = page.get_by_role("heading", name=name, exact=True)
    for _ in range(3):
        link.click()
        try:
            expect(heading).to_be_visible(timeout=30_000)
            return
        except AssertionError:
            continue
    expect(heading).to_be_visible()


def _samples(tmp_path):
    test = embedded_dataset_dir() / "test"
    png = test / "Trouser" / sorted(p.name for p in (test / "Trouser").iterdir())[0]
    jpg = tmp_path / "sneaker.jpg"
    src = test / "Sneaker" / sorted(p.name for p in (test / "Sneaker").iterdir())[0]
    Image.open(src).convert("RGB").resize((112, 112)).save(jpg, quality=92)
    return png, jpg


def test_new_user_journey(app_server, page, tmp_path):
    page.set_default_timeout(120_000)
    # 1. Datasets: counts and samples
    page.goto(app_server.url)
    expect(page.get_by_role("heading", name="Datasets")).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    expect(page.get_by_role("heading", name="Samples")).to_be_visible()
    expect(page.get_by_text("No unreadable or stray files.")).to_be_visible()
    _shot(page, "journey-1-datasets")

    # 2. Train the default preset for 2 epochs and watch the curve grow
    page.get_by_test_id("stSidebar").get_by_role("link", name="Train").click()
    expect(page.get_by_text("Model summary").first).to_be_visible()
    page.evaluate(CURVE_WATCH)
    press_train(page, {"Epochs": 2, "Batch size": 32})  # smaller batches: epochs long enough to see the curve
    seen: set[int] = set()
    done = page.get_by_text("completed", exact=True).first
    for _ in range(600):
        seen.add(page.evaluate(CURVE_POINTS))
        if done.is_visible():
            break
        page.wait_for_timeout(300)
    page.wait_for_function(f"({CURVE_POINTS})() >= 2", timeout=60_000)  # the last redraw may trail the status
    seen.add(page.evaluate(CURVE_POINTS))
    seen |= set(page.evaluate("() => [...window.__curveSeen]"))
    assert {1, 2} <= seen, f"curve points seen while training: {sorted(seen)}"
    expect(
        page.get_by_text("Active run", exact=True)
    ).to_be_visible()  # the full rerun after completion is done
    _shot(page, "journey-2-train")

    # 3. Classify an uploaded PNG and a JPEG
    png, jpg = _samples(tmp_path)
    _open_page(page, "Classify")
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files([str(png), str(jpg)])
    expect(page.get_by_text(png.name).first).to_be_visible()
    expect(page.get_by_text("sneaker.jpg").first).to_be_visible()
    expect(page.get_by_text("%").first).to_be_visible()
    assert page.get_by_test_id("stException").count() == 0
    _shot(page, "journey-3-classify")

    # 4. Inspect: feature-map grids and Grad-CAM
    _open_page(page, "Inspect")
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(png))
    expect(page.get_by_text("Grad-CAM for").first).to_be_visible()
    expect(page.get_by_text("conv2d_0").first).to_be_visible()
    expect(page.get_by_text("conv2d_1").first).to_be_visible()
    _shot(page, "journey-4-inspect")

    # 5. Evaluate: confusion matrix and a drill-down
    page.get_by_role("link", name="Evaluate").click()
    expect(page.get_by_role("heading", name="Confusion matrix")).to_be_visible(timeout=180_000)
    expect(page.get_by_text("predicted as").first).to_be_visible()
    expect(page.get_by_role("heading", name="Misclassified")).to_be_visible()
    assert page.get_by_test_id("stException").count() == 0
    _shot(page, "journey-5-evaluate")

    # 6. Export: download the model
    page.get_by_test_id("stSidebar").get_by_role("link", name="Train").click()
    expect(page.get_by_role("heading", name="Export")).to_be_visible()
    page.get_by_role("button", name="Prepare download").click()
    button = page.get_by_test_id("stDownloadButton").locator("button")
    expect(button.first).to_be_visible()
    with page.expect_download() as info:
        button.first.click()
    path = info.value.path()
    data = open(path, "rb").read()
    assert info.value.suggested_filename.endswith(".keras") and zipfile.is_zipfile(io.BytesIO(data))
    assert page.get_by_test_id("stException").count() == 0
