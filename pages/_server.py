"""Server start-up: the first page's imports are done while the browser is still loading Streamlit's code.

`streamlit run app.py` serves app.py's `st.App`; its lifespan starts `warm_imports` in a thread. A browser needs
0.4-0.8 s from the server's first answer to the first script run (index.html, Streamlit's bundle, the WebSocket);
the app's and the Datasets page's own imports (~0.3-0.5 s on 2 cores) and the first view's folder scans fit inside
that. The script waits for the thread before it imports anything (`wait_warm`), so no module is ever imported by
two threads at once: Python's per-module import locks resolve a cross-thread cycle by handing one thread a
half-initialised module."""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIRST_SCRIPTS = (ROOT / "app.py", ROOT / "pages" / "datasets.py")  # the entry and the default page
# Streamlit imports its emoji table (~50 ms) inside a function, on the first page with an emoji icon or title
STREAMLIT_LAZY = ("streamlit.emojis",)
WAIT_S = 10.0  # a warm-up that hangs must not hold the first page for longer than this

_warm: threading.Event | None = None  # set once the warm-up ended; None where no server started one (AppTest)
_log = logging.getLogger(__name__)


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements run when the script runs: inside `if`/`try` blocks too, never inside functions (their imports
    are lazy on purpose, TensorFlow's above all)."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.Try):
            for block in (node.body, node.orelse, getattr(node, "finalbody", [])):
                yield from _top_level(block)


def imported_modules(script: Path) -> list[str]:
    """The modules a script imports when it runs (`from pkg import mod` names pkg.mod as well as pkg), read from
    its source so the list follows the page without anyone keeping it by hand."""
    names: list[str] = []
    for node in _top_level(ast.parse(script.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return list(dict.fromkeys(n for n in names if n.split(".")[0] != "__future__"))


def warm_imports(scripts: tuple[Path, ...] = FIRST_SCRIPTS) -> list[str]:
    """Import what the first page view will import; returns the modules that were imported."""
    done: list[str] = []
    wanted = [*STREAMLIT_LAZY, *(n for script in scripts for n in imported_modules(script))]
    for name in dict.fromkeys(wanted):
        try:
            importlib.import_module(name)
            done.append(name)
        except ImportError:
            pass  # `from pkg import name` where name is not a module: pkg itself is imported already
    return done


def warm_first_calls() -> None:
    """Work the first page view would do on the script thread before its title goes out: the dataset catalog's
    folder scans (remembered by `datasets.scan_folder`), and the index of loaded modules by file that `inspect`
    builds on its first use. Streamlit calls `inspect.stack()` when a process draws its first element. Measured
    in the server: ~70 ms each on 2 cores."""
    from core.data import datasets

    datasets.catalog()
    inspect.stack()  # with context lines: that path (findsource -> getmodule) is the one that builds the index


def _run_warm(event: threading.Event) -> None:
    try:
        warm_imports()
        warm_first_calls()
    except Exception:  # a warm-up is an optimisation: the script imports (and reports) for itself
        _log.exception("warming the first page's imports failed")
    finally:
        event.set()


@asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    """Starts the warm-up and returns at once: the server answers while the imports run."""
    global _warm
    _warm = threading.Event()
    threading.Thread(target=_run_warm, args=(_warm,), name="warm-imports", daemon=True).start()
    yield


def wait_warm(timeout: float = WAIT_S) -> None:
    """Called by the script before its imports: they then find every module ready."""
    if _warm is not None:
        _warm.wait(timeout)
