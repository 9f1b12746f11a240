"""Cold start of the UI: from `streamlit run app.py` answering its health check to the Datasets page's content
visible in a real Chromium.

Run from the repo root: `.venv/bin/python bench/bench_page_paint.py [--reps N] [--tree DIR ...]`; bench_cold_start.py
runs it too, on this repo. Each rep starts a fresh server (its own empty runs and data folders, so the embedded
7,000-image sample is what a new person sees), polls /_stcore/health, and only then starts the clock and opens the
page in a tab opened beforehand; the browser is launched once, before any server, so its start-up is not counted.
Milestones, in seconds after health-ok: the title, the dataset summary line, the sample grid (every picture
decoded), the count chart, the quality verdict; "content" is the last of the first three. A one-line app
(st.title only) started the same way gives the floor that Streamlit and Chromium set under any page. With several
--tree folders (e.g. an older commit unpacked with `git archive`) the trees alternate rep by rep, so a shared,
noisy CPU treats them alike. Goal (issue "Speed where users wait"): content <= 1.5 s. Writes
bench/results/page_paint.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.atomic import write_json  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage"]  # fmt: skip
# Installed in the page before Streamlit's code runs: on every animation frame (just before the browser paints) it
# notes the wall-clock time at which each milestone first holds. Polling from Playwright instead (expect's retries
# back off to 1 s) put the title up to ~0.5 s after it was drawn, and each later milestone was looked for only
# after the one before it.
MILESTONE_WATCH = """(() => {
  const seen = window.__milestones = {};
  const text = t => !!document.body && document.body.textContent.includes(t);
  const checks = {
    title: () => [...document.querySelectorAll('h1')].some(
      h => h.textContent.trim().startsWith('Datasets') && h.getBoundingClientRect().height > 0),
    summary: () => text('7,000 images'),
    // a strip of samples for each of the 10 classes (st.image, or an inline picture in markdown), all decoded
    samples: () => {
      const imgs = [...document.querySelectorAll(
        '[data-testid="stImage"] img, [data-testid="stMarkdownContainer"] img')];
      return imgs.length >= 10 && imgs.every(i => i.complete && i.naturalWidth > 0);
    },
    chart: () => [...document.querySelectorAll('.js-plotly-plot')].some(e => e.getBoundingClientRect().height > 0),
    quality: () => text('No unreadable or stray files.'),
  };
  const tick = () => {
    for (const [name, holds] of Object.entries(checks)) {
      if (!(name in seen) && holds()) seen[name] = Date.now();
    }
    if (Object.keys(seen).length < Object.keys(checks).length) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})();"""
MILESTONES = ("title", "summary", "samples", "chart", "quality")
CONTENT = ("title", "summary", "samples")  # what "the page's content is visible" means here
FLOOR = "floor-app"  # a one-line app (st.title) on the same server and config: Streamlit's and Chromium's own cost
VIEWPORT = {"width": 1400, "height": 1000}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(
    tree: Path, tmp: Path, keep_runs: bool, port: int | None = None
) -> tuple[subprocess.Popen, str, float]:
    """A fresh `streamlit run app.py`; returns once /_stcore/health answers ok (and how long that took)."""
    port = port or _free_port()
    for sub in ("data",) if keep_runs else ("runs", "data"):
        shutil.rmtree(tmp / sub, ignore_errors=True)
    for sub in ("runs", "data"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CONVNET_RUNS_DIR": str(tmp / "runs"), "CONVNET_DATA_DIR": str(tmp / "data"),
           "TF_CPP_MIN_LOG_LEVEL": "2"}  # fmt: skip
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
           str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - t0 < 120:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc, url, time.perf_counter() - t0
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"streamlit in {tree} did not answer its health check")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _one(
    browser, tree: Path, tmp: Path, keep_runs: bool = False, port: int | None = None
) -> dict[str, float]:
    """One fresh server and one page load: seconds to health-ok, then from health-ok to each milestone.

    browser: a Browser (a new context each time: a first visit) or a BrowserContext (its HTTP cache is kept: a
    returning visitor, as long as the port, hence the origin, stays the same)."""
    fresh = hasattr(browser, "new_context")
    ctx = browser.new_context(viewport=VIEWPORT) if fresh else browser
    page = ctx.new_page()  # a tab is opened before the server starts: only the page load is timed
    page.add_init_script(MILESTONE_WATCH)
    proc, url, health_s = _start(tree, tmp, keep_runs, port)
    out = {"health": health_s}
    try:
        t0 = time.time()  # the page notes its milestones in the same wall clock (Date.now)
        page.goto(url)
        wanted = ("title",) if tree.name == FLOOR else MILESTONES
        page.wait_for_function(
            f"() => {list(wanted)}.every(m => m in (window.__milestones || {{}}))",
            timeout=120_000,
            polling=100,
        )
        seen = page.evaluate("() => window.__milestones")
        out.update({m: seen[m] / 1000 - t0 for m in wanted})
        out["content"] = max(out[m] for m in CONTENT if m in out)
    finally:
        page.close()
        if fresh:
            ctx.close()
        _stop(proc)
    return out


def _floor_app(tmp: Path) -> Path:
    app = tmp / FLOOR
    (app / ".streamlit").mkdir(parents=True)
    shutil.copy(ROOT / ".streamlit" / "config.toml", app / ".streamlit" / "config.toml")
    (app / "app.py").write_text('import streamlit as st\n\nst.title("Datasets")\n')
    return app


def missing() -> str | None:
    """Why the browser measurement cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -r requirements-dev.txt"
    if not Path(CHROMIUM).exists():
        return f"chromium not found at {CHROMIUM}: apt-get install -y chromium"
    return None


def measure(
    trees: list[Path], reps: int, floor: bool = True, warm: bool = False, returning: bool = False
) -> dict[str, list[dict]]:
    """Every tree (and the floor app) started `reps` times, alternating, with one browser launched up front.

    warm: each tree keeps its runs folder (its caches) from an unmeasured first start: a restart, not a first use.
    returning: each tree keeps one port and one browser context (its HTTP cache: Streamlit serves its hashed
    JavaScript bundles as immutable for a year) from an unmeasured first visit, as for a person who reopens the
    app in the browser they used before; without it every load is a first visit in a fresh profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
        trees = [*trees, _floor_app(Path(tmp))] if floor else list(trees)
        times: dict[str, list[dict[str, float]]] = {str(t): [] for t in trees}
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)  # before any clock starts
        state = {t: Path(tmp) / f"state-{i}" for i, t in enumerate(trees)}
        ports = {t: _free_port() if returning else None for t in trees}
        visitor = {t: browser.new_context(viewport=VIEWPORT) if returning else browser for t in trees}
        try:
            if warm or returning:
                for tree in trees:
                    _one(visitor[tree], tree, state[tree], port=ports[tree])
            for _ in range(reps):
                for tree in trees:
                    times[str(tree)].append(
                        _one(visitor[tree], tree, state[tree], keep_runs=warm, port=ports[tree])
                    )
        finally:
            browser.close()
    return {(FLOOR if t.endswith(FLOOR) else t): r for t, r in times.items()}


def report(
    times: dict[str, list[dict]], reps: int, warm: bool = False, returning: bool = False
) -> dict[str, dict[str, float]]:
    """Print the medians table, write bench/results/page_paint[_warm][_returning].json, return the medians."""
    medians = {t: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for t, runs in times.items()}
    cols = ("health", *MILESTONES, "content")
    runs = "runs folder kept from an earlier start: caches warm" if warm else "empty runs folder: caches cold"
    visit = "a returning browser (its cache kept)" if returning else "a first visit (fresh browser profile)"
    print(f"Datasets page, median of {reps} fresh server starts ({runs}; {visit});")
    print("seconds from health-ok to each milestone in Chromium (health: seconds from `streamlit run`)")
    print(f"{'app':40s} " + " ".join(f"{c:>8s}" for c in cols))
    for t, m in medians.items():
        print(f"{t[-40:]:40s} " + " ".join(f"{m[c]:8.2f}" if c in m else f"{'-':>8s}" for c in cols))
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    name = "page_paint" + ("_warm" if warm else "") + ("_returning" if returning else "") + ".json"
    write_json(
        ROOT / "bench" / "results" / name,
        {"reps": reps, "warm": warm, "returning": returning, "median_s": medians, "runs": times},
    )
    return medians


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--tree", action="append", type=Path, help="app folder to start (repeatable; default: this repo)"
    )
    ap.add_argument(
        "--no-floor", action="store_true", help="leave out the one-line app (the floor under any page)"
    )
    ap.add_argument(
        "--warm", action="store_true", help="keep each tree's runs folder (its caches) between starts"
    )
    ap.add_argument(
        "--returning", action="store_true", help="keep each tree's port and browser cache between starts"
    )
    args = ap.parse_args()
    reason = missing()
    if reason:
        sys.exit(reason)
    trees = [t.resolve() for t in (args.tree or [ROOT])]
    times = measure(trees, args.reps, floor=not args.no_floor, warm=args.warm, returning=args.returning)
    report(times, args.reps, args.warm, args.returning)


if __name__ == "__main__":
    main()
