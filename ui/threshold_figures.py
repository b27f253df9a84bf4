"""Plotly figures of the threshold page; they draw what core.metrics computed, nothing more."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

MAX_CURVE_POINTS = 2000
HEIGHT = 330
_ROC_POINT, _PR_POINT, _THRESHOLD_LINE = "roc-point", "pr-point", "threshold"  # what a move finds to move


def thin(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """At most MAX_CURVE_POINTS points (first and last kept): a browser draws a million slowly."""
    n = len(arrays[0])
    if n <= MAX_CURVE_POINTS:
        return arrays
    keep = np.unique(np.r_[np.linspace(0, n - 1, MAX_CURVE_POINTS).astype(int), n - 1])
    return tuple(a[keep] for a in arrays)


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title=title, height=HEIGHT, margin=dict(t=40, b=10, l=10, r=10), xaxis_title=x,
                      yaxis_title=y, showlegend=False)
    return fig


def _wrap(label: str, width: int = 9) -> str:
    """Break a long class name at its spaces, so tick labels do not squeeze the matrix."""
    lines, line = [], ""
    for word in str(label).split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "<br>".join([*lines, line])


def confusion(matrix: np.ndarray, labels: list[str]) -> go.Figure:
    """Counts with row percentages; rows are the truth, columns the decision."""
    labels = [_wrap(label) for label in labels]
    row_share, text = _cells(matrix)
    fig = go.Figure(go.Heatmap(z=row_share, x=labels, y=labels, text=text, texttemplate="%{text}",
                               textfont=dict(size=15 if len(labels) <= 3 else 12), colorscale="Purples", zmin=0,
                               zmax=1.4, showscale=False, hoverinfo="skip", xgap=2, ygap=2))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(tickangle=0)
    fig = _layout(fig, "Confusion matrix (row %)", "predicted", "true")
    fig.update_layout(height=max(HEIGHT, 55 * len(labels) + 110))  # rows tall enough for two lines of text
    return fig


def _cells(matrix: np.ndarray) -> tuple[np.ndarray, list[list[str]]]:
    """Each cell's share of its row (the colour) and its text: the count over the share."""
    matrix = np.asarray(matrix)
    row_share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    return row_share, [[f"{matrix[i, j]:,}<br>{row_share[i, j]:.1%}" for j in range(matrix.shape[1])]
                       for i in range(matrix.shape[0])]


def roc(fpr: np.ndarray, tpr: np.ndarray, point: tuple[float, float], auc: float | None) -> go.Figure:
    fpr, tpr = thin(fpr, tpr)
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#bbb"))
    fig.add_scatter(x=fpr, y=tpr, mode="lines", line=dict(color="#7b3fa0"))
    fig.add_scatter(x=[point[0]], y=[point[1]], mode="markers", marker=dict(size=13, color="#e4572e"),
                    uid=_ROC_POINT)
    title = "ROC" + (f" (AUC {auc:.3f})" if auc is not None else "")
    return _layout(fig, title, "1 - specificity", "sensitivity")


def pr(precision: np.ndarray, recall: np.ndarray, point: tuple[float, float], ap: float | None,
       prevalence: float) -> go.Figure:
    precision, recall = thin(precision, recall)
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[prevalence, prevalence], mode="lines", line=dict(dash="dot", color="#bbb"))
    fig.add_scatter(x=recall, y=precision, mode="lines", line=dict(color="#7b3fa0", shape="hv"))
    fig.add_scatter(x=[point[0]], y=[point[1]], mode="markers", marker=dict(size=13, color="#e4572e"),
                    uid=_PR_POINT)
    title = "Precision-recall" + (f" (AP {ap:.3f})" if ap is not None else "")
    return _layout(fig, title, "recall (sensitivity)", "precision (PPV)")


