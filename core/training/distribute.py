"""tf.distribute strategies for a training job: one device, all local GPUs, or several machines via TF_CONFIG.

The batch size in a run's config is always global: MirroredStrategy and MultiWorkerMirroredStrategy split each batch
across every replica, and the gradients are summed back, so one optimiser step sees the same number of images
whatever the cluster. Only the chief (task "chief", or "worker" 0 when there is none) writes the run directory; the
other workers train in a scratch copy of config.json that they delete. docs/SCALING.md says how to run it.

Keras 3.15's fit() under a strategy trips over two things (keras-team/keras#20585): with several workers it reduces
scalar metrics "along axis 0", which TF rejects, and it averages a whole first input batch across replicas only to
learn its shape, which fails on an (x, y) pair across workers and on a batch split unevenly between replicas.
`get_strategy` and `prepare_model` work around both without touching the numbers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import options
from core.errors import UserError, first_line

if TYPE_CHECKING:
    from core.training.run_config import RunConfig

STRATEGIES = options.STRATEGIES
LOGICAL_CPUS_ENV = "CONVNET_LOGICAL_CPUS"  # split the CPU into this many devices (MirroredStrategy on a CPU)
CLUSTER_WAIT_ENV = "CONVNET_CLUSTER_WAIT_S"  # how long a worker waits for the others to start (0 = forever)
DEFAULT_CLUSTER_WAIT_S = 900
TASK_TYPES = ("chief", "worker")


def tf_config() -> dict[str, Any]:
    """TF_CONFIG from the environment, checked enough that a typo is one clear line instead of a hang."""
    raw = os.environ.get("TF_CONFIG")
    if not raw or not raw.strip():
        raise UserError(
            "--strategy multiworker needs TF_CONFIG (cluster and task) in the environment; see docs/SCALING.md"
        )
    try:
        cfg = json.loads(raw)
        cluster, task = cfg["cluster"], cfg["task"]
        kind, index = task["type"], int(task["index"])
        hosts = {k: list(v) for k, v in cluster.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError("TF_CONFIG is not valid JSON with a cluster and a task {type, index}") from None
    if kind not in TASK_TYPES:
        raise UserError(f"TF_CONFIG task type {kind!r} is not supported; use chief or worker")
    if set(hosts) - set(TASK_TYPES) or not hosts.get("worker") and not hosts.get("chief"):
        raise UserError("TF_CONFIG cluster must list chief and/or worker addresses (host:port) only")
    if len(hosts.get("chief", [])) > 1:
        raise UserError("TF_CONFIG cluster can have at most one chief")
    if not 0 <= index < len(hosts.get(kind, [])):
        raise UserError(f"TF_CONFIG task {kind} {index} is not in the cluster's {kind} list")
    bad = [
        h for hs in hosts.values() for h in hs if not isinstance(h, str) or not h.rpartition(":")[2].isdigit()
    ]
    if bad:
        raise UserError(f"TF_CONFIG cluster address {bad[0]!r} is not host:port")
    return {"cluster": hosts, "task": {"type": kind, "index": index}}


def is_chief(name: str) -> bool:
    """Only the chief writes the run directory; other workers train and keep quiet."""
    if name != "multiworker":
        return True
    cfg = tf_config()
    task = cfg["task"]
    if task["type"] == "chief":
        return True
    return task["index"] == 0 and "chief" not in cfg["cluster"]


def task_label() -> str:
    task = tf_config()["task"]
    return f"{task['type']} {task['index']}"


def split_cpu() -> None:
    """Honour CONVNET_LOGICAL_CPUS before TensorFlow starts its runtime (MirroredStrategy over CPU 'devices')."""
    raw = os.environ.get(LOGICAL_CPUS_ENV)
    if not raw:
        return
    try:
        n = int(raw)
    except ValueError:
        raise UserError(f"{LOGICAL_CPUS_ENV} must be a whole number, not {raw!r}") from None
    if n <= 1:
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:  # the runtime already started: fine if it already has the devices
        if len(tf.config.list_logical_devices("CPU")) < n:
            raise UserError(f"{LOGICAL_CPUS_ENV}={n} must be set before TensorFlow starts") from None


def cluster_wait_s() -> int:
    raw = os.environ.get(CLUSTER_WAIT_ENV)
    try:
        value = int(float(raw)) if raw else DEFAULT_CLUSTER_WAIT_S
    except ValueError:
        raise UserError(f"{CLUSTER_WAIT_ENV} must be a number of seconds, not {raw!r}") from None
    return max(0, value)


def _multi_worker_strategy():
    import tensorflow as tf
    from tensorflow.python.distribute import collective_all_reduce_strategy as collective

    # TF waits forever for the other workers, deaf to Ctrl-C and the stop file; a bounded wait ends in a clear error.
    collective.CollectiveAllReduceExtended._check_health_initial_timeout = cluster_wait_s()

    class KerasFriendlyMultiWorker(tf.distribute.MultiWorkerMirroredStrategy):
        """Keras asks for MEAN over axis 0 of each replica's scalar loss and metrics; for a scalar that is the mean
        over replicas, i.e. axis None (the values already agree: metric variables are all-reduced on write)."""

        def reduce(self, reduce_op, value, axis):
            if axis is not None:
                local = self.experimental_local_results(value)[0]
                if getattr(getattr(local, "shape", None), "rank", None) == 0:
                    axis = None
            return super().reduce(reduce_op, value, axis)

    return KerasFriendlyMultiWorker()


def get_strategy(name: str):
    """The strategy whose scope the model is built in; the batch size given is global across replicas.

    Call it before anything runs on TensorFlow: the CPU split and the multi-worker collectives are start-up settings.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; choose {', '.join(STRATEGIES)}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_physical_devices("GPU"):
            return tf.distribute.MirroredStrategy()  # every local GPU
        split_cpu()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(cpus if len(cpus) > 1 else None)
    tf_config()
    try:
        return _multi_worker_strategy()
    except RuntimeError as exc:
        if "Timeout waiting for the cluster" in str(exc):
            raise UserError(
                f"the other workers did not all start within {cluster_wait_s()} s ({CLUSTER_WAIT_ENV}); "
                "start every worker with the same TF_CONFIG cluster"
            ) from None
        raise UserError(f"could not start the multi-worker strategy: {first_line(exc)}") from None


