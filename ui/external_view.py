"""A prediction set beside the run's test split: the Threshold page's figures at the saved operating
point, a breakdown by any column and a shift warning. Shown on the Predict and Threshold pages."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import evaluation, external, metrics, rundir
from ui import threshold_figures as figs
from ui.metrics_table import metrics_table
from ui.text import md

NO_SET = "(none)"


def _stamp(run_dir: Path, name: str) -> tuple[float, float]:
    """What the figures depend on: the set's file and the saved operating point."""
    point = rundir.operating_point_path(run_dir)
    return rundir.prediction_set_path(run_dir, name).stat().st_mtime, point.stat().st_mtime if point.exists() else 0.0


@st.cache_data(max_entries=16, show_spinner="Scoring the prediction set…")
def _comparison(run: str, name: str, stamp: tuple[float, float]) -> dict:
    return external.comparison(Path(run), name)


@st.cache_data(max_entries=16, show_spinner=False)
def _scored(run: str, name: str | None, stamp: tuple[float, float]) -> external.Scored:
    run_dir = Path(run)
    return external.scored(run_dir, external.test_rows(run_dir) if name is None else external.set_rows(run_dir, name))


@st.cache_data(max_entries=16, show_spinner="Breaking the set down…")
def _breakdown(run: str, name: str, column: str, stamp: tuple[float, float]) -> pd.DataFrame:
    return external.breakdown(Path(run), name, column)


@st.cache_data(max_entries=16, show_spinner=False)
def _shift(run: str, name: str, stamp: tuple[float, float]) -> external.ScoreShift:
    return external.score_shift(Path(run), name)


def compare_selector(run_dir: Path) -> None:
    """The Threshold page's "Compare with a prediction set": a set of the run beside its test split."""
    names = rundir.list_prediction_sets(run_dir)
    if not names:
        return
    with st.expander("Compare with a prediction set (external validation)", icon=":material/compare:"):
        name = st.selectbox("Compare with a prediction set", [NO_SET, *names], key=f"ext_set_{run_dir.name}",
                            help="A set made on the Predict page (or with `python -m core predict`), at the "
                                 "saved operating point, beside the test split.")
        if name != NO_SET:
            show(run_dir, name, key="thr_ext")


def show(run_dir: Path, name: str, key: str) -> None:
    """Figures, metrics, shift warning and breakdown of one set; a plain message for an unlabelled one."""
    stamp = _stamp(run_dir, name)
    _shift_warning(run_dir, name, stamp, key)
    try:
        reports = _comparison(str(run_dir), name, stamp)
    except ValueError as exc:  # no labelled rows: nothing to score, the set still has its predictions
        st.info(md(exc))
        return
    saved = evaluation.load_operating_point(run_dir)
    test = _scored(str(run_dir), None, stamp)
    how = "saved operating point" if saved else "default operating point (nothing saved yet)"
    st.markdown(f"**{md(name)} beside the test split**, at the run's {how}: {md(test.positive)} when its score "
                f"is at least {test.threshold:.4f}.")
    classes = rundir.classes_of(rundir.read_predictions(run_dir))
    negative = f"not {test.positive}" if len(classes) > 2 else next(c for c in classes if c != test.positive)
    for title, scored in (("Test split", test), (name, _scored(str(run_dir), name, stamp))):
        _figures(title, scored, negative, f"{key}_{title}")
    st.markdown("**Metrics at this operating point** (95% intervals)")
    st.caption(metrics.INTERVALS_NOTE)
    table = metrics_table(reports)
    st.dataframe(table, hide_index=True, width="stretch", height=35 * (len(table) + 1) + 3)
    _breakdown_view(run_dir, name, stamp, key)


def _figures(title: str, scored: external.Scored, negative: str, key: str) -> None:
    curve = scored.curve()
    counts = curve.counts(scored.threshold)
    r = metrics.rates(counts)
    fpr, tpr, _ = curve.roc()
    precision, recall, _ = curve.pr()
    st.markdown(f"**{md(title)}** ({curve.n:,} items, {curve.n_pos:,} {md(scored.positive)})")
    cols = st.columns(3)
    cols[0].plotly_chart(figs.confusion(metrics.confusion_matrix(counts), [negative, scored.positive]),
                         width="stretch", key=f"{key}_cm")
    auc, ap = curve.roc_auc(), curve.average_precision()
    cols[1].plotly_chart(figs.roc(fpr, tpr, (1 - float(r["specificity"]), float(r["sensitivity"])),
                                  None if np.isnan(auc) else auc), width="stretch", key=f"{key}_roc")
    cols[2].plotly_chart(figs.pr(precision, recall, (float(r["sensitivity"]), float(np.nan_to_num(r["ppv"], nan=1.0))),
                                 None if np.isnan(ap) else ap, curve.n_pos / max(curve.n, 1)),
                         width="stretch", key=f"{key}_pr")


