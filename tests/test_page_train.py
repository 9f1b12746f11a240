"""AppTest of the Train page: summary, a real job started from the page, live status, runs list, bad input."""

from __future__ import annotations

from core import jobs, runs
from tests.apptest_support import open_page, texts
from tests.helpers import make_dataset


def test_summary_train_and_see_completed_run():
    make_dataset("tiny", per_class=8)
    at = open_page("pages/train.py", active_dataset="tiny")
    assert not at.exception
    summary = [e.label for e in at.expander if e.label.startswith("Model summary")]
    assert summary and "input 16×16×1" in summary[0] and "softmax head" in summary[0]
    at.number_input(key="epochs_fast").set_value(1).run()
    at.number_input(key="batch_fast").set_value(8).run()
    at.button(key="train").click().run()
    assert not at.exception
    started = runs.list_runs()
    assert len(started) == 1 and started[0].config["dataset"] == "tiny" and started[0].config["epochs"] == 1
    final = jobs.wait(started[0].run_id, timeout_s=240)
    assert final.state == "completed", final.status
    at.run()
    assert not at.exception
    assert "completed" in texts(at)
    table = at.dataframe[-1].value
    assert list(table["run"]) == [final.run_id] and list(table["status"]) == ["completed"]
    assert at.get("plotly_chart"), "no curves shown"


def test_preset_that_does_not_fit_the_images_says_so():
    make_dataset("small", per_class=3)
    at = open_page("pages/train.py", active_dataset="small")
    at.text_input(key="image_size").input("40×40").run()
    at.selectbox(key="preset").set_value("jedi-sith-binary").run()
    assert not at.exception
    assert any("at least 94x94" in e.value for e in at.error)
    at.text_input(key="image_size").input("banana").run()
    assert not at.exception and any("image size" in e.value for e in at.error)


def test_builder_preset_summary():
    make_dataset("b", per_class=3)
    at = open_page("pages/train.py", active_dataset="b")
    at.selectbox(key="preset").set_value("custom").run()
    at.number_input(key="b_blocks").set_value(3).run()
    assert not at.exception
    rows = at.dataframe[0].value
    assert list(rows["type"]).count("Conv2D") == 3


def test_stop_button_ends_the_job_as_stopped():
    import time

    make_dataset("long", per_class=30, size=32)
    at = open_page("pages/train.py", active_dataset="long")
    at.number_input(key="epochs_fast").set_value(500).run()
    at.number_input(key="batch_fast").set_value(4).run()
    at.button(key="train").click().run()
    (run,) = runs.list_runs()
    deadline = time.time() + 120
    while runs.read_progress(run.path)[1] is None and time.time() < deadline:
        time.sleep(0.3)
    at.run()
    at.button(key=f"stop_{run.run_id}").click().run()
    assert not at.exception
    final = jobs.wait(run.run_id, timeout_s=120)
    assert final.state == "stopped" and final.status["epochs_done"] < 500 and final.has_model
