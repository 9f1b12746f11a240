"""A warm spare training process, so a run started from the UI reaches its first batch in seconds.

`import tensorflow` alone takes 5-8 s on a 2-core laptop, and TensorFlow's first graph in a process pays for its
runtime's start-up on top. The Train page therefore keeps one spare `python -m core.training.spare` process that
has done both and waits; `jobs.launch` hands a run to it, and the spare becomes exactly the process
`python -m core train --run ID` would have been (same code, same job.log, same lock and status). When no spare is
ready (first visit, another run training, settings changed), launch starts a fresh process as before.

A spare lives in `<runs>/.spare/<token>/`: `spawn.json` while it warms up, `ready.json` once it waits. A launcher
claims it by renaming ready.json to taken.json (atomic, so two launchers can never get the same spare), records
the spare's pid in the run's status, then writes job.json. A spare leaves when its folder is removed, when the
process that started it (the Streamlit server) is gone, after CONVNET_SPARE_IDLE_S seconds unused (30 min), or
when it was started for other settings or older code. CONVNET_WARM_START=0 turns spares off.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from core import atomic
from core.errors import UserError
from core.paths import REPO_ROOT, runs_dir
from core.training import runs
from core.training.runs import process_start_time

SWITCH_ENV = "CONVNET_WARM_START"
IDLE_ENV = "CONVNET_SPARE_IDLE_S"
DEFAULT_IDLE_S = 1800.0
POLL_S = 0.05
FAILED_FILE = "failed.json"
REQUEST_FILE = "prepare.json"  # what the Train form would start now (core.training.prepared)
PREPARED_FILE = "prepared.json"  # in a spare's folder: what it prepared last (ok: parts are ready)
RETRY_AFTER_FAILURE_S = 300.0
_KEY_ENV_PREFIXES = ("CONVNET_", "TF_", "CUDA_", "KERAS_", "XLA_", "OMP_", "PYTHON")
_spawned: list[subprocess.Popen] = []


def enabled() -> bool:
    return os.environ.get(SWITCH_ENV, "1") != "0"


def spare_root() -> Path:
    return runs_dir() / ".spare"


def job_env() -> dict[str, str]:
    """The environment a training process gets (jobs.launch and a spare alike)."""
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }


_stamp: tuple[float, str] | None = None
STAMP_TTL_S = 2.0  # the code stamp walks core/; a page rerun, its spare check and a click share one walk


def code_stamp() -> str:
    """Newest change to the code a job runs: a spare that imported older code is not used."""
    global _stamp
    if _stamp is not None and time.monotonic() - _stamp[0] < STAMP_TTL_S:
        return _stamp[1]
    newest = max((p.stat().st_mtime_ns for p in (REPO_ROOT / "core").rglob("*.py")), default=0)
    _stamp = (time.monotonic(), str(newest))
    return _stamp[1]


def settings_key(env: dict[str, str] | None = None) -> str:
    """What a spare must share with the launcher: interpreter, code, and the environment TensorFlow and our paths
    read at start-up (runs and data folders, CPU split, devices)."""
    env = job_env() if env is None else env
    picked = sorted(
        (k, v) for k, v in env.items() if k.startswith(_KEY_ENV_PREFIXES) and k not in (IDLE_ENV, SWITCH_ENV)
    )
    raw = json.dumps([sys.executable, str(REPO_ROOT), code_stamp(), picked])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _alive(info: dict | None) -> bool:
    """The recorded process exists, is not a zombie and started when recorded (never a reused pid)."""
    for proc in list(_spawned):
        if proc.poll() is not None:
            _spawned.remove(proc)  # reap our own finished spares
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return False
    return runs.process_matches(info["pid"], info.get("pid_start"))


def _info(home: Path) -> tuple[str, dict | None]:
    """A spare's phase ('ready', 'warming', 'taken', 'unknown') and what it recorded."""
    for phase, name in (("ready", "ready.json"), ("warming", "spawn.json"), ("taken", "taken.json")):
        info = atomic.read_json(home / name, None)
        if info is not None:
            return phase, info if isinstance(info, dict) else None
    return "unknown", None


def spares() -> list[tuple[Path, str, dict | None]]:
    root = spare_root()
    if not root.is_dir():
        return []
    return [(home, *_info(home)) for home in sorted(root.iterdir()) if home.is_dir()]


