"""Sweeps: ordinary runs over a grid (or a random sample) of settings, queued on disk and trained one at a time.

runs/.sweeps/<sweep-id>/sweep.json   what was asked (the shared settings, the space) and every trial:
                                     pending | started (with its run id) | cancelled | refused (with why)
runs/.sweeps/queue.lock              held for the milliseconds in which a sweep.json is read and rewritten
runs/.sweeps/runner.lock             held by the one process draining the queue, for as long as it drains
runs/.sweeps/runner.json             that process's pid and start time (liveness through psutil, as for jobs)
runs/.sweeps/runner.log              what a runner started by the app printed

A trial's run is created only when its turn comes (a queued run that nobody trains would be marked failed), is
tagged with the sweep id in its config.json, and trains as its own `python -m core train --run ID` job, exactly
like a run started on the Train page: Stop, the runs list and every page treat it like any other run. A runner
that dies (a Streamlit restart, a kill) leaves its trial training; the next runner waits for that trial, then
goes on with the pending ones. The queue is drained in order: oldest sweep first, trials in order. On the CPU one
trial trains at a time (two would only share the cores); with several NVIDIA GPUs, one trial per GPU, each job
seeing only its own (CUDA_VISIBLE_DEVICES), see `device_slots`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import atomic, options
from core.errors import UserError
from core.paths import REPO_ROOT, runs_dir
from core.training import jobs, runs

if TYPE_CHECKING:
    from core.training.trainer import TrainRequest

SWEEP_ID_RE = re.compile(r"^sw-[0-9a-f]{6}$")
SWEEP_FILE = "sweep.json"
NUMERIC: dict[str, type] = {"learning_rate": float, "batch_size": int, "epochs": int, "dropout": float,
                            "filters": int}  # fmt: skip
BUILDER_PARAMS = ("dropout", "filters")  # the builder's (preset "custom"); notebook presets are never altered
LOG_SCALE = ("learning_rate", "batch_size", "filters")  # random ranges are drawn log-uniformly
SHORT = {"learning_rate": "lr", "batch_size": "batch", "epochs": "epochs", "optimizer": "optimizer",
         "preset": "preset", "dropout": "dropout", "filters": "filters"}  # fmt: skip
MAX_VALUES = 20  # per parameter
QUEUE_LOCK_TIMEOUT_S = 15.0


def root() -> Path:
    """Beside the runs, in a dot-folder, so listing runs never mistakes it for one."""
    return runs_dir() / ".sweeps"


# -- the space -------------------------------------------------------------------------------------------------


def param_name(raw: str) -> str:
    name = raw.strip().lower().replace("-", "_")
    name = options.SWEEP_ALIASES.get(name, name)
    if name not in options.SWEEP_PARAMS:
        raise UserError(
            f"cannot sweep {raw.strip()!r}; choose from: lr, batch, {', '.join(options.SWEEP_PARAMS[2:])}"
        )
    return name


def _number(name: str, text: str) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{name} values must be numbers; got {text.strip()!r}") from None
    if not math.isfinite(value):
        raise UserError(f"{name} values must be finite; got {text.strip()!r}")
    if NUMERIC[name] is int:
        if value != int(value):
            raise UserError(f"{name} values must be whole numbers; got {text.strip()!r}")
        return int(value)
    return value


def _choice(name: str, text: str) -> str:
    value = text.strip()
    if name == "optimizer":
        value = value.lower()
        if value not in options.OPTIMIZERS:
            raise UserError(f"optimizer must be one of {', '.join(options.OPTIMIZERS)}; got {text.strip()!r}")
    else:  # preset
        from core.models import architectures

        architectures.get_preset(value)
    return value


def parse_values(name: str, raw: str) -> list[Any] | dict[str, list[float]]:
    """`1e-3,3e-3` -> a list; `1e-4:1e-2` (numbers only) -> a range for random search."""
    name = param_name(name)
    raw = raw.strip()
    if not raw:
        raise UserError(f"give {SHORT[name]} at least one value")
    if name in NUMERIC and ":" in raw and "," not in raw:
        lo, hi = (_number(name, part) for part in raw.split(":", 1))
        if not lo < hi:
            raise UserError(f"a range for {SHORT[name]} needs low < high; got {raw}")
        return {"range": [lo, hi]}
    parts = [p for p in raw.split(",") if p.strip()]
    values = [_number(name, p) if name in NUMERIC else _choice(name, p) for p in parts]
    values = list(dict.fromkeys(values))  # a repeated value would train the same trial twice
    if not values:
        raise UserError(f"give {SHORT[name]} at least one value")
    if len(values) > MAX_VALUES:
        raise UserError(f"{SHORT[name]} has {len(values)} values; at most {MAX_VALUES}")
    return values


def parse_space(items: Iterable[str]) -> dict[str, Any]:
    """The CLI's `--grid lr=1e-3,3e-3 batch=64,128` as {"learning_rate": [...], "batch_size": [...]}."""
    space: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"--grid takes NAME=VALUES such as lr=1e-3,3e-3 or lr=1e-4:1e-2; got {item!r}")
        key = param_name(name)
        if key in space:
            raise UserError(f"{SHORT[key]} is given twice")
        space[key] = parse_values(key, raw)
    return space


