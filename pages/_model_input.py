"""The model a page works on: the active run, or a `.keras` file a person uploads (loaded with safe_mode)."""

from __future__ import annotations

import hashlib
import io

import streamlit as st

from core.errors import UserError
from core.models import loading
from pages import _run_notices, _shared

MODEL_SOURCES = ["Use active run", "Upload a .keras model"]


@st.cache_resource(max_entries=2, show_spinner="Loading the uploaded model…")
def _uploaded_model(digest: str, name: str, _data: bytes) -> loading.LoadedModel:
    return loading.load_uploaded(_data, name)


def pick_model(prefix: str, page: str) -> tuple[loading.LoadedModel | None, str | None, str | None]:
    """(model, dataset its random samples come from, cache key for per-model objects); raises UserError."""
    src = st.radio("Model", MODEL_SOURCES, horizontal=True, key=f"{prefix}_model_source")
    if src == MODEL_SOURCES[0]:
        run = _shared.need_run(page)
        if run is None:
            return None, None, None
        lm = _shared.loaded_model(run)
        _run_notices.show(run, page)
        return lm, run.config.dataset, f"{run.run_id}:{run.model_path.stat().st_mtime_ns}"
    up = st.file_uploader(
        "A .keras model file", type=["keras"], key=f"{prefix}_model_file", max_upload_size=256
    )
    if up is None:
        st.info("Upload a model saved with `model.save('name.keras')`. Models with Lambda layers are refused: "
                "they could run arbitrary code.", icon=":material/upload_file:")  # fmt: skip
        return None, None, None
    data = up.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    lm = _uploaded_model(digest, up.name, data)
    meta = loading.read_meta(io.BytesIO(data))  # type: ignore[arg-type]  # zipfile reads file objects too
    if not meta.get("class_names"):
        typed = st.text_input("Class names (comma-separated, in the order of the model's outputs)",
                              value=", ".join(lm.class_names), key=f"{prefix}_class_names_{digest[:16]}")  # fmt: skip
        names = [n.strip() for n in typed.split(",") if n.strip()]
        lm = loading.describe(lm.model, {"output_kind": lm.output_kind}, up.name, names)
    return lm, meta.get("dataset") or st.session_state.get("active_dataset"), f"upload:{digest}"


def model_header(prefix: str, page: str) -> tuple[loading.LoadedModel, str | None, str] | None:
    """pick_model plus the one-line description every model page shows; None when there is nothing to show."""
    try:
        lm, dataset, key = pick_model(prefix, page)
    except UserError as exc:
        _shared.error(exc)
        return None
    if lm is None:
        return None
    h, w, c = lm.input_shape
    st.caption(
        f"Model **{lm.source}** · input {h}×{w}×{c} · {len(lm.class_names)} classes · {lm.output_kind} head"
    )
    return lm, dataset, key  # type: ignore[return-value]
