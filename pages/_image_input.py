"""The image picker Classify and Inspect share: uploads, camera, a random dataset sample, a drawing canvas."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import streamlit as st

from core.data import datasets, images, keras_datasets
from core.errors import UserError
from pages import _shared

try:  # optional: without it the page simply offers no canvas
    from streamlit_drawable_canvas import st_canvas
except Exception:  # pragma: no cover - depends on the install
    st_canvas = None

IMAGE_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"]
CANVAS_SIDE = 280
# The canvas draws its toolbar (download, undo, redo, clear) floating about 33 px above its top edge, over
# whatever is there: with no room it covered the image-source buttons. This spacer plus Streamlit's 16 px gap
# between elements keeps it below them.
CANVAS_TOOLBAR_ROOM = 24

Source = bytes | Path | np.ndarray


@st.cache_resource(max_entries=1, show_spinner="Loading the dataset…")
def _arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    return keras_datasets.load_arrays(name)["train"]


def random_sample(dataset: str, seed: int) -> tuple[str, Source, str]:
    """(name, file path or uint8 array, true class) of one random image of the dataset."""
    info = datasets.get_dataset(dataset)
    rng = random.Random(seed)
    if info.kind == "folder":
        pool = [(p, c) for per in info.files.values() for c, files in per.items() for p in files]
        if not pool:
            raise UserError(f"dataset {dataset} has no images to sample")
        path, cls = rng.choice(pool)
        return path.name, path, cls
    if not info.available:
        raise UserError(keras_datasets.missing_message(dataset))
    x, y = _arrays(dataset)
    i = rng.randrange(len(y))
    image = x[i][..., 0] if x.shape[-1] == 1 else x[i]
    return f"{dataset} #{i}", np.ascontiguousarray(image), info.class_names[int(y[i])]


UPLOAD_MB = 64  # per image; the server-wide cap (.streamlit/config.toml) is larger, for dataset zips


def as_sources(items: list[tuple[str, Source]]) -> list[tuple[str, bytes | Path]]:
    # arrays go through the same decode path as uploads, so they are encoded the way a file would be
    return [(name, images.png_bytes(src) if isinstance(src, np.ndarray) else src) for name, src in items]


def _uploads(key: str, multiple: bool) -> list[tuple[str, Source]]:
    label = "Drop images here" if multiple else "Drop an image here"
    got = st.file_uploader(label, type=IMAGE_TYPES, accept_multiple_files=multiple, key=f"{key}_files",
                           max_upload_size=UPLOAD_MB)  # fmt: skip
    files = got if isinstance(got, list) else ([got] if got else [])
    # Streamlit checks max_upload_size in the browser only: a script posting to the upload URL directly gets up to
    # server.maxUploadSize through, so the page refuses what is over its own cap before anything decodes it
    for f in files:
        if f.size > UPLOAD_MB << 20:
            _shared.error(f"{f.name} is larger than {UPLOAD_MB} MB; refused")
    return [(f.name, f.getvalue()) for f in files if f.size <= UPLOAD_MB << 20]


def _camera(key: str) -> list[tuple[str, Source]]:
    shot = st.camera_input("Take a photo", key=f"{key}_camera")
    return [("camera photo", shot.getvalue())] if shot else []


def _sample(key: str, dataset: str | None) -> list[tuple[str, Source]]:
    if not dataset:
        st.info("No dataset is known for this model; pick one in the sidebar.")
        return []
    state = f"{key}_sample"
    clicked = st.button("Random sample", key=f"{key}_sample_button", icon=":material/shuffle:")
    if clicked or st.session_state.get(state, (None,))[0] != dataset:
        try:
            st.session_state[state] = (dataset, *random_sample(dataset, random.randrange(1 << 30)))
        except UserError as exc:
            _shared.error(exc)
            return []
    _, name, src, cls = st.session_state[state]
    st.caption(
        f"From **{_shared.md_text(dataset)}** · file {_shared.md_text(name)} · true class **{_shared.md_text(cls)}**"
    )
    return [(f"{name} (true class: {cls})", src)]


def _canvas(key: str) -> list[tuple[str, Source]]:
    if st_canvas is None:
        st.info("Drawing needs the streamlit-drawable-canvas package.")
        return []
    st.space(CANVAS_TOOLBAR_ROOM)
    result = st_canvas(stroke_width=18, stroke_color="#FFFFFF", background_color="#000000", height=CANVAS_SIDE,
                       width=CANVAS_SIDE, drawing_mode="freedraw", return_image_data=True, key=f"{key}_canvas")  # fmt: skip
    st.caption("Draw in white on black, as Fashion-MNIST and MNIST images are light on dark.")
    if not (result.json_data or {}).get("objects"):
        return []
    rgba = result.image_data
    if rgba is None:
        return []
    rgba = np.asarray(rgba, dtype=np.float32)
    if rgba.ndim == 3 and rgba.shape[-1] == 4:  # light strokes count, whatever the background's alpha
        gray = rgba[..., :3].mean(axis=-1) * (rgba[..., 3] / 255.0)
    else:
        gray = rgba if rgba.ndim == 2 else rgba[..., :3].mean(axis=-1)
    return [("drawing", np.clip(np.rint(gray), 0, 255).astype(np.uint8))]


def pick_images(
    key: str, channels: int, dataset: str | None, multiple: bool = True
) -> list[tuple[str, Source]]:
    """Widgets for one image source at a time; returns (name, bytes | Path | uint8 array) per picked image."""
    options = ["Upload", "Camera", "Dataset sample"] + (["Draw"] if channels == 1 else [])
    icons = {"Upload": ":material/upload:", "Camera": ":material/photo_camera:",
             "Dataset sample": ":material/shuffle:", "Draw": ":material/draw:"}  # fmt: skip
    if st.session_state.get(f"{key}_source") not in options:
        st.session_state[f"{key}_source"] = "Upload"
    source = st.segmented_control("Image source", options, required=True, key=f"{key}_source",
                                  format_func=lambda o: f"{icons[o]} {o}")  # fmt: skip
    if source == "Camera":
        return _camera(key)
    if source == "Dataset sample":
        return _sample(key, dataset)
    if source == "Draw":
        return _canvas(key)
    return _uploads(key, multiple)
