"""The Train page's form: preset or builder and hyperparameters, remembered while the person visits other pages.

Streamlit deletes a widget's state at the end of any run that does not draw it, so leaving the Train page would
reset every setting. Each widget here keeps a copy of its value under another key (plain session state, which
Streamlit never deletes) and starts from that copy when it is drawn again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from core import options
from core.data import datasets
from core.errors import UserError
from core.models import architectures
from core.training import pinned
from core.training.trainer import TrainRequest
from pages import _shared

KEEP_PREFIX = "kept:"
OPTIMIZERS = list(options.OPTIMIZERS)
CLASS_WEIGHTS = ["preset default", *options.CLASS_WEIGHT_METHODS]


def _kept(widget: Callable[..., Any], label: str, key: str, default: Any, **kw: Any) -> Any:
    """A widget whose value survives a visit to another page (see the module docstring)."""
    value = widget(label, value=st.session_state.get(KEEP_PREFIX + key, default), key=key, **kw)
    st.session_state[KEEP_PREFIX + key] = value
    return value


def _kept_select(where: Any, label: str, options: list[str], key: str, default: str, **kw: Any) -> str:
    start = st.session_state.get(KEEP_PREFIX + key, default)
    index = options.index(start) if start in options else options.index(default)
    value = where.selectbox(label, options, index=index, key=key, **kw)
    st.session_state[KEEP_PREFIX + key] = value
    return value


def _builder_controls() -> tuple:
    c = st.columns(4)
    spec = architectures.BuilderSpec(
        conv_blocks=_kept(c[0].number_input, "Conv blocks", "b_blocks", 2, min_value=1, max_value=6),
        filters=_kept(c[1].number_input, "Filters", "b_filters", 32, min_value=4, max_value=256),
        filter_growth=_kept(c[2].number_input, "Growth", "b_growth", 2.0, min_value=1.0, max_value=4.0),
        kernel_size=_kept(c[3].number_input, "Kernel", "b_kernel", 3, min_value=1, max_value=9),
        dropout=_kept(c[0].slider, "Dropout", "b_dropout", 0.2, min_value=0.0, max_value=0.8),
        dense_units=_kept(c[1].number_input, "Dense units", "b_dense", 128, min_value=0, max_value=4096),
        augmentation=_kept(c[2].toggle, "Augmentation", "b_aug", False),
        batch_norm=_kept(c[3].toggle, "Batch norm", "b_bn", False),
    )
    return tuple(spec.__dict__.values())


MAX_PIN_OPTIONS = 3000  # a multiselect of every validation file of a huge dataset would be slow to send


@st.cache_data(ttl=30, show_spinner=False)
def _validation_files(dataset: str, val_split: float, seed: int) -> list[str]:
    try:
        return pinned.validation_files(datasets.get_dataset(dataset), val_split, seed)[:MAX_PIN_OPTIONS]
    except UserError:
        return []


def _pinned(dataset: str, val_split: float, seed: int) -> list[str] | None:
    """The time-lapse's pinned images: validation files of a folder dataset; blank means one per class."""
    files = _validation_files(dataset, val_split, seed)
    if not files:
        st.caption("Time-lapse: one validation image per class is recorded every epoch (see Inspect).")
        return None
    kept = [f for f in st.session_state.get(KEEP_PREFIX + "pinned", []) if f in files]
    value = st.multiselect(
        "Time-lapse images (validation split; blank: one per class)", files, default=kept,
        key=f"pinned_{dataset}_{val_split}_{seed}", max_selections=pinned.MAX_PINNED,
        help="Inspect plays back each epoch's feature maps, Grad-CAM and probabilities for these images",
    )  # fmt: skip
    st.session_state[KEEP_PREFIX + "pinned"] = value
    return list(value) or None


def _image_size(text: str) -> tuple[int, ...] | None:
    size = tuple(int(v) for v in text.lower().replace("x", "×").split("×")) if text.strip() else None
    if size is not None and len(size) != 2:
        raise ValueError
    return size


def form(dataset: str) -> TrainRequest | None:
    names = list(architectures.PRESETS)
    preset = _kept_select(st, "Architecture", names, "preset", names[0],
                          format_func=lambda n: f"{n} — {architectures.PRESETS[n].title}")  # fmt: skip
    p = architectures.PRESETS[preset]
    st.caption(f"From {p.source}. {p.notes}")
    builder = _builder_controls() if preset == "custom" else None
    c = st.columns(4)
    epochs = _kept(c[0].number_input, "Epochs", f"epochs_{preset}", p.epochs, min_value=1, max_value=1000)
    batch = _kept(
        c[1].number_input, "Batch size", f"batch_{preset}", p.batch_size, min_value=1, max_value=4096
    )
    opt = _kept_select(c[2], "Optimizer", OPTIMIZERS, f"opt_{preset}", p.optimizer)
    lr = _kept(c[3].number_input, "Learning rate", f"lr_{preset}", p.learning_rate, min_value=1e-6, max_value=1.0,
               format="%.5f")  # fmt: skip
    with st.expander("More options"):
        c = st.columns(4)
        size = _kept(c[0].text_input, "Image size H×W (blank: preset/dataset default)", "image_size", "")
        val_split = _kept(c[1].slider, "Validation split", "val_split", 0.2, min_value=0.0, max_value=0.5)
        seed = _kept(c[2].number_input, "Seed", "seed", 213, min_value=0, max_value=2**31 - 1)
        cw = _kept_select(c[3], "Class weights", CLASS_WEIGHTS, "cw", CLASS_WEIGHTS[0])
        patience = _kept(c[0].number_input, "Early stopping patience (0 = off)", "patience", 0, min_value=0,
                         max_value=100)  # fmt: skip
        restore = _kept(c[1].toggle, "Restore best weights", "restore", True)
        target = _kept(
            c[2].number_input, "Stop at accuracy (0 = off)", "target", 0.0, min_value=0.0, max_value=1.0
        )
        weights = _kept(
            c[3].text_input, "Transfer weights: imagenet, random or a file path", "weights", "imagenet"
        )
        schedule = _kept_select(c[0], "Learning-rate schedule", list(options.LR_SCHEDULES), f"sched_{preset}",
                                p.lr_schedule, help="one-cycle: warm up to the learning rate, then cosine down")  # fmt: skip
        smoothing = _kept(c[1].number_input, "Label smoothing", f"smooth_{preset}", p.label_smoothing,
                          min_value=0.0, max_value=options.MAX_LABEL_SMOOTHING, step=0.05)  # fmt: skip
        pins = _pinned(dataset, float(val_split), int(seed))
    try:
        image_size = _image_size(size)
    except ValueError:
        _shared.error("image size must look like 64×64")
        return None
    return TrainRequest(
        dataset=dataset, preset=preset, epochs=int(epochs), batch_size=int(batch), optimizer=opt, learning_rate=lr,
        seed=int(seed), val_split=val_split, image_size=image_size, early_stopping=int(patience),
        restore_best=restore, target_accuracy=target or None, weights=weights.strip() or "imagenet",
        class_weights=None if cw == "preset default" else cw, pinned=pins, lr_schedule=schedule,
        label_smoothing=float(smoothing),
        builder=dict(zip(architectures.BuilderSpec.__dataclass_fields__, builder, strict=True)) if builder else None,
    )  # fmt: skip
