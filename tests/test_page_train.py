"""AppTest of the Train page: summary, a real job started from the page, live status, runs list, bad input."""

from __future__ import annotations

from core.training import jobs, runs
from tests.apptest_support import open_page, texts
from tests.helpers import make_dataset


def test_summary_train_and_see_completed_run_which_becomes_the_active_run():
    make_dataset("tiny", per_class=8)
    older = _finished_run("tiny", model=True)
    earlier = _finished_run("tiny", model=True)
    at = open_page("pages/train.py", active_dataset="tiny")
    assert not at.exception
    at.selectbox(key="active_run").set_value(older.run_id).run()
    assert at.session_state["active_run"] == older.run_id
    summary = [e.label for e in at.expander if e.label.startswith("Model summary")]
    assert summary and "input 16×16×1" in summary[0] and "softmax head" in summary[0]
    at.number_input(key="epochs_fast").set_value(1).run()
    at.number_input(key="batch_fast").set_value(8).run()
    at.button(key="train").click().run()
    assert not at.exception
    started = runs.list_runs()
    assert len(started) == 3 and started[0].config.dataset == "tiny" and started[0].config.epochs == 1
    final = jobs.wait(started[0].run_id, timeout_s=240)
    assert final.state == "completed", final.status
    at.run()
    assert not at.exception
    assert "completed" in texts(at)
    assert at.session_state["active_run"] == final.run_id  # follows the run just trained, and stays on it
    table = at.dataframe[-1].value
    assert list(table["id"]) == [final.run_id, earlier.run_id, older.run_id]
    assert list(table["status"]) == ["completed"] * 3
    assert at.get("plotly_chart"), "no curves shown"
    at.run()
    assert at.session_state["active_run"] == final.run_id
    at.selectbox(key="active_run").set_value(earlier.run_id).run()  # a person's pick wins from then on
    at.run()
    assert not at.exception and at.session_state["active_run"] == earlier.run_id


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
    picked, _ = _finished_run("long", model=True), _finished_run("long", model=True)
    at = open_page("pages/train.py", active_dataset="long")
    at.selectbox(key="active_run").set_value(picked.run_id).run()
    at.number_input(key="epochs_fast").set_value(500).run()
    at.number_input(key="batch_fast").set_value(4).run()
    at.button(key="train").click().run()
    run = runs.list_runs()[0]
    assert run.run_id != picked.run_id and at.session_state["active_run"] == picked.run_id
    deadline = time.time() + 120
    while not run.has_model and time.time() < deadline:  # saved after the first epoch
        time.sleep(0.3)
    at.run()
    assert not at.exception
    assert at.session_state["active_run"] == run.run_id  # active as soon as it has a model, mid-training
    at.button(key=f"stop_{run.run_id}").click().run()
    assert not at.exception
    final = jobs.wait(run.run_id, timeout_s=120)
    assert final.state == "stopped" and final.status["epochs_done"] < 500 and final.has_model


def _finished_run(dataset: str = "tiny", acc: float = 0.5, model: bool = False, **status) -> runs.Run:
    """A finished run on disk without training (the table, sidebar and trash only read its JSON files)."""
    run = runs.create_run({"preset": "fast", "dataset": dataset, "epochs": 1, "class_names": ["a", "b"],
                           "input_shape": [16, 16, 1]})  # fmt: skip
    runs.update_status(run.path, state="completed", best_val_accuracy=acc, epochs_done=1, **status)
    if model:
        (run.path / "model.keras").write_bytes(b"not read by these tests")
    return runs.get_run(run.run_id)