def _grid_size(space: dict[str, Any]) -> int:
    return math.prod(len(v) for v in space.values() if isinstance(v, list))


def check_space(space: dict[str, Any], mode: str, count: int | None) -> None:
    if mode not in options.SWEEP_MODES:
        raise UserError(f"a sweep is one of: {', '.join(options.SWEEP_MODES)}")
    if not space:
        raise UserError("say what to sweep, e.g. --grid lr=1e-3,3e-3 batch=64,128")
    cap = options.MAX_SWEEP_TRIALS
    if mode == "grid":
        ranged = [SHORT[n] for n, v in space.items() if not isinstance(v, list)]
        if ranged:
            raise UserError(
                f"a range ({', '.join(ranged)}) needs random search (--random K); a grid takes lists"
            )
        if _grid_size(space) > cap:
            raise UserError(f"that grid has {_grid_size(space):,} trials; at most {cap}")
    elif count is None or not 1 <= count <= cap:
        raise UserError(f"random search needs a number of trials from 1 to {cap}; got {count}")


def _draw(name: str, values: Any, rng: random.Random) -> Any:
    if isinstance(values, list):
        return rng.choice(values)
    lo, hi = values["range"]
    if name in LOG_SCALE:
        x = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    else:
        x = rng.uniform(lo, hi)
    if NUMERIC[name] is int:
        return min(max(int(round(x)), int(lo)), int(hi))
    return float(f"{x:.3g}")  # three significant digits: a readable label, and no setting differs below that


def expand(space: dict[str, Any], mode: str = "grid", count: int | None = None,
           seed: int = options.DEFAULT_SEED) -> list[dict[str, Any]]:  # fmt: skip
    """Every trial's settings: the whole grid in order, or `count` distinct draws (seeded) for random search."""
    check_space(space, mode, count)
    names = list(space)
    if mode == "grid":
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*space.values())]
    assert count is not None
    discrete = all(isinstance(v, list) for v in space.values())
    rng = random.Random(seed)
    if discrete and _grid_size(space) <= count:
        return expand(space, "grid")
    if discrete and _grid_size(space) <= 100_000:
        grid = expand(space, "grid")
        return [grid[i] for i in sorted(rng.sample(range(len(grid)), count))]
    out: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for _ in range(50 * count):
        trial = {n: _draw(n, space[n], rng) for n in names}
        key = tuple(trial.values())
        if key not in seen:
            seen.add(key)
            out.append(trial)
            if len(out) == count:
                break
    return out


def describe(params: dict[str, Any]) -> str:
    """`lr=0.001 batch=64`: how a trial is named in tables, logs and the CLI."""
    return " ".join(f"{SHORT.get(k, k)}={_fmt(v)}" for k, v in params.items())


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# -- sweeps on disk --------------------------------------------------------------------------------------------


