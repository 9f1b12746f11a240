"""Layout rules every plotly chart in the app follows, so plotly's toolbar never covers a title or a legend.

Plotly draws its toolbar (the modebar: zoom, pan, download...) over the top-right corner of the figure, inside
the top margin. Subplot titles and a legend placed above the plot live in that same margin, so with the tight
margins a dashboard wants (`t=10`) the toolbar sits on top of them whenever the mouse is over the chart. The
rule: the top margin holds the toolbar and, above it, nothing else but subplot titles in a band of their own;
legends go below the x axis (horizontal, anchored to the bottom of the figure so they never meet the axis
title) or to the right of the plot, starting below the toolbar.
"""

from __future__ import annotations

from typing import Any, Literal

import plotly.graph_objects as go

MODEBAR_ROOM = 40  # px: the toolbar is about 28 px tall and sits a few px below the figure's top edge
TITLE_ROOM = 22  # px: one line of subplot title between the toolbar and the plot area
PLOTLY_DEFAULT_TOP = 100  # px: plotly's own top margin when a figure sets none

# Below the plot, anchored to the bottom of the whole figure ("container"), so however tall the tick labels
# and the axis title are, the legend is beneath them; plotly grows the bottom margin to fit it.
LEGEND_BELOW: dict[str, Any] = {
    "orientation": "h",
    "yref": "container",
    "y": 0,
    "yanchor": "bottom",
    "x": 0,
    "xanchor": "left",
}


def _layout(fig: go.Figure | dict) -> dict[str, Any]:
    spec = fig.to_plotly_json() if isinstance(fig, go.Figure) else fig
    return dict(spec.get("layout") or {})


def _top_titles(layout: dict[str, Any]) -> int:
    """How many annotations sit above the plot area (subplot titles are annotations at paper y >= 1)."""
    return sum(
        1
        for a in layout.get("annotations") or ()
        if a.get("yref", "paper") == "paper" and float(a.get("y", 0.5)) >= 1.0 and a.get("yanchor") != "top"
    )


def needed_top(fig: go.Figure | dict) -> int:
    """The top margin that keeps the toolbar clear of this figure's subplot titles and plot title."""
    layout = _layout(fig)
    title = layout.get("title")
    has_title = bool(title.get("text")) if isinstance(title, dict) else bool(title)
    return MODEBAR_ROOM + (TITLE_ROOM if _top_titles(layout) or has_title else 0)


def clear_toolbar(fig: go.Figure, legend: Literal["below", "right", "keep"] = "below") -> go.Figure:
    """Give `fig` room for the toolbar (in place, returned for chaining) and put its legend where it cannot
    collide: "below" the x axis, or "right" of the plot (plotly's default, which starts below the toolbar
    once the top margin holds it); "keep" leaves a legend the caller placed."""
    top = max(needed_top(fig), int(fig.layout.margin.t or 0))
    fig.update_layout(margin={"t": top})
    if legend == "below":
        fig.update_layout(legend=LEGEND_BELOW)
    elif legend == "right":
        fig.update_layout(legend={"orientation": "v", "yanchor": "top", "y": 1, "x": 1.02, "xanchor": "left"})
    return fig


def toolbar_problems(fig: go.Figure | dict, config: dict | None = None) -> list[str]:
    """Why plotly's toolbar could cover part of this figure, one line each; [] when it cannot.

    `fig` is a figure or its JSON (what st.plotly_chart sends, so page tests can check every chart they
    render); `config` is the chart's plotly config: with the toolbar switched off there is nothing to cover.
    """
    if config and config.get("displayModeBar") is False:
        return []
    layout = _layout(fig)
    problems = []
    margin = layout.get("margin") or {}
    top = margin.get("t", PLOTLY_DEFAULT_TOP)
    need = needed_top(fig)
    if top is None or top < need:
        problems.append(f"top margin {top} px < {need} px: the toolbar covers the titles or the plot's top")
    legend = layout.get("legend") or {}
    if layout.get("showlegend", True) is not False and legend:
        yref = legend.get("yref", "paper")
        y = legend.get("y")
        anchor = legend.get("yanchor", "auto")
        above = y is not None and (float(y) > 1.0 or (float(y) == 1.0 and anchor in ("bottom", "middle")))
        if yref == "paper" and above:
            problems.append("the legend sits above the plot, in the toolbar's band")
        if yref == "container" and y is not None and float(y) > 0.5:
            problems.append("the legend is anchored near the top of the figure, in the toolbar's band")
    return problems
