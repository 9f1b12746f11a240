"""Tags live in label.json beside the name and note: cleaned, capped, and never in status.json (the job's)."""

from __future__ import annotations

import pytest

from core import atomic
from core.errors import UserError
from core.training import runs
from core.training.run_config import RunConfig


def _run() -> runs.Run:
    return runs.create_run(
        RunConfig(dataset="d", preset="fast", class_names=["a", "b"], input_shape=(8, 8, 1))
    )


def test_tags_are_cleaned_kept_with_the_label_and_cleared_with_an_empty_list():
    run = _run()
    tagged = runs.set_label(run.run_id, tags=" baseline, lr test ,baseline,, ")
    assert tagged.tags == ["baseline", "lr test"]
    runs.set_label(run.run_id, name="first")
    again = runs.get_run(run.run_id)
    assert (again.name, again.tags) == ("first", ["baseline", "lr test"])  # a rename keeps the tags
    assert "tags" not in atomic.read_json(run.path / "status.json")
    assert runs.set_label(run.run_id, tags=[]).tags == []
    for bad, needle in (("x" * 41, "at most 40"), (",".join(f"t{i}" for i in range(21)), "at most 20"),
                        (["a\nb"], "one line")):  # fmt: skip
        with pytest.raises(UserError, match=needle):
            runs.set_label(run.run_id, tags=bad)


def test_a_sweep_trial_says_so_in_its_label_and_config_and_an_ordinary_run_does_not():
    plain = _run()
    assert "sweep" not in atomic.read_json(plain.path / "config.json") and "sweep" not in plain.short_label()
    trial = runs.create_run(RunConfig(dataset="d", preset="fast", class_names=["a", "b"], input_shape=(8, 8, 1),
                                      sweep="sw-00aa11", sweep_trial=2))  # fmt: skip
    loaded = runs.get_run(trial.run_id)
    assert (loaded.config.sweep, loaded.config.sweep_trial) == ("sw-00aa11", 2)
    assert " · sweep sw-00aa11 #3 · " in loaded.short_label()
