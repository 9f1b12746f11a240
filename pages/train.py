"""Train: preset or builder, hyperparameters, summary, start a job, live curves, stop; runs list and compare."""

from __future__ import annotations

import streamlit as st

from core import architectures, jobs, progress, runs
from core.errors import UserError
from core.training import TrainRequest, resolve
from pages import _runs_view, _shared


@st.cache_resource(max_entries=8, show_spinner="Building the model…")
def _summary(preset: str, shape: tuple[int, int, int], k: int, builder: tuple | None):
    spec = architectures.BuilderSpec(*builder) if builder else None
    model = architectures.build_model(preset, shape, k, weights=None, builder=spec)
    return architectures.summary_rows(model), architectures.param_counts(model)


def _builder_controls() -> tuple | None:
    c = st.columns(4)
    spec = architectures.BuilderSpec(
        conv_blocks=c[0].number_input("Conv blocks", 1, 6, 2, key="b_blocks"),
        filters=c[1].number_input("Filters", 4, 256, 32, key="b_filters"),
        filter_growth=c[2].number_input("Growth", 1.0, 4.0, 2.0, key="b_growth"),
        kernel_size=c[3].number_input("Kernel", 1, 9, 3, key="b_kernel"),
        dropout=c[0].slider("Dropout", 0.0, 0.8, 0.2, key="b_dropout"),
        dense_units=c[1].number_input("Dense units", 0, 4096, 128, key="b_dense"),
        augmentation=c[2].toggle("Augmentation", key="b_aug"),
        batch_norm=c[3].toggle("Batch norm", key="b_bn"),
    )
    return tuple(spec.__dict__.values())


def _form(dataset: str) -> TrainRequest | None:
    names = list(architectures.PRESETS)
    preset = st.selectbox("Architecture", names, key="preset",
                          format_func=lambda n: f"{n} — {architectures.PRESETS[n].title}")  # fmt: skip
    p = architectures.PRESETS[preset]
    st.caption(f"From {p.source}. {p.notes}")
    builder = _builder_controls() if preset == "custom" else None
    c = st.columns(4)
    epochs = c[0].number_input("Epochs", 1, 1000, p.epochs, key=f"epochs_{preset}")
    batch = c[1].number_input("Batch size", 1, 4096, p.batch_size, key=f"batch_{preset}")
    opt = c[2].selectbox("Optimizer", ["adam", "rmsprop", "sgd"], index=["adam", "rmsprop", "sgd"].index(p.optimizer),
                         key=f"opt_{preset}")  # fmt: skip
    lr = c[3].number_input("Learning rate", 1e-6, 1.0, p.learning_rate, format="%.5f", key=f"lr_{preset}")
    with st.expander("More options"):
        c = st.columns(4)
        size = c[0].text_input("Image size H×W (blank: preset/dataset default)", key="image_size")
        val_split = c[1].slider("Validation split", 0.0, 0.5, 0.2, key="val_split")
        seed = c[2].number_input("Seed", 0, 2**31 - 1, 213, key="seed")
        cw = c[3].selectbox("Class weights", ["preset default", "none", "balanced", "notebook"], key="cw")
        patience = c[0].number_input("Early stopping patience (0 = off)", 0, 100, 0, key="patience")
        restore = c[1].toggle("Restore best weights", True, key="restore")
        target = c[2].number_input("Stop at accuracy (0 = off)", 0.0, 1.0, 0.0, key="target")
        weights = c[3].text_input(
            "Transfer weights: imagenet, random or a file path", "imagenet", key="weights"
        )
    try:
        image_size = (
            tuple(int(v) for v in size.lower().replace("x", "×").split("×")) if size.strip() else None
        )
        if image_size is not None and len(image_size) != 2:
            raise ValueError
    except ValueError:
        _shared.error("image size must look like 64×64")
        return None
    return TrainRequest(
        dataset=dataset, preset=preset, epochs=int(epochs), batch_size=int(batch), optimizer=opt, learning_rate=lr,
        seed=int(seed), val_split=val_split, image_size=image_size, early_stopping=int(patience),
        restore_best=restore, target_accuracy=target or None, weights=weights.strip() or "imagenet",
        class_weights=None if cw == "preset default" else cw,
        builder=dict(zip(architectures.BuilderSpec.__dataclass_fields__, builder, strict=True)) if builder else None,
    )  # fmt: skip


@st.fragment(run_every=1.0)
def _live(run_id: str) -> None:
    """Polls the run directory; the job runs in its own process, so refreshes and reruns never disturb it."""
    try:
        run = jobs.get(run_id)
    except UserError:
        return
    epochs, batch = runs.read_progress(run.path)
    view = progress.summarize(run, epochs, batch)
    eta = f" · about {_shared.fmt_seconds(view.eta_s)} left" if view.eta_s is not None else ""
    st.progress(view.fraction, text=f"**{run.run_id}** — {view.text}{eta}")
    if run.state in runs.ACTIVE_STATES:
        if st.button("Stop", key=f"stop_{run_id}", icon=":material/stop_circle:"):
            jobs.stop(run_id)
            st.toast("Stop requested: the job ends after this batch and keeps its model.")
    elif run.state == "failed":
        _shared.error(f"failed: {run.status.get('error')}")
    else:
        st.success(f"{run.state}" + (f" — {run.status['note']}" if run.status.get("note") else ""))
    if epochs:
        st.plotly_chart(progress.curves_figure({run.run_id: epochs}), key=f"curves_{run_id}")
    if run.state not in runs.ACTIVE_STATES and st.session_state.get("live_done") != run_id:
        st.session_state.live_done = run_id
        st.rerun()  # once, so the runs list and the sidebar pick up the finished run


def main() -> None:
    _shared.page_guard()
    st.title("Train")
    dataset = st.session_state.get("active_dataset")
    st.caption(f"Dataset: **{_shared.dataset_titles().get(dataset, dataset)}** (change it in the sidebar)")
    req = _form(dataset)
    if req is None:
        return
    try:
        cfg = resolve(req)
        rows, counts = _summary(req.preset, tuple(cfg["input_shape"]), len(cfg["class_names"]),
                                tuple(req.builder.values()) if req.builder else None)  # fmt: skip
    except UserError as exc:
        _shared.error(exc)
        return
    with st.expander(f"Model summary — {counts['total']:,} parameters ({counts['trainable']:,} trainable), "
                     f"input {'×'.join(map(str, cfg['input_shape']))}, {cfg['output_kind']} head"):  # fmt: skip
        st.dataframe(rows, hide_index=True)
    if st.button("Train", type="primary", key="train", icon=":material/play_arrow:"):
        try:
            run = jobs.start(req)
        except UserError as exc:
            _shared.error(exc)
        else:
            st.query_params["run"] = st.session_state.watch_run = run.run_id
            st.session_state.live_done = None
    watched = st.query_params.get("run") or st.session_state.get("watch_run")
    if watched:
        _live(watched)
    _runs_view.render()
    _runs_view.export_active()


main()
