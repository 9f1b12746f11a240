"""What a run records about how it learned, readable without TensorFlow (the pages and the CLI only read).

runs/<id>/timelapse/index.json       pinned images, conv layers, the epochs recorded so far and what each cost
runs/<id>/timelapse/pinned.npz       the pinned images as the model saw them (uint8, at most IMAGE_SIDE a side)
runs/<id>/timelapse/epoch-0003.npz   one frame per epoch (epoch 0 = before training): for each conv layer the
                                     first channels of every pinned image's feature maps (uint8, downsampled),
                                     the Grad-CAM heatmaps (uint8), the class each explains, the probabilities
runs/<id>/dynamics.jsonl             one line per epoch: per layer the weight norm, the update/weight ratio and
                                     the share of dead ReLU units on a fixed batch of training images

Written by core.training.timelapse and core.training.dynamics, atomically, never recreating a deleted run.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import atomic
from core.errors import UserError

TIMELAPSE_DIR = "timelapse"
INDEX_FILE = "index.json"
PINNED_FILE = "pinned.npz"
DYNAMICS_FILE = "dynamics.jsonl"
INDEX_VERSION = 1
# (key in dynamics.jsonl, chart title): what the Train page draws, one small chart each
DYNAMICS_METRICS = (
    ("weight_norm", "weight norm"),
    ("update_ratio", "update / weight per epoch"),
    ("dead_relu", "dead ReLU units (share)"),
)


def frame_name(epoch: int) -> str:
    return f"epoch-{int(epoch):04d}.npz"


def timelapse_dir(run_dir: Path) -> Path:
    return Path(run_dir) / TIMELAPSE_DIR


@dataclass(frozen=True)
class TimeLapseIndex:
    images: list[dict[str, Any]]  # per pinned image: id, label, class
    class_names: list[str]
    layers: list[dict[str, Any]]  # per recorded conv layer: name, shape [h, w, c] and stored [h, w, c]
    cam_layer: str
    epochs: list[int]  # recorded and on disk, ascending
    seconds: list[float]  # what recording each epoch cost
    bytes: list[int]  # size of each epoch's frame file

    def label(self, i: int) -> str:
        img = self.images[i]
        return f"{img.get('class', '?')} · {str(img.get('id', i)).rsplit('/', 1)[-1]}"


def read_index(run_dir: Path) -> TimeLapseIndex | None:
    """The run's time-lapse, or None when it recorded none (an older run, no pinned images, no conv layer)."""
    raw = atomic.read_json(timelapse_dir(run_dir) / INDEX_FILE)
    if not isinstance(raw, dict) or raw.get("version") != INDEX_VERSION:
        return None
    try:
        images = [dict(i) for i in raw["images"]]
        layers = [dict(layer) for layer in raw["layers"]]
        epochs = [int(e) for e in raw["epochs"]]
        seconds = [float(s) for s in raw.get("seconds", [])]
        sizes = [int(b) for b in raw.get("bytes", [])]
        index = TimeLapseIndex(images, [str(c) for c in raw["class_names"]], layers, str(raw["cam_layer"]),
                               epochs, seconds, sizes)  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None
    folder = timelapse_dir(run_dir)
    on_disk = [e for e in index.epochs if (folder / frame_name(e)).is_file()]
    if not index.images or not on_disk:
        return None
    return TimeLapseIndex(index.images, index.class_names, index.layers, index.cam_layer, on_disk,
                          index.seconds, index.bytes)  # fmt: skip


@dataclass(frozen=True)
class Frame:
    """One epoch of the time-lapse for every pinned image (first axis: the pinned image)."""

    epoch: int
    maps: list[np.ndarray]  # per conv layer (P, h, w, c) uint8, each map min-max scaled on its own
    cam: np.ndarray  # (P, h, w) uint8 heatmaps, 0 where there is no evidence
    evidence: np.ndarray  # (P,) bool: False when Grad-CAM had no region to credit
    cam_class: np.ndarray  # (P,) int: the class each heatmap explains (the predicted one)
    probs: np.ndarray  # (P, K) float32


