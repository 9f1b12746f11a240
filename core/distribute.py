"""tf.distribute strategies for a training job: one device, all local GPUs, or several machines via TF_CONFIG."""

from __future__ import annotations

import json
import os

from core.errors import UserError

STRATEGIES = ("default", "mirrored", "multiworker")


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise UserError(
            "--strategy multiworker needs TF_CONFIG (cluster and task) in the environment; see README"
        )
    try:
        cfg = json.loads(raw)
        cfg["cluster"], cfg["task"]["type"], cfg["task"]["index"]
    except (ValueError, KeyError, TypeError):
        raise UserError("TF_CONFIG is not valid JSON with cluster and task {type, index}") from None
    return cfg


def get_strategy(name: str):
    """The strategy whose scope the model is built in; the batch size given is global across replicas."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        _tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UserError(f"unknown strategy {name!r}; choose {', '.join(STRATEGIES)}")


def is_chief(name: str) -> bool:
    """Only the chief writes the run directory; other workers train and keep quiet."""
    if name != "multiworker":
        return True
    cfg = _tf_config()
    task = cfg["task"]
    if task["type"] == "chief":
        return True
    return task["type"] == "worker" and int(task["index"]) == 0 and "chief" not in cfg["cluster"]
