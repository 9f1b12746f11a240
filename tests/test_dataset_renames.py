"""Renaming a dataset keeps its runs working: a ledger in data/ maps old names to new ones, runs are not rewritten."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import paths
from core.analysis import comparison, evaluation_runs
from core.analysis.audit import cache as audit_cache
from core.data import datasets, editing, fingerprint, renames
from core.errors import UserError
from core.training import progress, retrain, runs
from tests.apptest_support import open_page, texts
from tests.helpers import make_dataset, train_tiny_run

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env={**os.environ},
                          capture_output=True, text=True, timeout=240)  # fmt: skip


def test_a_run_follows_its_renamed_dataset_in_process_and_in_the_cli():
    run = train_tiny_run(make_dataset("shapes"))
    editing.rename_dataset("shapes", "figures")
    assert runs.get_run(run.run_id).config.dataset == "shapes"  # the run record is not rewritten
    assert datasets.get_dataset("shapes").path == paths.data_dir() / "figures"
    result = evaluation_runs.evaluate_run(run.run_id)
    assert result.num_samples > 0
    states = fingerprint.data_states([(run.run_id, "shapes", run.config.dataset_fingerprint)])
    assert states[run.run_id][0] == fingerprint.UNCHANGED  # same bytes under a new name
    row = progress.runs_table([runs.get_run(run.run_id)])[0]
    assert "renamed to figures" in row["data"]
    out = _cli("evaluate", "--run", run.run_id)
    assert out.returncode == 0, out.stderr
    listing = _cli("runs")
    assert "renamed to figures" in listing.stdout, listing.stdout
    assert renames.same_dataset("shapes", "figures") and not renames.same_dataset("shapes", "other")
    assert audit_cache.resolve_run("figures", run.run_id).run_id == run.run_id  # Improve pairs them
    assert (
        retrain.same_settings(runs.get_run(run.run_id)).dataset == "figures"
    )  # a retrain names it as it is now
    at = open_page("pages/train.py", active_dataset="figures", active_run=run.run_id)
    assert not at.exception, at.exception
    assert list(at.dataframe[-1].value["data"]) == ["unchanged, renamed to figures"]
    at.session_state[at.dataframe[-1].key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert "dataset renamed to **figures**" in texts(at)
    ev = open_page("pages/evaluate.py", active_dataset="figures", active_run=run.run_id)
    assert not ev.exception and "unknown dataset" not in texts(ev) and not ev.error
    ledger = json.loads((paths.data_dir() / renames.LEDGER).read_text())
    assert ledger == {"shapes": "figures"}
    # a run trained after the rename compares with one from before it (same data, two names on record)
    later = train_tiny_run("figures")
    report = comparison.compare_runs(run.run_id, later.run_id)
    assert report.dataset == "shapes" and report.num_samples > 0
    assert not renames.same_now("shapes", "other") and renames.same_now("shapes", "figures")


def test_chains_resolve_and_a_real_folder_wins_over_the_ledger():
    make_dataset("a", per_class=3)
    editing.rename_dataset("a", "b")
    editing.rename_dataset("b", "c")
    assert renames.current_name("a") == "c"
    assert datasets.get_dataset("a").path == paths.data_dir() / "c"
    make_dataset("a", classes=("x", "y"), per_class=3)  # a new dataset under the old name takes it back
    assert renames.current_name("a") == "a"
    assert datasets.get_dataset("a").class_names == ["x", "y"]
    assert renames.renamed_to("a") is None and renames.renamed_to("b") == "c"


def test_a_cycle_or_a_missing_target_resolves_to_nothing():
    paths.data_dir().mkdir(parents=True, exist_ok=True)
    (paths.data_dir() / renames.LEDGER).write_text(
        json.dumps({"p": "q", "q": "p", "gone": "nowhere", "../x": "y"})
    )
    for name in ("p", "gone", "../x"):
        assert renames.current_name(name) is None
        with pytest.raises(UserError):
            datasets.get_dataset(name)
    (paths.data_dir() / renames.LEDGER).write_text("not json")
    assert renames.ledger() == {}


def test_a_failed_rename_leaves_no_ledger_entry():
    make_dataset("keep", per_class=2)
    make_dataset("taken", per_class=2)
    with pytest.raises(UserError):
        editing.rename_dataset("keep", "taken")
    assert renames.ledger() == {}
