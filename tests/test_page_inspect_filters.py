"""Inspect's "What a filter looks for" section in AppTest, on a real tiny run: compute, cache, reopen."""

from __future__ import annotations

import pytest

from core.analysis import filter_viz
from core.models import loading
from tests import helpers
from tests.apptest_support import open_trained_page, texts


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return helpers.module_run(tmp_path_factory, "inspect-filters")


def _captions(at) -> list[str]:
    return [c for img in at.image for c in img.captions]


def test_visualise_a_layer_then_find_it_cached_in_the_run(trained, isolated_dirs, monkeypatch):
    run = trained[2]
    page = open_trained_page(trained, monkeypatch, "pages/inspect.py")
    at = page.at
    assert "What a filter looks for" in texts(at)  # shown before any image is picked
    assert "first 64 filters" in texts(at) and "Pictures are kept with the run" in texts(at)
    layers = filter_viz.filter_layers(loading.load_run_model(run).model)
    assert at.selectbox(key="ins_filt_layer").options == [x.label for x in layers]  # every top-level conv
    assert [x.name for x in layers] == ["conv2d_0", "conv2d_1"]
    assert not [c for c in _captions(at) if "gradient-ascent" in c]  # nothing computed before the button
    at.selectbox(key="ins_filt_layer").set_value("conv2d_1")
    at.button(key="ins_filt_go").click()
    at = page.run()
    caption = next(c for c in _captions(at) if "gradient-ascent" in c)
    assert (
        caption.startswith("conv2d_1: all 32 filters, 30 gradient-ascent steps") and "Computed in" in caption
    )
    assert filter_viz.cache_path(run, "conv2d_1").is_file()

    again = open_trained_page(trained, monkeypatch, "pages/inspect.py")  # a new session, a restarted server
    again.at.selectbox(key="ins_filt_layer").set_value("conv2d_1")
    at = again.run()
    caption = next(c for c in _captions(at) if "gradient-ascent" in c)
    assert caption.startswith("conv2d_1: all 32 filters") and "Computed in" not in caption
