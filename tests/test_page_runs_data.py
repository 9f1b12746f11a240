"""AppTest of the Train page's runs list and export box: a run whose dataset changed since says so, and an ONNX
export is offered, prepared and reported with its ONNX Runtime check."""

from __future__ import annotations

from core.data import fingerprint
from tests.apptest_support import open_page, texts
from tests.helpers import make_dataset, train_tiny_run


def test_runs_table_says_dataset_changed_and_onnx_export_reports_its_check(isolated_dirs):
    data, _ = isolated_dirs
    make_dataset("tiny", per_class=4)
    run = train_tiny_run("tiny")
    assert run.config.dataset_fingerprint == fingerprint.dataset_fingerprint("tiny").digest
    at = open_page("pages/train.py", active_dataset="tiny", active_run=run.run_id)
    assert not at.exception, at.exception
    assert list(at.dataframe[-1].value["data"]) == ["unchanged"]

    (data / "tiny" / "square" / "square_000.png").rename(
        data / "tiny" / "circle" / "square_000.png"
    )  # relabel
    at.run()
    assert not at.exception, at.exception
    assert list(at.dataframe[-1].value["data"]) == ["dataset changed"]
    table = at.dataframe[-1]
    at.session_state[table.key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, at.exception
    assert f"fingerprint `{fingerprint.short(run.config.dataset_fingerprint)}`" in texts(at)

    fmt = at.selectbox(key="export_fmt")
    assert "onnx" in fmt.options or "ONNX (checked with ONNX Runtime)" in fmt.options
    fmt.set_value("onnx").run()
    at.button(key="export_prepare").click().run()
    assert not at.exception, at.exception
    ready = at.session_state["export_ready"]
    assert ready[2] == f"{run.run_id}.onnx" and len(ready[3]) > 1000
    assert "Checked against Keras: onnx: max |p - p_keras| = " in texts(at)
