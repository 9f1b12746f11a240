"""Teachable Machine's flow in a real browser: make a two-class dataset from uploads and one webcam shot (Chromium's
fake camera), train it for one epoch, and classify an image with the model."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import LAUNCH_ARGS, press_train, screenshot
from tests.helpers import make_image_folder

pytestmark = pytest.mark.e2e

# a camera that needs no device and no permission prompt: Chromium draws a moving test pattern
CAMERA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@pytest.fixture(scope="module")
def camera_browser(chromium_path):
    """This module's own Chromium with the fake camera, so the other browser tests keep their plain one."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=[*LAUNCH_ARGS, *CAMERA_ARGS])
        yield b
        b.close()


@pytest.fixture
def cam_page(camera_browser):
    expect.set_options(timeout=120_000)
    ctx = camera_browser.new_context(viewport={"width": 1400, "height": 1100})
    pg = ctx.new_page()
    pg.set_default_timeout(120_000)
    yield pg
    ctx.close()


def _upload_to_class(page, cls: str, files) -> None:
    """The chosen class's Files uploader, then its Add button."""
    uploader = page.get_by_test_id("stFileUploader").filter(has_text=f"Image files for {cls}")
    uploader.get_by_test_id("stFileUploaderDropzoneInput").set_input_files([str(f) for f in files])
    page.get_by_role("button", name=f"Add {len(files)} image(s) to {cls}").click()
    expect(page.get_by_text(f"Added {len(files)} image(s) to {cls}.")).to_be_visible()


def _pick_class(page, cls: str) -> None:
    page.get_by_test_id("stButtonGroup").get_by_role("radio", name=re.compile(rf"^{cls} · ")).click()
    expect(page.get_by_test_id("stFileUploader").filter(has_text=f"Image files for {cls}")).to_be_visible()


def test_build_train_and_classify_in_the_browser(app_server, cam_page, tmp_path):
    page = cam_page
    src = make_image_folder(tmp_path / "src", classes=("up", "down"), per_class=8, size=32)
    page.goto(app_server.url)
    expect(page.get_by_role("heading", name="Datasets")).to_be_visible()

    # 1. a new dataset with two classes
    page.get_by_text("Build or edit a dataset").click()
    page.get_by_role("button", name="New dataset").click()
    pop = page.get_by_test_id("stPopoverBody").filter(has=page.get_by_role("button", name="Create"))
    name = pop.get_by_label("Name")
    name.fill("updown")
    name.press("Enter")
    page.wait_for_timeout(800)
    pop.get_by_role("button", name="Create").click()
    expect(page.get_by_test_id("stButtonGroup").get_by_role("radio", name="up · 0")).to_be_visible()
    page.keyboard.press("Escape")  # close the popover

    # 2. uploads into each class (classes are listed by name: "down" is picked first)
    _upload_to_class(page, "down", sorted((src / "down").iterdir())[:7])
    _pick_class(page, "up")
    _upload_to_class(page, "up", sorted((src / "up").iterdir()))
    _pick_class(page, "down")

    # 3. one webcam shot into "down"
    page.get_by_role("tab", name="Webcam").click()
    page.get_by_role("button", name="Take Photo").click()
    expect(page.get_by_text("Webcam shots this session")).to_be_visible()
    expect(page.get_by_test_id("stButtonGroup").get_by_role("radio", name="down · 8")).to_be_visible()
    assert page.get_by_test_id("stException").count() == 0
    screenshot(page, "dataset-build")

    # 4. the new dataset is the active one: train it for one epoch
    page.get_by_test_id("stSidebar").get_by_role("link", name="Train").click()
    expect(page.get_by_text("Model summary").first).to_be_visible()
    expect(
        page.get_by_role("main").get_by_text("updown", exact=True).first
    ).to_be_visible()  # the active dataset
    press_train(page, {"Epochs": 1, "Batch size": 8})
    expect(page.get_by_text("completed", exact=True).first).to_be_visible(timeout=300_000)
    expect(page.get_by_text("Active run", exact=True)).to_be_visible()

    # 5. classify an image with it
    link = page.get_by_test_id("stSidebar").get_by_role("link", name="Classify")
    heading = page.get_by_role("heading", name="Classify", exact=True)
    for _ in range(3):  # a click that lands during the Train page's fragment rerun can be lost
        link.click()
        try:
            expect(heading).to_be_visible(timeout=30_000)
            break
        except AssertionError:
            continue
    probe = sorted((src / "up").iterdir())[0]
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(probe))
    expect(page.get_by_text(probe.name).first).to_be_visible()
    expect(page.get_by_text("%").first).to_be_visible()
    expect(page.get_by_text(re.compile(r"^(up|down)$")).first).to_be_visible()
    assert page.get_by_test_id("stException").count() == 0
    screenshot(page, "dataset-build-classify")
