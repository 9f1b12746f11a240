"""core.training.run_notices: the lines model pages show about another dataset and a run still training."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.training import run_notices, runs


def _run(
    state: str = "completed", dataset: str = "shapes", done: int | None = 3, epochs: int = 5
) -> runs.Run:
    status = {"state": state} | ({"epochs_done": done} if done is not None else {})
    return runs.Run("r1", Path("/nowhere/r1"), {"dataset": dataset, "epochs": epochs}, status)


@pytest.mark.parametrize("page", ["Classify", "Inspect", "Evaluate"])
def test_another_active_dataset_is_one_warning_that_says_what_the_page_uses(page):
    (notice,) = run_notices.run_notices(_run(), "mnist", page)
    assert notice.level == "warning"
    assert notice.text.startswith("The active run was trained on shapes; the active dataset is mnist — ")
    assert "\n" not in notice.text
    tail = notice.text.split(" — ", 1)[1]
    assert (
        "shapes" in tail and "mnist" not in tail
    )  # the page says it uses the run's dataset, not the active one
    if page == "Evaluate":
        assert "metrics use" in tail
    else:
        assert "dataset samples" in tail


def test_the_same_dataset_or_no_run_gives_no_notice():
    assert run_notices.run_notices(_run(), "shapes", "Classify") == []
    assert run_notices.run_notices(None, "mnist", "Classify") == []
    assert run_notices.run_notices(_run(), None, "Classify") == []


@pytest.mark.parametrize("state", runs.ACTIVE_STATES)
def test_a_run_still_training_names_the_epoch_of_its_checkpoint(state):
    (notice,) = run_notices.run_notices(_run(state=state, done=3, epochs=5), "shapes", "Inspect")
    assert notice.level == "info"
    assert "still training" in notice.text and "epoch 3 of 5" in notice.text


def test_still_training_before_any_epoch_says_latest_checkpoint():
    (notice,) = run_notices.run_notices(_run(state="running", done=None), "shapes", "Classify")
    assert "latest saved checkpoint" in notice.text and "epoch" not in notice.text


def test_both_notices_warning_first():
    found = run_notices.run_notices(_run(state="running", done=1, epochs=2), "mnist", "Evaluate")
    assert [n.level for n in found] == ["warning", "info"]
    assert "epoch 1 of 2" in found[1].text and found[1].text.startswith(
        "Run r1 is still training: Re-evaluate"
    )


@pytest.mark.parametrize("state", runs.FINAL_STATES)
def test_a_finished_run_is_not_training(state):
    assert run_notices.run_notices(_run(state=state), "shapes", "Classify") == []