@dataclass
class Trial:
    index: int
    params: dict[str, Any]
    state: str = "pending"  # pending | started | cancelled | refused
    run_id: str | None = None
    error: str | None = None


@dataclass
class Sweep:
    sweep_id: str
    created: float
    base: dict[str, Any]  # the TrainRequest settings every trial shares
    space: dict[str, Any]
    mode: str
    trials: list[Trial]
    seed: int = options.DEFAULT_SEED
    cancelled: bool = False

    @property
    def path(self) -> Path:
        return root() / self.sweep_id

    @property
    def dataset(self) -> str:
        return str(self.base.get("dataset", ""))

    @property
    def preset(self) -> str:
        return str(self.base.get("preset", ""))

    def to_dict(self) -> dict[str, Any]:
        """JSON with sorted keys would reorder the space; pairs keep the order the person gave."""
        return {**asdict(self), "space": [[n, v] for n, v in self.space.items()],
                "trials": [asdict(t) for t in self.trials]}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sweep:
        trials = [
            Trial(**{k: v for k, v in t.items() if k in Trial.__dataclass_fields__}) for t in data["trials"]
        ]
        known = {
            k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k not in ("trials", "space")
        }
        space = {str(n): v for n, v in data["space"]}
        return cls(**known, space=space, trials=trials)

    def settings(self, trial: Trial) -> dict[str, Any]:
        """A trial's values in the order the space was given."""
        return {n: trial.params[n] for n in self.space if n in trial.params}

    def request(self, trial: Trial) -> TrainRequest:
        """The trial as a Train request: the shared settings with this trial's values put in."""
        from core.training.trainer import TrainRequest

        allowed = {f.name for f in fields(TrainRequest)}
        values = {k: v for k, v in self.base.items() if k in allowed}
        builder_values = {k: v for k, v in trial.params.items() if k in BUILDER_PARAMS}
        values.update({k: v for k, v in trial.params.items() if k not in BUILDER_PARAMS})
        if builder_values:
            if values.get("preset") != "custom":
                raise UserError(
                    "dropout and filters are the builder's settings: sweep them with preset custom"
                )
            values["builder"] = {**(values.get("builder") or {}), **builder_values}
        if values.get("image_size") is not None:
            values["image_size"] = tuple(values["image_size"])
        return TrainRequest(**values)

    def counts(self) -> dict[str, int]:
        """pending / running / finished / cancelled / refused trials (a started trial's state is its run's)."""
        out = dict.fromkeys(("pending", "running", "finished", "cancelled", "refused"), 0)
        for t in self.trials:
            if t.state == "started":
                run = trial_run(t)
                out["running" if run is not None and run.state in runs.ACTIVE_STATES else "finished"] += 1
            else:
                out[t.state] = out.get(t.state, 0) + 1
        return out

    def done(self) -> bool:
        c = self.counts()
        return not c["pending"] and not c["running"]

    def label(self) -> str:
        c = self.counts()
        state = (
            "cancelled"
            if self.cancelled
            else ("done" if self.done() else "running" if c["running"] else "queued")
        )
        what = ", ".join(SHORT[n] for n in self.space)
        return (f"{self.sweep_id} · {self.preset} · {self.dataset} · {self.mode} over {what} · "
                f"{c['finished']}/{len(self.trials)} trials · {state}")  # fmt: skip


def trial_run(trial: Trial) -> runs.Run | None:
    """The trial's run, liveness checked (a job that died is failed, not running forever); None if deleted."""
    if not trial.run_id:
        return None
    try:
        return jobs.get(trial.run_id)
    except UserError:
        return None


@contextlib.contextmanager
def _queue_lock() -> Iterator[None]:
    from filelock import FileLock, Timeout

    root().mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root() / "queue.lock"))
    try:
        lock.acquire(timeout=QUEUE_LOCK_TIMEOUT_S)
    except Timeout:
        raise UserError("the sweep queue is busy; try again in a moment") from None
    try:
        yield
    finally:
        lock.release()