def read_frame(run_dir: Path, epoch: int, n_layers: int) -> Frame:
    path = timelapse_dir(run_dir) / frame_name(epoch)
    try:
        with np.load(path, allow_pickle=False) as z:
            return Frame(int(epoch), [np.asarray(z[f"maps_{i}"]) for i in range(n_layers)], np.asarray(z["cam"]),
                         np.asarray(z["evidence"], dtype=bool), np.asarray(z["cam_class"]),
                         np.asarray(z["probs"]))  # fmt: skip
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"time-lapse frame of epoch {epoch} cannot be read: {exc}") from None


def read_pinned(run_dir: Path) -> np.ndarray:
    """(P, H, W, C) uint8: the pinned images as the model saw them (downsampled when large)."""
    try:
        with np.load(timelapse_dir(run_dir) / PINNED_FILE, allow_pickle=False) as z:
            return np.asarray(z["images"])
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"the time-lapse's pinned images cannot be read: {exc}") from None


def read_dynamics(run_dir: Path) -> list[dict[str, Any]]:
    """One dict per epoch recorded (epoch, seconds and a {layer: value} dict per metric); [] when none."""
    try:
        text = (Path(run_dir) / DYNAMICS_FILE).read_text()
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            rows.append(row)
    return rows


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (np.load reads it) stored without compression: deflating a frame cost more CPU than an epoch
    of the `fast` preset can spare (bench/bench_timelapse.py); a frame's size is bounded by the recorder."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, a in arrays.items():
            with zf.open(f"{name}.npy", "w") as fh:
                np.lib.format.write_array(fh, np.asanyarray(a), allow_pickle=False)
    return buf.getvalue()


class QueuedWrites:
    """Atomic writes done in order by one background thread, so a file's fsync never holds up training.

    Nothing recreates a deleted run (make_parents=False): once a write finds its folder gone, `gone` is set and
    later jobs do nothing. Any other failure (a full disk) stops the recording, not the training, and is
    reported once on stderr, which a training job's log keeps.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.gone = False
        self.failed: str | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"record-{what}")

    def submit(self, job: Callable[[], None]) -> None:
        def run() -> None:
            if self.gone or self.failed:
                return
            try:
                job()
            except FileNotFoundError:
                self.gone = True
            except OSError as exc:
                self.failed = f"{self.what} not recorded any more: {exc.strerror or exc}"
                print(f"warning: {self.failed}", file=sys.stderr)

        self._pool.submit(run)

    def close(self) -> None:
        """Wait for every queued write (the end of training)."""
        self._pool.shutdown(wait=True)


def dynamics_lines(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows)


def dynamics_figure(rows: list[dict[str, Any]]):
    """Small multiples: one chart per metric, one line per layer (the same colour in every chart)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from core import figures

    fig = make_subplots(rows=1, cols=len(DYNAMICS_METRICS), subplot_titles=[t for _, t in DYNAMICS_METRICS],
                        horizontal_spacing=0.08)  # fmt: skip
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    layers = list(
        dict.fromkeys(name for r in rows for key, _ in DYNAMICS_METRICS for name in r.get(key) or {})
    )
    epochs = [r["epoch"] for r in rows]
    shown: set[str] = set()
    for j, name in enumerate(layers):
        colour = palette[j % len(palette)]
        for col, (key, _) in enumerate(DYNAMICS_METRICS, start=1):
            y = [(r.get(key) or {}).get(name) for r in rows]
            if not any(v is not None for v in y):
                continue
            fig.add_trace(go.Scatter(x=epochs, y=y, mode="lines+markers", name=name, legendgroup=name,
                                     showlegend=name not in shown, line=dict(color=colour)),
                          row=1, col=col)  # fmt: skip
            shown.add(name)
    fig.update_xaxes(title_text="epoch", dtick=1 if len(epochs) < 15 else None)
    fig.update_yaxes(type="log", row=1, col=2)  # updates are ~1e-3 of the weights; a log axis shows them all
    fig.update_yaxes(range=[-0.02, 1.02], row=1, col=3)
    fig.update_layout(height=320, margin=dict(l=0, r=0, b=0), meta="dynamics")
    return figures.clear_toolbar(fig, legend="below")