def _breakdown_view(run_dir: Path, name: str, stamp: tuple[float, float], key: str) -> None:
    table = rundir.read_prediction_set(run_dir, name)
    columns = external.breakdown_columns(evaluation.labelled_rows(table))
    if not columns:
        st.caption("The set has no column to break it down by (a CSV source's other columns, such as a centre "
                   "or scanner, or groups, come with the set).")
        return
    column = st.selectbox("Break the set down by", columns, format_func=external.column_title, key=f"{key}_by")
    table = _breakdown(str(run_dir), name, column, stamp)
    figures = {c: table[c].map(lambda v: "" if pd.isna(v) else f"{v:.3f}") for c in ("ROC AUC", "sensitivity",
                                                                                      "specificity")}
    st.dataframe(table.assign(**figures), hide_index=True, width="stretch")  # blank, not "None", where undefined
    st.caption("Per value, at the saved operating point; 95% intervals as in the metrics table (ROC AUC: "
               "bootstrap resampling positives and negatives separately). A value with one class only has no AUC.")


def _shift_warning(run_dir: Path, name: str, stamp: tuple[float, float], key: str) -> None:
    shift = _shift(str(run_dir), name, stamp)
    positive = _scored(str(run_dir), None, stamp).positive
    said = (f"two-sample Kolmogorov–Smirnov test on the {md(positive)} scores, {md(name)} "
            f"({len(shift.set_scores):,}) against the test split ({len(shift.test_scores):,}): "
            f"D = {shift.statistic:.3f}, p = {shift.pvalue:.2g}")
    if shift.shifted:
        st.warning(f"The scores have shifted: {said} (p < {external.KS_ALPHA}). The model sees these images "
                   "differently from its test split; check the figures below before trusting the threshold here.",
                   icon=":material/warning:")
        st.plotly_chart(overlaid(shift.test_scores, shift.set_scores, name, f"score ({positive})",
                                 np.linspace(0, 1, 41)), width="stretch", key=f"{key}_shift")
    else:
        st.caption(f"No score shift found: {said}.")
    features = _feature_shift(str(run_dir), name, stamp)
    if features is None:
        st.caption("Features not compared: the run's features are not stored (open the run on the Embeddings "
                   "page once, then predict again) or a side has under 10 images.")
        return
    said = (f"a logistic regression tells the set's features from the test split's with a cross-validated "
            f"ROC AUC of {features.domain_auc:.3f} (0.5: indistinguishable)")
    if features.shifted:
        st.warning(f"The images look different to the model: {said}, at or over {external.DOMAIN_AUC_WARNING}.",
                   icon=":material/warning:")
        both = np.r_[features.test_distance, features.set_distance]
        st.plotly_chart(overlaid(features.test_distance, features.set_distance, name,
                                 "distance from the test split's mean feature", np.linspace(0, both.max(), 41)),
                        width="stretch", key=f"{key}_feature_shift")
    else:
        st.caption(f"No feature shift found: {said}.")


@st.cache_data(max_entries=16, show_spinner="Comparing features…")
def _feature_shift(run: str, name: str, stamp: tuple[float, float]) -> external.FeatureShift | None:
    return external.run_feature_shift(Path(run), name)


def overlaid(test: np.ndarray, new: np.ndarray, name: str, x_title: str, edges: np.ndarray) -> go.Figure:
    """The test split's and the set's values overlaid, each as shares of its own items (sets differ in size)."""
    fig = go.Figure()
    for values, label, colour in ((test, "test split", "#5b8def"), (new, name, "#e4572e")):
        counts, _ = np.histogram(values, bins=edges)
        fig.add_bar(x=(edges[:-1] + edges[1:]) / 2, y=counts / max(len(values), 1), width=edges[1] - edges[0],
                    name=label, marker_color=colour, opacity=0.55)
    fig.update_layout(barmode="overlay", title=f"Test split and {name}", height=figs.HEIGHT,
                      margin=dict(t=40, b=10, l=10, r=10), xaxis_title=x_title, yaxis_title="share of items",
                      legend=dict(orientation="h", y=-0.25))
    return fig