def _save(sweep: Sweep) -> None:
    atomic.write_json(sweep.path / SWEEP_FILE, sweep.to_dict())


def load_sweep(path: Path) -> Sweep | None:
    raw = atomic.read_json(path / SWEEP_FILE)
    try:
        return Sweep.from_dict(raw)
    except (TypeError, KeyError, ValueError, AttributeError):
        return None


def get_sweep(sweep_id: str) -> Sweep:
    if not SWEEP_ID_RE.match(sweep_id or ""):
        raise UserError(f"not a sweep id: {sweep_id!r} (they look like sw-1a2b3c)")
    sweep = load_sweep(root() / sweep_id)
    if sweep is None:
        raise UserError(f"no sweep {sweep_id!r}; `python -m core sweep --status` lists them")
    return sweep


def list_sweeps() -> list[Sweep]:
    """Newest first."""
    if not root().is_dir():
        return []
    found = [s for p in root().iterdir() if p.is_dir() and SWEEP_ID_RE.match(p.name) if (s := load_sweep(p))]
    return sorted(found, key=lambda s: s.created, reverse=True)


def plan(base: TrainRequest, space: dict[str, Any], mode: str = "grid", count: int | None = None,
         seed: int = options.DEFAULT_SEED) -> Sweep:  # fmt: skip
    """The sweep's trials, each checked as the Train page would check it (resolve); not saved yet.

    resolve costs about 0.15 s, so it runs only for trials that bring a value no earlier check has seen (a
    value is refused or accepted on its own; a preset decides the image-size floor), plus both ends of a range:
    a 4x4 grid is checked in 4 resolves, not 16."""
    from core.training.trainer import request_dict, resolve

    settings = expand(space, mode, count, seed)
    sweep = Sweep(sweep_id="", created=time.time(), base=request_dict(base), space=space, mode=mode,
                  trials=[Trial(i, p) for i, p in enumerate(settings)], seed=seed)  # fmt: skip
    seen: set[tuple[str, str]] = set()
    probes = list(sweep.trials)
    for name, values in space.items():
        if not isinstance(values, list) and sweep.trials:
            probes += [Trial(-1, {**sweep.trials[0].params, name: end}) for end in values["range"]]
    for trial in probes:
        keys = {(n, repr(v) if isinstance(space[n], list) or trial.index < 0 else "range")
                for n, v in trial.params.items()}  # fmt: skip
        try:
            request = sweep.request(trial)
            if not keys <= seen or trial.index < 0:
                resolve(request)
        except UserError as exc:
            what = (f"trial {trial.index + 1} ({describe(sweep.settings(trial))})" if trial.index >= 0
                    else f"a range's end ({describe(sweep.settings(trial))})")  # fmt: skip
            raise UserError(f"{what}: {exc}") from None
        seen |= keys
    return sweep


def create_sweep(base: TrainRequest, space: dict[str, Any], mode: str = "grid", count: int | None = None,
                 seed: int = options.DEFAULT_SEED) -> Sweep:  # fmt: skip
    """Check every trial (`plan`), then queue them all; nothing is created on a refusal.

    The runs themselves are created one at a time by the runner (`drain`); call `ensure_runner` to start one.
    """
    sweep = plan(base, space, mode, count, seed)
    with _queue_lock():
        for _ in range(20):
            sweep.sweep_id = f"sw-{secrets.token_hex(3)}"
            try:
                sweep.path.mkdir(parents=True)
            except FileExistsError:
                continue
            _save(sweep)
            return sweep
    raise UserError("could not pick a free sweep id")


