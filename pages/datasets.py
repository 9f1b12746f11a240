"""Datasets: counts, samples, quality, augmentation preview; import a zip or folder, delete with undo."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from core import figures
from core.data import augmentation, datasets, images, keras_datasets
from core.errors import UserError
from pages import _dataset_build, _dataset_manage, _shared, _trash_empty


@st.cache_data(show_spinner="Checking every image…", max_entries=8)
def _quality(name: str, total: int, mtime: float, _info: datasets.DatasetInfo) -> datasets.QualityReport:
    """Keyed by name, size and folder time; `_info` (the scan main() already made) is passed along unhashed."""
    return datasets.cached_quality_report(_info, in_worker=True)


@st.cache_data(show_spinner=False, max_entries=32)
def _samples(name: str, per_class: int, seed: int, mtime: float, _info: datasets.DatasetInfo):
    return datasets.samples(_info, per_class, seed)


@st.cache_data(show_spinner=False, max_entries=32)
def _sample_strips(
    name: str, seed: int, mtime: float, _info: datasets.DatasetInfo
) -> list[tuple[str, int, str]]:
    """(class, images in it, its strip of 8 samples as a PNG data URI) for each class that has any."""
    totals = _info.class_totals()
    shown = _samples(name, 8, seed, mtime, _info)
    return [(c, totals.get(c, 0), images.png_data_uri(datasets.thumbnail_strip([a for _, a in items])))
            for c, items in shown.items() if items]  # fmt: skip


STRIPS_PER_ELEMENT = 10
CHART_HEIGHT = 320  # px; its slot is reserved at this height so nothing moves when the chart arrives


def _counts_chart(info: datasets.DatasetInfo) -> None:
    """Drawn last, into a slot reserved above the samples. A plotly chart holds back every element drawn after it
    until the script run has ended and the browser has parsed plotly's 4.7 MB bundle (3-10 s measured on a busy
    2-core machine): the samples used to wait for that, and for the whole quality check before it."""
    bars = [go.Bar(name=s, x=list(per), y=list(per.values())) for s, per in info.counts.items()]
    fig = go.Figure(bars, layout={"barmode": "group", "height": CHART_HEIGHT, "legend_title_text": "split",
                                  "xaxis_title": "class", "yaxis_title": "images"})  # fmt: skip
    figures.clear_toolbar(fig, legend="below")
    st.plotly_chart(fig, key="count_chart")


def _imbalance_note(info: datasets.DatasetInfo) -> None:
    ratio = datasets.imbalance_ratio(list(info.class_totals().values()))
    if ratio > 1.5:
        st.warning(f"Classes are imbalanced (largest/smallest = {ratio:.1f}). Training can weight classes "
                   "(balanced: w = N / (k·n_c)).", icon=":material/balance:")  # fmt: skip


def _class_weights(info: datasets.DatasetInfo) -> None:
    """A table (st.dataframe imports pandas, ~1 s on a cold server), so it is drawn after the samples."""
    totals = list(info.class_totals().values())
    weights = datasets.class_weights(totals, "balanced") or {}
    st.dataframe({"class": info.class_names, "images": totals,
                  "balanced weight": [round(weights.get(i, 0.0), 3) for i in range(len(totals))]},
                 hide_index=True)  # fmt: skip


def _samples_grid(info: datasets.DatasetInfo, mtime: float) -> None:
    st.subheader("Samples")
    seed = st.session_state.setdefault("sample_seed", 0)
    if st.button("Reshuffle", key="reshuffle", icon=":material/shuffle:"):
        seed = st.session_state.sample_seed = seed + 1
    # Markdown with the pictures inside as data URIs: with st.image the browser fetched each strip from the
    # server, whose answers waited while this script thread went on to build the page below. One element per
    # STRIPS_PER_ELEMENT classes keeps a 100-class dataset's message small (README, "cold start of the UI").
    rows = [f":small[:gray[**{_shared.md_text(c)}** · {total:,} images]]\n\n![{_shared.md_text(c)}: samples]({uri})"
            for c, total, uri in _sample_strips(info.name, seed, mtime, info)]  # fmt: skip
    for i in range(0, len(rows), STRIPS_PER_ELEMENT):
        st.markdown("\n\n".join(rows[i : i + STRIPS_PER_ELEMENT]))


def _quality_box(info: datasets.DatasetInfo, mtime: float) -> None:
    st.subheader("Image sizes and data quality")
    rep = _quality(info.name, info.total, mtime, info)
    c1, c2 = st.columns(2)
    sizes, modes = rep.sizes.most_common(10), rep.modes.most_common()
    c1.dataframe({"size (w×h)": [f"{w}×{h}" for (w, h), _ in sizes], "images": [n for _, n in sizes]},
                 hide_index=True)  # fmt: skip
    c2.dataframe({"mode": [m for m, _ in modes], "images": [n for _, n in modes]}, hide_index=True)
    if rep.problems:
        st.warning(
            f"{len(rep.problems)} problem file(s): unreadable or stray files are left out of training."
        )
        st.dataframe({"file": [f for f, _ in rep.problems], "problem": [p for _, p in rep.problems]},
                     hide_index=True)  # fmt: skip
    else:
        st.success("No unreadable or stray files.", icon=":material/check_circle:")


def _augmentation_box(info: datasets.DatasetInfo, mtime: float) -> None:
    st.subheader("Augmentation preview")
    if not st.toggle("Show it (the first time loads TensorFlow: a few seconds)", key="aug_show"):
        return  # importing TensorFlow holds the server for seconds; a person browsing data need not wait for it
    preset = st.selectbox("Augmentation layers of preset", augmentation.AUGMENTING_PRESETS, key="aug_preset")
    seed = st.session_state.get("sample_seed", 0)
    shown = _samples(info.name, 8, seed, mtime, info)
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
    _trash_empty.empty_box()
    _dataset_manage.import_box()
    _dataset_build.build_box()
    name = st.session_state.get("active_dataset")
    try:
        info = datasets.get_dataset(name)
    except UserError as exc:
        _shared.error(exc)
        return
    st.markdown(f"**{_shared.md_text(info.title)}** · {len(info.class_names)} classes · {info.total:,} images"
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
    # What a person looks at first goes out first; the chart and the class-weights table fill their places after.
    chart_slot = st.container(height=CHART_HEIGHT, border=False)
    _imbalance_note(info)
    weights_box = st.expander("Class weights training would use")
    _samples_grid(info, mtime)
    with weights_box:  # collapsed: filling it later moves nothing on screen
        _class_weights(info)
    with chart_slot:
        _counts_chart(info)
    _quality_box(info, mtime)
    _augmentation_box(info, mtime)


main()