def ensure(busy: bool = False, prepare: dict[str, Any] | None = None) -> bool:
    """Keep one spare for this launcher's settings; True when one is ready or warming.

    `busy`: a run is training, so a new spare would take CPU from it; one is started later instead. Spares of
    other settings or older code are asked to leave; folders of spares that died are removed (we made them).
    `prepare`: the resolved config the Train form would start now; the spare prepares it (core.training.prepared).
    """
    if not enabled():
        return False
    if prepare is not None:
        ask_to_prepare(prepare)
    key = settings_key()
    have = False
    for home, phase, info in spares():
        if phase == "taken":
            continue  # becoming a job; the job removes it
        if not _alive(info):
            if phase == "warming":  # died before it was ready (a broken install?): do not respawn at once
                atomic.write_json(spare_root() / FAILED_FILE, {"at": time.time()})
            if phase != "unknown" or _older_than(home, 60):
                shutil.rmtree(home, ignore_errors=True)
            continue
        if info and info.get("key") == key and not have:
            have = True
        else:
            _ask_to_leave(home)
    if have or busy:
        return have
    failed = atomic.read_json(spare_root() / FAILED_FILE, None)
    if isinstance(failed, dict) and time.time() - float(failed.get("at") or 0) < RETRY_AFTER_FAILURE_S:
        return False
    _spawn(key)
    return True


def ask_to_prepare(config: dict[str, Any]) -> None:
    """Tell spares what the Train form would start now (written only when it changed: the spare re-reads it)."""
    path = spare_root() / REQUEST_FILE
    if atomic.read_json(path, None) != config:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(path, config)


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False


def _ask_to_leave(home: Path) -> None:
    try:
        (home / "leave").touch()
    except OSError:
        pass


def _spawn(key: str) -> None:
    home = spare_root() / uuid.uuid4().hex[:12]
    home.mkdir(parents=True)
    me = os.getpid()
    with open(home / "spare.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core.training.spare", str(home), str(me), repr(process_start_time(me)), key],
            cwd=REPO_ROOT, env=job_env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    _spawned.append(proc)
    atomic.write_json(
        home / "spawn.json", {"pid": proc.pid, "pid_start": process_start_time(proc.pid), "key": key}
    )


def claim(run_id: str, mark_status) -> dict[str, Any] | None:
    """Hand `run_id` to a ready spare of these settings; its pid/pid_start, or None (then start a process).

    `mark_status(pid=..., pid_start=...)` records the job's process in the run's status before the spare can
    start writing it, so the two writes never race.
    """
    if not enabled():
        return None
    key = settings_key()
    for home, phase, info in spares():
        if phase != "ready" or not info or info.get("key") != key or not _alive(info):
            continue
        try:
            os.rename(home / "ready.json", home / "taken.json")
        except OSError:
            continue  # another launcher took it a moment ago
        mark_status(pid=info["pid"], pid_start=info["pid_start"])
        atomic.write_json(home / "job.json", {"run_id": run_id})
        return info
    return None


# --- the spare process itself ---------------------------------------------------------------------------------


def warm_up() -> None:
    """Import what a job imports and run one tiny fit, so TensorFlow's runtime, graph machinery and CPU kernels
    are started before a real run arrives (the device settings come first, as in a job)."""
    import numpy as np

    from core.training import distribute

    distribute.split_cpu()
    import keras

    from core.data import streaming  # noqa: F401  (imported for its cost, as a job will)
    from core.models import architectures, loading  # noqa: F401
    from core.training import callbacks, dynamics, pinned, schedules, timelapse, trainer  # noqa: F401

    trainer.configure_devices()
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.compile(
        "adam", "categorical_crossentropy", metrics=["accuracy"], jit_compile=architectures.jit_setting()
    )
    xs = np.zeros((8, 8, 8, 1), "float32")
    ys = np.eye(2, dtype="float32")[np.arange(8) % 2]
    model.fit(xs, ys, batch_size=4, epochs=1, verbose=0)
    model.predict(xs, verbose=0)
    keras.backend.clear_session()


def _parent_alive(pid: int, started: float | None) -> bool:
    return runs.process_matches(pid, started, strict=False)