def cancel(sweep_id: str) -> tuple[int, list[str]]:
    """Drop the pending trials and ask the running one to stop (the job's Stop, so it keeps its model).

    Returns (trials dropped, runs asked to stop)."""
    stopping: list[str] = []
    with _queue_lock():
        sweep = get_sweep(sweep_id)
        dropped = 0
        for t in sweep.trials:
            if t.state == "pending":
                t.state = "cancelled"
                dropped += 1
        sweep.cancelled = True
        _save(sweep)
    for t in sweep.trials:
        run = trial_run(t)
        if run is not None and run.state in runs.ACTIVE_STATES:
            with contextlib.suppress(UserError):
                jobs.stop(run.run_id)
                stopping.append(run.run_id)
    return dropped, stopping


def pending_work() -> bool:
    return any(t.state == "pending" for s in list_sweeps() for t in s.trials)


# -- the runner ------------------------------------------------------------------------------------------------


def _runner_file() -> Path:
    return root() / "runner.json"


def runner_alive() -> bool:
    """A runner process recorded in runner.json still exists (pid + start time through psutil, on any OS)."""
    status = atomic.read_json(_runner_file(), {})
    return isinstance(status, dict) and jobs.is_alive(status)


_runner_proc: list[subprocess.Popen] = []  # the runners this process started, so they are reaped


