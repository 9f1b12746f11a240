"""Datasets: counts, samples, quality, augmentation preview; import a zip or folder, delete with undo."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from core import figures
from core.data import augmentation, datasets, keras_datasets
from core.errors import UserError
from pages import _dataset_manage, _shared


@st.cache_data(show_spinner="Checking every image…", max_entries=8)
def _quality(name: str, total: int, mtime: float) -> datasets.QualityReport:
    return datasets.quality_report(datasets.get_dataset(name))


@st.cache_data(show_spinner=False, max_entries=32)
def _samples(name: str, per_class: int, seed: int, mtime: float):
    return datasets.samples(datasets.get_dataset(name), per_class, seed)


def _counts_chart(info: datasets.DatasetInfo) -> None:
    rows = [{"split": s, "class": c, "images": n} for s, per in info.counts.items() for c, n in per.items()]
    fig = px.bar(pd.DataFrame(rows), x="class", y="images", color="split", barmode="group", height=320)
    figures.clear_toolbar(fig, legend="below")
    st.plotly_chart(fig, key="count_chart")
    totals = list(info.class_totals().values())
    ratio = datasets.imbalance_ratio(totals)
    if ratio > 1.5:
        st.warning(f"Classes are imbalanced (largest/smallest = {ratio:.1f}). Training can weight classes "
                   "(balanced: w = N / (k·n_c)).", icon=":material/balance:")  # fmt: skip
    weights = datasets.class_weights(totals, "balanced") or {}
    table = pd.DataFrame({"class": info.class_names, "images": totals,
                          "balanced weight": [round(weights.get(i, 0.0), 3) for i in range(len(totals))]})  # fmt: skip
    with st.expander("Class weights training would use"):
        st.dataframe(table, hide_index=True)


def _samples_grid(info: datasets.DatasetInfo, mtime: float) -> None:
    st.subheader("Samples")
    seed = st.session_state.setdefault("sample_seed", 0)
    if st.button("Reshuffle", key="reshuffle", icon=":material/shuffle:"):
        seed = st.session_state.sample_seed = seed + 1
    shown = _samples(info.name, 8, seed, mtime)
    for c, items in shown.items():
        if items:
            st.caption(f"**{c}** · {info.class_totals().get(c, 0):,} images")
            st.image([a for _, a in items], width=72)


def _quality_box(info: datasets.DatasetInfo, mtime: float) -> None:
    st.subheader("Image sizes and data quality")
    rep = _quality(info.name, info.total, mtime)
    c1, c2 = st.columns(2)
    c1.dataframe(pd.DataFrame([{"size (w×h)": f"{w}×{h}", "images": n} for (w, h), n in rep.sizes.most_common(10)]),
                 hide_index=True)  # fmt: skip
    c2.dataframe(
        pd.DataFrame([{"mode": m, "images": n} for m, n in rep.modes.most_common()]), hide_index=True
    )
    if rep.problems:
        st.warning(
            f"{len(rep.problems)} problem file(s): unreadable or stray files are left out of training."
        )
        st.dataframe(pd.DataFrame(rep.problems, columns=["file", "problem"]), hide_index=True)
    else:
        st.success("No unreadable or stray files.", icon=":material/check_circle:")


def _augmentation_box(info: datasets.DatasetInfo, mtime: float) -> None:
    st.subheader("Augmentation preview")
    preset = st.selectbox("Augmentation layers of preset", augmentation.AUGMENTING_PRESETS, key="aug_preset")
    seed = st.session_state.get("sample_seed", 0)
    shown = _samples(info.name, 8, seed, mtime)
    options = [(c, i) for c, items in shown.items() for i in range(len(items))]
    if not options:
        return
    pick = st.selectbox(
        "Image", options, format_func=lambda o: f"{o[0]} — {shown[o[0]][o[1]][0]}", key="aug_image"
    )
    image = shown[pick[0]][pick[1]][1]
    grid = augmentation.tile(augmentation.preview(image, preset, 9, seed=seed))
    st.image(grid, caption=f"9 draws through {preset}'s augmentation layers", width=360)


def main() -> None:
    _shared.page_guard()
    st.title("Datasets")
    _shared.start_here()
    _dataset_manage.undo_box()
    _dataset_manage.import_box()
    name = st.session_state.get("active_dataset")
    try:
        info = datasets.get_dataset(name)
    except UserError as exc:
        _shared.error(exc)
        return
    st.markdown(f"**{info.title}** · {len(info.class_names)} classes · {info.total:,} images"
                + (f" · {info.layout} layout" if info.kind == "folder" else ""))  # fmt: skip
    _dataset_manage.delete_box(info)
    if not info.available:
        st.info(keras_datasets.missing_message(info.name), icon=":material/cloud_download:")
        if st.button("Download", key="download"):
            try:
                with st.spinner("Downloading…"):
                    keras_datasets.load_arrays(info.name, allow_download=True)
                _shared.catalog.clear()
                st.rerun()
            except UserError as exc:
                _shared.error(exc)
        return
    mtime = info.path.stat().st_mtime if info.path else 0.0
    _counts_chart(info)
    _samples_grid(info, mtime)
    _quality_box(info, mtime)
    _augmentation_box(info, mtime)


main()
