"""A person trains nothing by hand: a tiny run exists, they drop a PNG on Classify and Inspect and read the answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from core.data.keras_datasets import FASHION_CLASSES
from core.paths import embedded_dataset_dir
from tests.e2e.conftest import REPO, screenshot


@pytest.fixture(scope="module")
def trained_server(app_server):
    """One real run in the server's own runs folder, trained by the CLI the way a person would."""
    env = {**os.environ, "CONVNET_RUNS_DIR": str(app_server.runs_dir), "CONVNET_DATA_DIR": str(app_server.data_dir),
           "TF_CPP_MIN_LOG_LEVEL": "2"}  # fmt: skip
    cmd = [sys.executable, "-m", "core", "train", "--dataset", "fashion-mnist-sample", "--preset", "fast",
           "--epochs", "4", "--batch-size", "16", "--limit", "2000", "--quiet"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return app_server


def _trouser_png():
    return sorted((embedded_dataset_dir() / "test" / "Trouser").glob("*.png"))[0]


def test_classify_then_inspect_an_uploaded_png(trained_server, page):
    page.goto(f"{trained_server.url}/classify")  # a deep link as the server's very first request
    expect(page.get_by_role("heading", name="Classify")).to_be_visible(timeout=90_000)
    expect(page.get_by_text("input 28×28×1")).to_be_visible(timeout=60_000)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(_trouser_png()))
    chart = page.locator(".js-plotly-plot").first
    expect(chart).to_be_visible(timeout=60_000)
    verdict = page.get_by_role("heading", name=re.compile(r"^(unknown|.+ · \d+\.\d%)$")).first
    expect(verdict).to_be_visible()
    text = chart.inner_text()
    assert all(name in text for name in FASHION_CLASSES), text
    assert re.search(r"\d+\.\d%", text)
    assert page.get_by_test_id("stException").count() == 0
    page.wait_for_timeout(500)  # let plotly finish its first paint
    screenshot(page, "classify")

    page.goto(f"{trained_server.url}/inspect")
    expect(page.get_by_role("heading", name="Inspect")).to_be_visible(timeout=90_000)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(_trouser_png()))
    expect(page.get_by_text("conv2d_0: 16 maps of 28×28")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("conv2d_1: 32 maps of 14×14")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Grad-CAM for "))).to_be_visible()
    expect(page.get_by_text(re.compile(r"^each kernel scaled"))).to_be_visible()
    assert page.get_by_test_id("stException").count() == 0
    page.wait_for_timeout(500)
    screenshot(page, "inspect")


def test_bad_uploads_in_the_browser_answer_with_a_message(trained_server, page, tmp_path):
    """A non-image, an empty file and a 1.6-gigapixel PNG of a few hundred bytes, then a good image."""
    from tests.test_images import crafted_png

    files = {"notes.png": b"just text", "empty.png": b"", "huge.png": crafted_png(40000, 40000)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    page.goto(f"{trained_server.url}/classify")
    expect(page.get_by_text("input 28×28×1")).to_be_visible(timeout=90_000)
    upload = page.get_by_test_id("stFileUploaderDropzoneInput")
    upload.set_input_files([str(tmp_path / n) for n in files] + [str(_trouser_png())])
    alerts = page.get_by_test_id("stAlertContentError")
    expect(alerts.nth(2)).to_be_visible(timeout=60_000)
    text = " ".join(alerts.all_inner_texts())
    assert "not an image" in text and "empty" in text and "image too large: 1600 megapixels" in text, text
    expect(page.locator(".js-plotly-plot").first).to_be_visible()  # the good image still classifies
    assert page.get_by_test_id("stException").count() == 0


def test_inspect_time_lapse_epoch_slider_scrubs(trained_server, page):
    """The run above recorded a time-lapse; moving the epoch slider changes the epoch shown."""
    page.goto(f"{trained_server.url}/inspect")
    expect(page.get_by_role("heading", name="Inspect")).to_be_visible(timeout=90_000)
    page.get_by_text("Time-lapse: watch this run learn").click()  # the toggle
    expect(page.get_by_text("conv2d_0 · epoch 4: 16 maps of 28×28")).to_be_visible(timeout=60_000)
    thumb = page.get_by_role("slider")
    expect(thumb).to_have_count(1)
    thumb.focus()
    thumb.press("Home")
    expect(page.get_by_text("conv2d_0 · before training: 16 maps of 28×28")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("conv2d_0 · epoch 4:")).to_have_count(0)
    thumb.press("ArrowRight")
    expect(page.get_by_text("conv2d_0 · epoch 1: 16 maps of 28×28")).to_be_visible(timeout=30_000)
    expect(
        page.get_by_text(re.compile(r"^Grad-CAM for .+, epoch 1$|^epoch 1: Grad-CAM found no region"))
    ).to_be_visible()
    assert page.get_by_test_id("stException").count() == 0
    screenshot(page, "inspect-timelapse")


def test_projector_image_on_hover(trained_server, page):
    """Evaluate's projector with "Image on hover": hovering a point shows that image in the tooltip."""
    page.goto(f"{trained_server.url}/evaluate")
    expect(page.get_by_role("heading", name="Embedding projector")).to_be_visible(timeout=180_000)
    # the toggle first, and its rerun done, before the button: a click during a rerun can supersede the
    # button's one-rerun press, and the projection would never be computed
    page.get_by_text("Image on hover", exact=True).click()
    expect(page.get_by_role("switch", name="Image on hover")).to_be_checked()
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)
    page.get_by_role("button", name="Compute PCA 2-D").click()
    chart = page.get_by_test_id("stVegaLiteChart")
    expect(chart).to_be_visible(timeout=60_000)
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    assert box is not None
    tooltip_image = page.locator("#vg-tooltip-element img")
    for fy in [i / 24 for i in range(2, 22)]:  # sweep the plot until the pointer lands on a point
        for fx in [i / 24 for i in range(3, 20)]:
            page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            if tooltip_image.count() and tooltip_image.first.is_visible():
                break
        else:
            continue
        break
    expect(tooltip_image.first).to_be_visible()
    assert tooltip_image.first.get_attribute("src").startswith("data:image/png;base64,")
    expect(page.locator("#vg-tooltip-element")).to_contain_text("predicted")
    assert page.get_by_test_id("stException").count() == 0
    screenshot(page, "evaluate-projector-hover")