def ensure_runner() -> bool:
    """Start a background runner when trials are pending and none is alive (after a Streamlit restart, a kill,
    or a new sweep); True when one was started. Cheap when there is nothing to do: the pages call it on load."""
    for proc in _runner_proc:
        proc.poll()
    if not pending_work():
        return False
    with _queue_lock():
        if runner_alive():
            return False
        log = open(root() / "runner.log", "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "core", "sweep", "--drain"], cwd=REPO_ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
        log.close()
        _runner_proc.append(proc)
        atomic.write_json(_runner_file(), {"pid": proc.pid, "pid_start": runs.process_start_time(proc.pid),
                                           "launched": time.time()})  # fmt: skip
    return True


def device_slots() -> list[str | None]:
    """Where trials may train side by side: one slot per NVIDIA GPU (`nvidia-smi -L`, no TensorFlow import), else
    one CPU slot. CONVNET_SWEEP_GPUS="0,1" names the GPUs to use ("" for the CPU only)."""
    raw = os.environ.get("CONVNET_SWEEP_GPUS")
    if raw is None:
        raw = ""
        smi = shutil.which("nvidia-smi")
        if smi:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
                raw = ",".join(str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU "))
    gpus = [g.strip() for g in raw.split(",") if g.strip()]
    return list(gpus) or [None]


def _next_trial(watched: set[str], last: bool) -> tuple[Sweep, Trial, runs.Run] | None:
    """Under the queue lock: a started trial still training that no slot watches (a dead runner's), else the next
    pending trial with its run created; None when nothing is left. When `last` (no trial of ours still trains),
    runner.json is cleared in the same lock, so a sweep queued a moment later finds no runner and starts one."""
    with _queue_lock():
        for sweep in reversed(list_sweeps()):  # oldest first
            for t in sweep.trials:
                if t.state == "started" and t.run_id not in watched:
                    run = trial_run(t)
                    if run is not None and run.state in runs.ACTIVE_STATES:
                        return sweep, t, run
            for t in sweep.trials:
                if t.state != "pending":
                    continue
                try:
                    run = _create_trial_run(sweep, t)
                except UserError as exc:  # e.g. the dataset was deleted since the sweep was queued
                    t.state, t.error = "refused", str(exc)
                    _save(sweep)
                    continue
                t.state, t.run_id = "started", run.run_id
                _save(sweep)
                return sweep, t, run
        if last:
            atomic.write_json(_runner_file(), {"pid": None, "ended": time.time()})
        return None


def _create_trial_run(sweep: Sweep, trial: Trial) -> runs.Run:
    from core.training.trainer import resolve

    config = resolve(sweep.request(trial)).replace(sweep=sweep.sweep_id, sweep_trial=trial.index)
    return runs.create_run(config)


@dataclass
class _Slot:
    """A trial being trained in one device slot."""

    sweep: Sweep
    trial: Trial
    run: runs.Run


def _launch_trial(slot: _Slot, device: str | None, echo: Callable[[str], None] | None) -> None:
    """Launch the trial's job on `device` (unless a dead runner's job still trains it)."""
    sweep, trial, run = slot.sweep, slot.trial, slot.run
    if echo:
        where = f" on GPU {device}" if device is not None else ""
        echo(f"{sweep.sweep_id} trial {trial.index + 1}/{len(sweep.trials)} ({describe(sweep.settings(trial))}): "
             f"run {run.run_id}{where}")  # fmt: skip
    if run.state == "queued" and not jobs.is_alive(run.status):
        if runs.stop_requested(run.path):  # cancelled between its creation and now: never start TensorFlow
            with contextlib.suppress(FileNotFoundError):
                runs.update_status(run.path, state="stopped", ended=time.time())
            return
        with contextlib.suppress(UserError):
            if device is None:
                jobs.launch(run)
            else:
                jobs.launch(run, {"CUDA_VISIBLE_DEVICES": device}, sweep_device=device)


def _ended(slot: _Slot, echo: Callable[[str], None] | None) -> bool:
    """The trial's run is no longer queued or training (or was deleted meanwhile)."""
    try:
        current = jobs.get(slot.run.run_id)
    except UserError:
        return True
    if current.state in runs.ACTIVE_STATES:
        return False
    if echo:
        acc = current.status.get("best_val_accuracy")
        shown = f", val accuracy {acc:.2%}" if isinstance(acc, int | float) else ""
        echo(f"{slot.sweep.sweep_id} trial {slot.trial.index + 1}: {current.state}{shown}")
    return True


def drain(echo: Callable[[str], None] | None = None, poll_s: float = 1.0) -> int:
    """Train every pending trial of every sweep, one per device slot at a time; returns how many trials it saw
    through.

    Only one process drains (runner.lock): a second gets a UserError, so the CLI then waits instead."""
    from filelock import FileLock, Timeout

    root().mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root() / "runner.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError("another process is already running the sweep queue") from None
    try:
        with _queue_lock():
            atomic.write_json(_runner_file(), {"pid": os.getpid(), "pid_start": runs.process_start_time(os.getpid()),
                                               "started": time.time()})  # fmt: skip
        busy: dict[int, _Slot] = {}
        devices = device_slots()
        done = 0
        while True:
            for i, device in enumerate(devices):
                if i in busy:
                    continue
                step = _next_trial({s.run.run_id for s in busy.values()}, last=not busy)
                if step is None:
                    break
                busy[i] = _Slot(*step)
                _launch_trial(busy[i], device, echo)
            if not busy:  # nothing left, and runner.json was cleared under the queue lock
                return done
            time.sleep(poll_s)
            for i in [i for i, slot in busy.items() if _ended(slot, echo)]:
                del busy[i]
                done += 1
    finally:
        lock.release()


def wait(
    sweep_id: str, timeout_s: float = 24 * 3600, poll_s: float = 1.0, while_runner: bool = False
) -> Sweep:
    """Block until no trial of the sweep is pending or running; with `while_runner`, also return as soon as no
    runner is alive (the CLI waiting on the app's runner then drains the rest itself)."""
    deadline = time.time() + timeout_s
    while True:
        sweep = get_sweep(sweep_id)
        if sweep.done() or time.time() > deadline or (while_runner and not runner_alive()):
            return sweep
        time.sleep(poll_s)


@dataclass
class TrialRow:
    """One trial with its run's outcome, for tables and charts."""

    trial: Trial
    run: runs.Run | None
    state: str = field(init=False)
    val_accuracy: float | None = field(init=False)

    def __post_init__(self) -> None:
        if self.run is not None:
            self.state = self.run.state
            acc = self.run.status.get("best_val_accuracy")
            self.val_accuracy = float(acc) if isinstance(acc, int | float) else None
        else:
            self.state = "deleted" if self.trial.state == "started" else self.trial.state
            self.val_accuracy = None


def trial_rows(sweep: Sweep) -> list[TrialRow]:
    return [TrialRow(t, trial_run(t)) for t in sweep.trials]
