"""core.figures: the rule that keeps plotly's toolbar off titles and legends, checked on figure layouts."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core import figures


def _subplots(top: int) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    fig.add_trace(go.Scatter(x=[1, 2], y=[1, 2], name="train"), row=1, col=1)
    fig.update_layout(margin=dict(l=0, r=0, t=top, b=0))
    return fig


def test_subplot_titles_need_a_band_under_the_toolbar():
    assert figures.toolbar_problems(_subplots(30))  # the curves' old layout: "accuracy" under the toolbar
    assert figures.toolbar_problems(_subplots(figures.MODEBAR_ROOM))
    assert figures.toolbar_problems(_subplots(figures.MODEBAR_ROOM + figures.TITLE_ROOM)) == []
    fixed = figures.clear_toolbar(_subplots(30))
    assert (
        fixed.layout.margin.t == figures.MODEBAR_ROOM + figures.TITLE_ROOM
        and not figures.toolbar_problems(fixed)
    )


def test_a_tight_top_margin_puts_the_toolbar_on_a_right_hand_legend():
    fig = px.scatter(x=[1, 2, 3], y=[3, 1, 2], color=["a", "b", "c"])
    fig.update_layout(margin=dict(l=0, r=0, t=10, b=0))  # the PCA chart's old layout
    assert figures.toolbar_problems(fig)
    assert figures.toolbar_problems(figures.clear_toolbar(fig, legend="right")) == []
    assert figures.clear_toolbar(fig, legend="right").layout.legend.orientation == "v"


def test_a_legend_above_the_plot_is_in_the_toolbars_band_whatever_the_margin():
    fig = go.Figure(go.Scatter(x=[1], y=[1], name="a"))
    fig.update_layout(margin=dict(t=200), legend=dict(orientation="h", y=1.02, yanchor="bottom"))
    assert figures.toolbar_problems(fig) == ["the legend sits above the plot, in the toolbar's band"]
    assert figures.toolbar_problems(figures.clear_toolbar(fig)) == []  # moved below the axis


def test_plotly_defaults_and_charts_without_a_toolbar_pass():
    assert figures.toolbar_problems(go.Figure(go.Bar(x=[1], y=[1]))) == []  # plotly's own 100 px top margin
    tight = go.Figure(go.Bar(x=[1], y=[1])).update_layout(margin=dict(t=8))
    assert figures.toolbar_problems(tight)
    assert figures.toolbar_problems(tight, {"displayModeBar": False}) == []
    assert figures.toolbar_problems(tight.to_plotly_json())  # JSON, as st.plotly_chart sends it


def test_clear_toolbar_keeps_a_larger_top_margin():
    fig = go.Figure(go.Bar(x=[1], y=[1])).update_layout(margin=dict(t=90))
    assert figures.clear_toolbar(fig, legend="keep").layout.margin.t == 90
