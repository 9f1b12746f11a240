"""Train: preset or builder, hyperparameters, summary, start a job, live curves, stop; runs list and compare."""

from __future__ import annotations

import streamlit as st

from core.errors import UserError
from core.models import architectures
from core.training import jobs, progress, runs, spare
from core.training.trainer import resolve
from pages import _runs_view, _shared, _sidebar, _train_dynamics, _train_form, _train_lr_finder


@st.cache_resource(max_entries=8, show_spinner="Building the model…")
def _summary(preset: str, shape: tuple[int, int, int], k: int, builder: tuple | None):
    spec = architectures.BuilderSpec(*builder) if builder else None
    model = architectures.build_model(preset, shape, k, weights=None, builder=spec)
    return architectures.summary_rows(model), architectures.param_counts(model)


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
        st.success(
            f"{run.state}" + (f" — {_shared.md_text(run.status['note'])}" if run.status.get("note") else "")
        )
    _warnings(run)
    if epochs:
        st.plotly_chart(progress.curves_figure({run.run_id: epochs}), key=f"curves_{run_id}")
    following = st.session_state.get("follow_run") == run_id and st.session_state.get("active_run") != run_id
    if run.has_model and following:
        st.rerun()  # the sidebar (outside this fragment) makes the run active as soon as it has saved a model
    if run.state not in runs.ACTIVE_STATES and st.session_state.get("live_done") != run_id:
        st.session_state.live_done = run_id
        st.rerun()  # once, so the runs list and the sidebar pick up the finished run


def _warnings(run: runs.Run) -> None:
    """Training health found by the job (NaN loss, chance-level accuracy...): shown, never only in a log."""
    if run.state in runs.ACTIVE_STATES:
        return
    for w in run.warnings:
        st.warning(w, icon=":material/warning:")
    if run.warnings and run.status.get("hint"):
        st.caption(f"Hint: {run.status['hint']}")


def main() -> None:
    _shared.page_guard()
    st.title("Train")
    _shared.start_here()
    dataset = st.session_state.get("active_dataset")
    st.caption(
        f"Dataset: **{_shared.md_text(_shared.dataset_titles().get(dataset, dataset))}** (change it in the sidebar)"
    )
    req = _train_form.form(dataset)
    if req is None:
        return
    _train_lr_finder.render(req)
    try:
        cfg = resolve(req)
        rows, counts = _summary(req.preset, cfg.input_shape, cfg.num_classes,
                                tuple(req.builder.values()) if req.builder else None)  # fmt: skip
    except UserError as exc:
        _shared.error(exc)
        return
    with st.expander(f"Model summary — {counts['total']:,} parameters ({counts['trainable']:,} trainable), "
                     f"input {'×'.join(map(str, cfg.input_shape))}, {cfg.output_kind} head"):  # fmt: skip
        st.dataframe(rows, hide_index=True)
    if st.button("Train", type="primary", key="train", icon=":material/play_arrow:"):
        try:
            run = jobs.start(req)
        except UserError as exc:
            _shared.error(exc)
        else:
            st.query_params["run"] = st.session_state.watch_run = run.run_id
            st.session_state.live_done = None
            _sidebar.follow_run(run.run_id)
    watched = st.query_params.get("run") or st.session_state.get("watch_run")
    if watched:
        _live(watched)
    _train_dynamics.render()
    listed = _shared.list_runs()  # after the click, so a run started just now is listed (and counts as busy)
    _runs_view.render(listed)
    _runs_view.export_active()
    # a spare job process imports TensorFlow and prepares the form's settings, so Train starts in seconds
    spare.ensure(busy=any(r.state in runs.ACTIVE_STATES for r in listed), prepare=cfg.to_dict())


main()
