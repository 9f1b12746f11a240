"""Browsing and argument errors never pay TensorFlow's start-up (about 5 s on 2 cores): the Datasets page's modules
and the CLI paths that only list or refuse must not import it."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras")
CORE_PACKAGES = ("core.data", "core.models", "core.training", "core.analysis")


def _page_imports(page: str) -> list[str]:
    """The modules a page file imports (its own helpers' imports follow when they are imported)."""
    tree = ast.parse((REPO / page).read_text())
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [
                f"{node.module}.{a.name}"
                if node.module in ("core", "pages") or node.module in CORE_PACKAGES
                else node.module
                for a in node.names
            ]
    return sorted(set(names))


def _loaded_after(code: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                          f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"],
                         cwd=REPO, env={**os.environ}, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_datasets_page_and_core_listing_modules_do_not_import_tensorflow():
    modules = [
        *_page_imports("pages/datasets.py"),
        "core.data.datasets",
        "core.training.runs",
        "core.training.jobs",
        "core.training.trainer",
    ]
    assert (
        "core.data.augmentation" in modules and "pages._shared" in modules
    )  # the page's real imports were read
    assert _loaded_after("\n".join(f"import {m}" for m in modules)) == []


def test_datasets_page_modules_leave_pandas_for_after_the_samples():
    """pandas costs ~0.8 s on a cold server; Streamlit imports it for the first table, which the page draws after
    its title, counts and sample pictures have gone to the browser."""
    code = "import streamlit\n" + "\n".join(f"import {m}" for m in _page_imports("pages/datasets.py"))
    assert _loaded_after(code, ("pandas", "plotly.express")) == []


def test_listing_and_refusing_on_the_command_line_do_not_import_tensorflow(isolated_dirs):
    for argv in (["datasets"], ["runs"], ["train", "--dataset", "no-such-dataset"],
                 ["train", "--dataset", "fashion-mnist-sample", "--lr", "inf"], ["stop", "no-such-run"],
                 ["dataset", "ls", "fashion-mnist-sample"], ["dataset", "new", "x", "a"]):  # fmt: skip
        code = f"from core.__main__ import main\nrc = main({argv!r})"
        assert _loaded_after(code) == [], argv


def test_the_lazy_keras_still_builds_every_preset_layer_for_layer():
    """The stand-in resolves to the real keras on first use: a preset built through it is a real Keras model."""
    code = ("from core.models import architectures\n"
            "m = architectures.build_model('mnist-lab', (28, 28, 1), 10)\n"
            "import keras\nassert isinstance(m, keras.Model) and m.count_params() > 0")  # fmt: skip
    assert _loaded_after(code) == ["tensorflow", "keras"]