class _Requests:
    """The Train page's prepare.json, handed to core.training.prepared each time it changes."""

    def __init__(self, home: Path) -> None:
        self.path = spare_root() / REQUEST_FILE
        self.scratch = home / "scratch"
        self.stamp: tuple[int, int] | None = None

    def poll(self) -> None:
        try:
            st = self.path.stat()
        except OSError:
            return
        if (st.st_mtime_ns, st.st_size) == self.stamp:
            return
        self.stamp = (st.st_mtime_ns, st.st_size)
        data = atomic.read_json(self.path, None)
        if isinstance(data, dict):
            from core.training import prepared

            t0 = time.time()
            ok = prepared.on_request(data, self.scratch, self.reporter(prepared.shaping_settings(data)))
            note = {"ok": ok, "request": data, "at": time.time(), "seconds": time.time() - t0}
            try:  # for the Train page and tests; the folder may be gone already (then the spare leaves)
                atomic.write_json(self.scratch.parent / PREPARED_FILE, note, make_parents=False)
            except OSError:
                pass

    def reporter(self, shape: dict[str, Any]):
        """While images are decoded for a preparation, a run handed over meanwhile with these very settings
        waits for it: its status shows how far the decoding is, as a fresh job's does. A run for other settings
        does not wait: the preparation is abandoned (prepared.Abandon) and the run starts at once."""
        home = self.scratch.parent

        def report(fraction: float) -> None:
            from core.training import prepared

            run_id = _job(home)
            if not run_id:
                return
            try:
                run = runs.get_run(run_id)
            except UserError:
                return  # gone meanwhile: the job finds out itself
            if prepared.shaping_settings(run.config) != shape:
                raise prepared.Abandon(run_id)
            try:
                runs.update_status(run.path, preparing=round(float(fraction), 3))
            except OSError:
                pass

        return report


def wait_for_job(home: Path, parent: int, parent_start: float | None, idle_s: float,
                 requests: _Requests | None = None) -> str | None:  # fmt: skip
    """Poll for job.json (and prepare what the Train page asks for meanwhile); None when it is time to leave
    (folder gone, parent gone, idle, asked to)."""
    since = checked = time.time()
    while True:
        run_id = _job(home)
        if run_id:
            return run_id
        if requests is not None:
            requests.poll()
            run_id = _job(home)
            if run_id:
                return run_id
        now = time.time()
        if now - checked >= 1.0:
            checked = now
            leaving = (not home.is_dir() or (home / "leave").exists() or now - since > idle_s
                       or not _parent_alive(parent, parent_start))  # fmt: skip
            if leaving:
                try:
                    os.rename(home / "ready.json", home / "closing.json")
                    return None
                except OSError:  # claimed this very moment (or the folder is gone): the job may be on its way
                    return _job(home, wait_s=10.0)
        time.sleep(POLL_S)


def _job(home: Path, wait_s: float = 0.0) -> str | None:
    deadline = time.time() + wait_s
    while True:
        job = atomic.read_json(home / "job.json", None)
        if isinstance(job, dict) and isinstance(job.get("run_id"), str):
            return job["run_id"]
        if time.time() >= deadline:
            return None
        time.sleep(POLL_S)


def _into_job_log(run_id: str) -> None:
    """From here on, output goes where a launched job's goes: the run's job.log."""
    from core.training import runs

    log = runs.run_path(run_id) / "job.log"
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def serve(home: Path, parent: int, parent_start: float | None, key: str) -> int:
    warm_up()
    me = os.getpid()
    atomic.write_json(home / "ready.json", {"pid": me, "pid_start": process_start_time(me), "key": key,
                                           "ready_at": time.time()})  # fmt: skip
    (home / "spawn.json").unlink(missing_ok=True)
    idle = float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE_S)
    run_id = wait_for_job(home, parent, parent_start, idle, _Requests(home))
    if run_id is None:
        shutil.rmtree(home, ignore_errors=True)
        return 0
    _into_job_log(run_id)
    shutil.rmtree(home, ignore_errors=True)
    from core.__main__ import main as cli

    return cli(["train", "--run", run_id])


if __name__ == "__main__":
    _home, _parent, _parent_start, _key = sys.argv[1:5]
    raise SystemExit(
        serve(Path(_home), int(_parent), None if _parent_start == "None" else float(_parent_start), _key)
    )