def _select(at, row: int) -> None:
    table = at.dataframe[-1]
    at.session_state[table.key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, at.exception


def _confirm_buttons(at) -> list:
    return [b for b in at.button if (b.key or "").startswith("confirm_delete")]


def test_delete_moves_the_confirmed_run_to_the_trash_clears_the_selection_and_undo_restores_it():
    make_dataset("tiny", per_class=3)
    for acc in (0.5, 0.6, 0.7):
        _finished_run(acc=acc)
    at = open_page("pages/train.py", active_dataset="tiny")
    ids = list(at.dataframe[-1].value["id"])
    assert len(ids) == 3
    _select(at, 0)
    assert "cannot be undone" not in texts(at)
    (confirm,) = _confirm_buttons(at)
    assert confirm.key == f"confirm_delete_{ids[0]}"  # the button is bound to the run it asks about
    confirm.click().run()
    assert not at.exception
    assert [r.run_id for r in runs.list_runs()] == ids[1:]
    assert (runs.runs_dir() / ".trash").is_dir() and any((runs.runs_dir() / ".trash").iterdir())
    # the confirm is gone and nothing is selected: no second click can delete the run that moved into row 0
    assert _confirm_buttons(at) == []
    assert list(at.dataframe[-1].value["id"]) == ids[1:]
    assert "Select one run" in texts(at)
    at.run()
    assert _confirm_buttons(at) == [] and [r.run_id for r in runs.list_runs()] == ids[1:]
    (undo,) = [b for b in at.button if b.label == "Undo"]
    undo.click().run()
    assert not at.exception
    assert sorted(r.run_id for r in runs.list_runs()) == sorted(ids)
    assert list(at.dataframe[-1].value["id"]) == ids and not [b for b in at.button if b.label == "Undo"]


def test_table_and_sidebar_show_short_labels_and_warnings_and_a_run_can_be_renamed():
    make_dataset("tiny", per_class=3)
    run = _finished_run(acc=0.34, model=True, warnings=["validation accuracy stayed at chance level (33%)"],
                        hint="try a lower learning rate")  # fmt: skip
    at = open_page("pages/train.py", active_dataset="tiny", watch_run=run.run_id)
    table = at.dataframe[-1].value
    assert list(table["run"]) == [f"⚠ {run.short_label()}"]
    assert "chance level" in table["warnings"][0] and list(table["id"]) == [run.run_id]
    assert at.selectbox(key="active_run").options == [f"⚠ {run.short_label()}"]
    # the live view of the watched run shows the warning and its hint once the run has ended
    assert any("chance level" in w.value for w in at.warning)
    assert "try a lower learning rate" in "\n".join(c.value for c in at.caption)
    _select(at, 0)
    at.text_input(key=f"name_{run.run_id}").input("baseline")
    at.text_input(key=f"note_{run.run_id}").input("first try, lr too high")
    at.button(key=f"save_label_{run.run_id}").click().run()
    assert not at.exception
    saved = runs.get_run(run.run_id)
    assert saved.name == "baseline" and saved.note == "first try, lr too high"
    table = at.dataframe[-1].value
    assert (
        table["run"][0].startswith("⚠ baseline · fast · tiny")
        and table["note"][0] == "first try, lr too high"
    )
    assert at.selectbox(key="active_run").options[0].startswith("⚠ baseline")


def test_form_settings_survive_a_visit_to_another_page():
    make_dataset("tiny", per_class=3)
    at = open_page("pages/train.py", active_dataset="tiny")
    at.number_input(key="epochs_fast").set_value(7).run()
    at.number_input(key="lr_fast").set_value(0.0123).run()
    at.number_input(key="seed").set_value(5).run()
    at.toggle(key="restore").set_value(False).run()
    at.switch_page("pages/datasets.py").run()
    assert not at.exception
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert at.number_input(key="epochs_fast").value == 7
    assert at.number_input(key="lr_fast").value == 0.0123
    assert at.number_input(key="seed").value == 5
    assert at.toggle(key="restore").value is False


def test_start_here_until_the_first_run_exists():
    make_dataset("tiny", per_class=3)
    at = open_page("pages/train.py", active_dataset="tiny")
    assert "Start here" in texts(at)
    links = [str(e.proto.label) for e in at.get("page_link")]
    assert any(s.startswith("1.") and "Datasets" in s for s in links), links
    assert any(s.startswith("3.") and "Classify" in s for s in links), links
    _finished_run()
    at.run()
    assert "Start here" not in texts(at)