def histograms(is_positive: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Score counts per true class in 50 bins: binned once, so a million scores cost each move 50 bars."""
    edges = np.linspace(0, 1, 51)
    return {"edges": edges, "negative": np.histogram(scores[~is_positive], bins=edges)[0],
            "positive": np.histogram(scores[is_positive], bins=edges)[0]}


def distributions(hist: dict[str, np.ndarray], threshold: float, positive: str) -> go.Figure:
    """The `histograms` of the two classes overlaid, with the threshold as a line."""
    edges = hist["edges"]
    fig = go.Figure()
    for side, name, colour in (("negative", f"not {positive}", "#5b8def"), ("positive", positive, "#e4572e")):
        fig.add_bar(x=(edges[:-1] + edges[1:]) / 2, y=hist[side], width=edges[1] - edges[0], name=name,
                    marker_color=colour, opacity=0.6)
    fig.add_vline(x=threshold, line=dict(color="#222", width=2), name=_THRESHOLD_LINE)
    fig.update_layout(barmode="overlay")
    fig = _layout(fig, "Scores by true class", f"score ({positive})", "items")
    fig.update_layout(showlegend=True, legend=dict(orientation="h", y=-0.25))
    return fig


def side_by_side(figures: list[go.Figure]) -> go.Figure:
    """Several of these figures as one row of subplots, with their titles, axes, legends and lines:
    the browser lays out and draws one chart per slider move instead of three (in Chromium a move
    on 10^6 predictions took about 0.4 s with three charts, about 0.25 s with one)."""
    fig = make_subplots(rows=1, cols=len(figures), horizontal_spacing=0.08,
                        subplot_titles=[part.layout.title.text for part in figures])
    for col, part in enumerate(figures, start=1):
        axis = "" if col == 1 else str(col)
        for trace in part.data:
            fig.add_trace(trace.update(showlegend=bool(part.layout.showlegend)), row=1, col=col)
        for shape in part.layout.shapes:  # the threshold's line: its x in data, its y over the whole height
            fig.add_shape(shape.update(xref=f"x{axis}", yref=f"y{axis} domain"))
        fig.update_xaxes(title_text=part.layout.xaxis.title.text, row=1, col=col)
        fig.update_yaxes(title_text=part.layout.yaxis.title.text, row=1, col=col)
    fig.update_layout(height=HEIGHT, margin=dict(t=40, b=10, l=10, r=10), barmode="overlay",
                      legend=dict(orientation="h", y=-0.25, x=1, xanchor="right"))
    return fig


@dataclass(frozen=True)
class Panels:
    """What the threshold page's figures draw that no threshold moves."""
    shapes: dict  # the thinned ROC and PR curves and the score histograms (the page's _shapes)
    labels: list[str]  # the matrix's classes: the negative one, then the positive one
    positive: str
    auc: float | None
    ap: float | None
    prevalence: float  # the positive share of the split: the PR chart's chance line


@dataclass(frozen=True)
class Marks:
    """What a threshold puts on them: the counts, the ROC and PR points, the line on the scores."""
    matrix: np.ndarray
    roc: tuple[float, float]  # (1 - specificity, sensitivity)
    pr: tuple[float, float]  # (recall, precision)
    threshold: float


def separate(panels: Panels, marks: Marks) -> dict[str, go.Figure]:
    """The four figures one by one, as the report's files hold them."""
    return {"confusion": confusion(marks.matrix, panels.labels),
            "roc": roc(*panels.shapes["roc"], marks.roc, panels.auc),
            "pr": pr(*panels.shapes["pr"], marks.pr, panels.ap, panels.prevalence),
            "scores": distributions(panels.shapes["hist"], marks.threshold, panels.positive)}


class MovingFigures:
    """The matrix and the row of three panels the page shows, built once per split and class and then
    moved in place: building them anew on every slider move, with plotly's validation, cost about
    30 ms of each move, more than all the figures the move computes. One session's own: a move
    changes it."""

    def __init__(self, panels: Panels, marks: Marks) -> None:
        parts = separate(panels, marks)
        self.matrix = parts["confusion"]
        self.curves = side_by_side([parts["roc"], parts["pr"], parts["scores"]])

    def move(self, marks: Marks) -> None:
        share, text = _cells(marks.matrix)
        self.matrix.update_traces(z=share, text=text)
        for uid, (x, y) in ((_ROC_POINT, marks.roc), (_PR_POINT, marks.pr)):
            self.curves.update_traces(x=[x], y=[y], selector=dict(uid=uid))
        self.curves.update_shapes(x0=marks.threshold, x1=marks.threshold, selector=dict(name=_THRESHOLD_LINE))


def reliability(table: pd.DataFrame, title: str) -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#bbb"))
    fig.add_scatter(x=table["mean_score"], y=table["observed"], mode="lines+markers",
                    marker=dict(size=np.clip(np.sqrt(table["count"]) * 2, 5, 25), color="#7b3fa0"),
                    text=table["count"], hovertemplate="mean score %{x:.2f}<br>observed %{y:.2f}<br>%{text} items")
    return _layout(fig, title, "mean predicted probability", "observed frequency")
