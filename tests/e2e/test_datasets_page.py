"""A person opens the app: the Datasets page shows the ten Fashion-MNIST classes and the count chart."""

from urllib.parse import urlparse

from playwright.sync_api import expect

from core.data.keras_datasets import FASHION_CLASSES
from tests.e2e.conftest import screenshot

LOCAL = {"127.0.0.1", "localhost", None}  # None: data: URLs


def test_datasets_page_shows_classes_and_chart(app_server, page):
    outside = []  # the app needs no network at run time: not a font, not a favicon
    page.on("request", lambda r: None if urlparse(r.url).hostname in LOCAL else outside.append(r.url))
    page.goto(app_server.url)
    expect(page.get_by_role("heading", name="Datasets")).to_be_visible(timeout=90_000)
    expect(page.get_by_text("Fashion-MNIST sample (embedded)").first).to_be_visible()
    chart = page.locator(".js-plotly-plot").first
    expect(chart).to_be_visible(timeout=60_000)
    chart_text = chart.inner_text()
    for name in FASHION_CLASSES:
        assert name in chart_text, f"{name} missing from the count chart"
    expect(page.get_by_text("No unreadable or stray files.")).to_be_visible(timeout=90_000)
    assert page.get_by_test_id("stException").count() == 0
    screenshot(page, "datasets")
    assert outside == [], f"the page asked the network for {outside}"