@contextlib.contextmanager
def cluster_errors(name: str) -> Iterator[None]:
    """A worker that died or became unreachable surfaces as UnavailableError (or a cancelled/timed-out collective)
    with a TF graph dump for a message; say what happened instead."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.DeadlineExceededError) as exc:
        if name != "multiworker":
            raise
        raise UserError(
            f"another worker of the cluster stopped or became unreachable ({type(exc).__name__}); "
            "the model of the last finished epoch is kept"
        ) from None


def is_multi_worker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def describe(strategy, name: str) -> dict[str, Any]:
    """What status.json records: how many replicas share each (global) batch, and on how many machines."""
    out: dict[str, Any] = {"strategy": name, "replicas": int(strategy.num_replicas_in_sync)}
    if name == "multiworker":
        cluster = tf_config()["cluster"]
        out["workers"] = sum(len(v) for v in cluster.values())
        out["task"] = task_label()
    return out


def check_batch_size(batch_size: int, strategy) -> None:
    replicas = int(strategy.num_replicas_in_sync)
    if batch_size < replicas:
        raise UserError(
            f"batch size {batch_size} is global and must be at least the number of replicas ({replicas})"
        )


def shard_by_data(ds):
    """Arrays from memory (or a file-list pipeline) cannot be split by file, so every worker reads the whole
    dataset and keeps its own share of each global batch."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def prepare_model(model, strategy, element_spec) -> None:
    """Let fit() and evaluate() build metrics from the dataset's element spec, locally. Under a strategy Keras 3.15
    instead averages a first batch across replicas just to learn its shape, which fails on an (x, y) pair with
    multi-worker and on a last batch split unevenly between replicas (3 validation images over 2 devices)."""
    import tensorflow as tf

    if strategy is tf.distribute.get_strategy() or not hasattr(model, "_symbolic_build"):
        return  # the default strategy: Keras builds from the data without any reduce
    import types

    import keras

    spec = tf.nest.map_structure(lambda s: keras.KerasTensor(tuple(s.shape), s.dtype.name), element_spec)

    def local_symbolic_build(self, iterator=None, data_batch=None):
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=spec if data_batch is None else data_batch)

    model._maybe_symbolic_build = types.MethodType(local_symbolic_build, model)


class _Agreement:
    """One compiled all-reduce (a few ms) that every worker calls at the same points, so they decide together."""

    def __init__(self, strategy) -> None:
        import tensorflow as tf

        self.strategy = strategy
        self.multi = is_multi_worker(strategy)
        if self.multi:
            self._sum = tf.function(
                lambda v: strategy.reduce("SUM", strategy.run(lambda: tf.identity(v)), axis=None)
            )

    def sum(self, values: list[float]) -> list[float]:
        if not self.multi:
            return list(values)
        import tensorflow as tf

        return [float(v) for v in self._sum(tf.constant(values, tf.float64)).numpy()]


def any_worker(strategy, flag: bool) -> bool:
    """True on every worker when it is true on any (a no-op without multi-worker)."""
    return _Agreement(strategy).sum([1.0 if flag else 0.0])[0] > 0


def check_same_run(strategy, config: RunConfig, counts: tuple[int, ...]) -> None:
    """Workers that disagree on the model or the data would hang or fail deep in a collective; say it plainly."""
    agreement = _Agreement(strategy)
    if not agreement.multi:
        return
    same = {k: v for k, v in config.to_dict().items() if k not in ("run_id", "dataset_title", "preset_title")}
    text = json.dumps(same, sort_keys=True, default=str) + repr(counts)
    x = float(zlib.crc32(text.encode()) % (1 << 20))
    n = int(strategy.num_replicas_in_sync)  # every replica adds its worker's x
    total, squares = agreement.sum([x, x * x])
    if abs(squares * n - total * total) > 0.5:  # n * sum(x^2) == sum(x)^2 only when every x is the same
        raise UserError(
            "the workers disagree on the run's configuration or on the dataset's images; "
            "give every worker the same config.json and the same data"
        )


def synced_stop(stop_cb, strategy):
    """The stop file on the chief, or a signal on any worker, stops every worker after the same batch: one worker
    leaving fit() early would leave the others waiting forever in the next all-reduce."""
    import keras

    from core.training import runs

    agreement = _Agreement(strategy)

    class SyncedStop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            local = stop_cb.requested or runs.stop_requested(stop_cb.run_dir)
            if agreement.sum([1.0 if local else 0.0])[0] > 0:
                stop_cb.requested = True
                self.model.stop_training = True

        on_epoch_end = on_train_batch_end

    return SyncedStop()


def scratch_run_dir(run_path: Path) -> Path:
    """A non-chief worker's private copy of the run (config.json), deleted when it finishes. It sits beside the run,
    hidden from run listings, so a streamed dataset's cache lands on the runs disk rather than in /tmp."""
    run_path = Path(run_path)
    scratch = Path(tempfile.mkdtemp(prefix=f".worker-{run_path.name[:60]}-", dir=run_path.parent))
    shutil.copy2(run_path / "config.json", scratch / "config.json")
    return scratch
