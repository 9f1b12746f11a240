"""`streamlit run app.py` serves app.py's st.App, whose lifespan imports the first page's modules in a thread while
the browser loads; the script waits for that thread before importing anything itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from core.data import datasets
from pages import _server

REPO = Path(__file__).resolve().parents[1]


def test_streamlit_run_finds_the_app_and_its_lifespan():
    from streamlit.web.server.app_discovery import discover_asgi_app

    found = discover_asgi_app(REPO / "app.py")
    assert found.is_asgi_app and found.import_string == "app:app"


def test_the_modules_read_are_what_the_scripts_run_not_what_their_functions_import_later(tmp_path):
    script = tmp_path / "page.py"
    script.write_text(
        "from __future__ import annotations\nimport json\nfrom core.data import datasets, renames\n"
        "if __name__ == '__main__':\n    from pages import _shared\nelse:\n    import csv\n"
        "try:\n    import zlib\nexcept ImportError:\n    pass\n"
        "def later():\n    import tensorflow\n\nclass Later:\n    import keras\n"
    )
    names = _server.imported_modules(script)
    assert names == ["json", "core.data", "core.data.datasets", "core.data.renames", "pages", "pages._shared",
                     "csv", "zlib"]  # fmt: skip
    app = _server.imported_modules(REPO / "app.py")
    assert "pages._shared" in app and "pages._sidebar" in app  # from inside app.py's `if __name__` block


def test_warming_imports_the_first_page_without_tensorflow_or_pandas():
    code = (
        "import json, sys\nfrom pages import _server\ndone = _server.warm_imports()\n"
        "print(json.dumps([done, [m for m in ('tensorflow', 'keras', 'pandas') if m in sys.modules]]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ}, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    done, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"pages._shared", "pages._sidebar", "core.data.datasets", "plotly.graph_objects"} <= set(done)
    assert heavy == []


def test_the_script_waits_for_the_warm_up_and_never_without_one(monkeypatch):
    monkeypatch.setattr(_server, "_warm", None)
    t = time.perf_counter()
    _server.wait_warm()  # AppTest and anything else that runs the script without the server
    assert time.perf_counter() - t < 0.1

    event = threading.Event()
    monkeypatch.setattr(_server, "_warm", event)
    threading.Timer(0.3, event.set).start()
    t = time.perf_counter()
    _server.wait_warm()
    assert 0.25 <= time.perf_counter() - t < 5


def test_a_failing_warm_up_still_lets_the_script_go(monkeypatch):
    monkeypatch.setattr(_server, "warm_imports", lambda: 1 / 0)
    event = threading.Event()
    _server._run_warm(event)
    assert event.is_set()


def test_warming_also_does_the_first_views_catalog_scan_and_inspect_index(tmp_path):
    """Both were ~70 ms each on the script thread before the first title went out."""
    code = (
        "import inspect, json, os\nfrom pages import _server, _sidebar\nfrom core.data import datasets\n"
        "_server.warm_imports()\n_server.warm_first_calls()\n"
        "names = sorted(info.name for _, info in datasets._scan_memo.values())\n"
        "print(json.dumps([names, inspect.modulesbyfile.get(os.path.realpath(_sidebar.__file__))]))"
    )
    env = {
        **os.environ,
        "CONVNET_DATA_DIR": str(tmp_path / "data"),
        "CONVNET_RUNS_DIR": str(tmp_path / "runs"),
    }
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    scanned, indexed = json.loads(out.stdout.strip().splitlines()[-1])
    assert scanned == [datasets.EMBEDDED_DATASET] and indexed == "pages._sidebar"
