"""Threshold page: choose the operating point on validation, report it on test, save it."""
from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core import evaluation, metrics, rundir
from core.review import with_predicted_items
from core.runconfig import dataset_spec
from core.sources import SourceError
from ui import external_view
from ui import threshold_figures as figs
from ui.gallery import image_grid
from ui.metrics_table import metrics_table
from ui.router import ensure_router
from ui.runs_picker import pick_run, predictions
from ui.state import load_manifest
from ui.text import md

ensure_router()

SPLIT_NAMES = {"val": "validation", "test": "test", "train": "training"}
CELLS = {"TP": "true positives", "FN": "false negatives (missed)", "FP": "false positives", "TN": "true negatives"}


@st.cache_resource(max_entries=32, show_spinner=False)
def _curve(run: str, mtime: float, positive: str, split: str, temperature: float):
    """Sorted once per run, class, split and temperature; every slider move reuses it."""
    is_pos, scores = _scores(run, mtime, positive, split, temperature)
    return metrics.Curve.from_scores(is_pos, scores)


@st.cache_data(max_entries=32, show_spinner=False)
def _scores(run: str, mtime: float, positive: str, split: str, temperature: float):
    preds = predictions(Path(run))
    rows = preds[preds["split"] == split]
    if temperature != 1.0:
        classes = rundir.classes_of(preds)
        probs = evaluation.apply_temperature(rows[rundir.prob_columns(classes)].to_numpy(), temperature)
        return (rows["label"] == positive).to_numpy(), probs[:, classes.index(positive)]
    return evaluation.binary_scores(preds, positive, split)


@st.cache_data(max_entries=16, show_spinner="Fitting temperature on validation…")
def _temperature(run: str, mtime: float) -> float:
    preds = predictions(Path(run))
    val = preds[preds["split"] == "val"]
    classes = rundir.classes_of(preds)
    labels = pd.Categorical(val["label"], categories=classes).codes
    return evaluation.fit_temperature(val[rundir.prob_columns(classes)].to_numpy(), labels)


@st.cache_data(max_entries=64, show_spinner=False)
def _suggestions(run: str, mtime: float, positive: str, split: str, temperature: float,
                 ui: tuple) -> dict[str, float | None]:
    """Each suggestion scans every distinct score once; cached so slider moves do not repeat it."""
    curve = _curve(run, mtime, positive, split, temperature)
    ui = dict(ui)
    return {
        "Youden": metrics.youden_threshold(curve),
        "Best F1": metrics.best_f1_threshold(curve),
        f"Sens ≥ {ui['sens']:.0%}": metrics.threshold_for_sensitivity(curve, ui["sens"]),
        f"Spec ≥ {ui['spec']:.0%}": metrics.threshold_for_specificity(curve, ui["spec"]),
        "Least cost": metrics.least_cost_threshold(curve, ui["cost_fn"], ui["cost_fp"], ui["prevalence"]),
    }


def _floor4(value: float) -> float:
    """Slider positions have 4 decimals; flooring keeps every item at the suggested score included."""
    return math.floor(value * 10_000) / 10_000


def _report_zip(run_name: str, point: dict, reports: dict, figures: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("report.json", json.dumps({"run": run_name, "operating_point": point,
                                                    "splits": reports}, indent=2))
        archive.writestr("metrics.csv", metrics_table(reports, SPLIT_NAMES.__getitem__, totals=False)
                         .to_csv(index=False))
        for name, fig in figures.items():
            archive.writestr(f"{name}.html", fig.to_html(include_plotlyjs="cdn"))
    return buffer.getvalue()


def _cell_gallery(run_dir, is_pos, scores, threshold, split) -> None:
    cell = st.radio("Show the images of", list(CELLS), format_func=lambda c: f"{c}: {CELLS[c]}",
                    horizontal=True, key="thr_cell")
    predicted = scores >= threshold
    mask = {"TP": is_pos & predicted, "FN": is_pos & ~predicted, "FP": ~is_pos & predicted,
            "TN": ~is_pos & ~predicted}[cell]
    preds = predictions(run_dir)
    rows = preds[preds["split"] == split].assign(score=scores)[mask]
    if rows.empty:
        st.caption(f"No {CELLS[cell]} at this threshold.")
        return
    order = rows.sort_values("score", ascending=cell in ("TP", "FN")).head(24)
    try:
        manifest = with_predicted_items(load_manifest(dataset_spec(rundir.read_config(run_dir))), preds)
    except SourceError as exc:
        st.warning(f"The images of this run cannot be read ({md(exc)}); the numbers above come from its stored "
                   "predictions and stay true.")
        return
    shown = manifest.set_index("id").loc[order["item_id"]].reset_index().assign(
        caption=[f"{s:.3f} · {i.rsplit('/', 1)[-1]}" for s, i in zip(order["score"], order["item_id"])])
    st.caption(f"{len(rows):,} {CELLS[cell]}: {len(order)} shown, captioned with their score; mistakes "
               "the model was surest of come first, correct ones nearest the threshold first.")
    image_grid(shown, columns=8, caption="caption")
    if st.button(f"Open these {len(order)} in Grad-CAM", icon=":material/visibility:", key="thr_to_cam"):
        st.session_state.update(cam_split=split, cam_set="ids", cam_ids=order["item_id"].tolist())
        st.switch_page("pages/gradcam.py")


st.title("Threshold")
run_dir = pick_run()
if run_dir is None:
    st.stop()
preds = predictions(run_dir)
mtime = rundir.predictions_path(run_dir).stat().st_mtime
classes = rundir.classes_of(preds)
saved = evaluation.load_operating_point(run_dir) or {}
splits = [s for s in ("val", "test", "train") if (preds["split"] == s).any()]

cols = st.columns([2, 2, 2])
default_positive = saved.get("positive_class") or evaluation.default_positive(preds)
positive = cols[0].selectbox("Positive class (one vs rest)" if len(classes) > 2 else "Positive class", classes,
                             index=classes.index(default_positive), key=f"thr_pos_{run_dir.name}")
tune = cols[1].radio("Tune on", splits, format_func=SPLIT_NAMES.get, horizontal=True, key="thr_tune")
temp_key = f"thr_temp_{run_dir.name}"  # per run, and on when the saved threshold was chosen with it
if temp_key not in st.session_state:
    st.session_state[temp_key] = "val" in splits and float(saved.get("temperature", 1.0)) != 1.0
calibrated = cols[2].toggle("Temperature scaling (fitted on validation)", key=temp_key,
                            disabled="val" not in splits)
temperature = _temperature(str(run_dir), mtime) if calibrated else 1.0
if tune == "test":
    st.warning("You are tuning the threshold on the test split: the test figures below will be optimistic. "
               "Tune on validation and report on test.")
report_splits = [tune] + [s for s in ("test",) if s != tune and s in splits]

if len(classes) > 2:
    with st.expander(f"All {len(classes)} classes at once", expanded=True, icon=":material/grid_on:"):
        rule = st.radio("Decide by", ["argmax", "per-class thresholds"], horizontal=True, key="thr_rule",
                        help="Per-class thresholds: the most probable class among those over their threshold; "
                             "when none is, the fallback class.")
        per_class, fallback = None, None
        if rule == "per-class thresholds":
            cols = st.columns(len(classes) + 1)
            per_class = {c: col.number_input(c, 0.0, 1.0, 0.5, 0.01, key=f"thr_pc_{c}")
                         for col, c in zip(cols, classes)}
            fallback = cols[-1].selectbox("Fallback class", classes, key="thr_fallback")
        report = evaluation.multiclass_report(preds, tune, per_class, fallback)
        if report["n"]:
            cols = st.columns(3)
            cols[0].metric(f"Accuracy ({SPLIT_NAMES[tune]})", f"{report['accuracy']:.3f}")
            cols[1].metric("Balanced accuracy", f"{report['balanced_accuracy']:.3f}",
                           help="The mean of the per-class recalls: every class counts the same, however rare.")
            cols[2].metric("Images", f"{report['n']:,}")
        left, right = st.columns([3, 2])
        left.plotly_chart(figs.confusion(np.array(report["confusion_matrix"]), report["classes"]), width="stretch")
        right.dataframe(evaluation.per_class_table(report), hide_index=True, width="stretch",
                        column_config={k: st.column_config.NumberColumn(format="%.3f")
                                       for k in ("precision", "recall", "F1")})
        right.caption("Per class, as scikit-learn's classification report. The one-vs-rest figures below "
                      "answer \"is it this class?\" for the positive class only.")

slider_key = f"thr_value_{run_dir.name}_{positive}"
if slider_key not in st.session_state:
    st.session_state[slider_key] = _floor4(saved["threshold"]) if saved.get("positive_class") == positive else 0.5


def _apply(value: float) -> None:
    st.session_state[slider_key] = _floor4(value)


@st.fragment
def operating_point() -> None:
    """Everything the slider moves; only this part reruns on a move."""
    curve = _curve(str(run_dir), mtime, positive, tune, temperature)
    with st.container(border=True):
        threshold = st.slider(f"Threshold: {positive} when its score is at least", 0.0, 1.0, step=0.0001,
                              format="%.4f", key=slider_key)
        ui = {}
        c = st.columns(5)
        ui["sens"] = c[0].number_input("Target sensitivity", 0.5, 1.0, 0.95, 0.01, key="thr_sens")
        ui["spec"] = c[1].number_input("Target specificity", 0.5, 1.0, 0.95, 0.01, key="thr_spec")
        ui["cost_fn"] = c[2].number_input("Cost of a missed positive", 0.0, 1e6, 5.0, key="thr_cfn")
        ui["cost_fp"] = c[3].number_input("Cost of a false alarm", 0.0, 1e6, 1.0, key="thr_cfp")
        # Keyed per run and class: its default (the class's share in the tuning split) differs for each,
        # and a key shared by all would keep the first one's value.
        ui["prevalence"] = c[4].number_input("Prevalence in practice", 0.001, 0.999,
                                             float(round(curve.n_pos / max(curve.n, 1), 3)),
                                             key=f"thr_prev_{run_dir.name}_{positive}")
        buttons = st.columns(5)
        suggested = _suggestions(str(run_dir), mtime, positive, tune, temperature, tuple(sorted(ui.items())))
        for col, (name, value) in zip(buttons, suggested.items()):
            col.button(f"{name}: {value:.3f}" if value is not None else f"{name}: none", disabled=value is None,
                       on_click=_apply, args=(value,) if value is not None else (0.5,), key=f"thr_btn_{name}",
                       width="stretch", help=f"Suggested on the {SPLIT_NAMES[tune]} split; one click applies it.")
    reports = {s: evaluation.summary(_curve(str(run_dir), mtime, positive, s, temperature), threshold)
               for s in report_splits}
    counts = curve.counts(threshold)
    r = metrics.rates(counts)
    fpr, tpr, _ = curve.roc()
    precision, recall, _ = curve.pr()
    is_pos, scores = _scores(str(run_dir), mtime, positive, tune, temperature)
    negative = f"not {positive}" if len(classes) > 2 else next(c for c in classes if c != positive)
    figures = {
        "confusion": figs.confusion(metrics.confusion_matrix(counts), [negative, positive]),
        "roc": figs.roc(fpr, tpr, (1 - float(r["specificity"]), float(r["sensitivity"])), reports[tune]["roc_auc"]),
        "pr": figs.pr(precision, recall, (float(r["sensitivity"]), float(np.nan_to_num(r["ppv"], nan=1.0))),
                      reports[tune]["average_precision"], curve.n_pos / max(curve.n, 1)),
        "scores": figs.distributions(is_pos, scores, threshold, positive),
    }
    st.markdown(f"**{SPLIT_NAMES[tune].capitalize()} split** ({curve.n:,} items, {curve.n_pos:,} {md(positive)})")
    top = st.columns(4)
    for col, name in zip(top, figures):
        col.plotly_chart(figures[name], width="stretch", key=f"fig_{name}")
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Metrics at this threshold** (95% bootstrap intervals)")
        st.dataframe(metrics_table(reports, SPLIT_NAMES.__getitem__, totals=False), hide_index=True,
                     width="stretch")
    with right:
        st.markdown("**Save and export**")
        if saved:
            st.caption(f"Saved: {md(saved['positive_class'])} at {saved['threshold']:.4f}, tuned on "
                       f"{SPLIT_NAMES.get(saved['tuned_on'], saved['tuned_on'])} ({saved['method']}).")
        if st.button("Save this operating point with the run", type="primary", icon=":material/save:"):
            evaluation.save_operating_point(run_dir, positive, threshold, tune,
                                            "temperature-scaled" if calibrated else "raw scores", temperature)
            st.toast(f"Saved {md(positive)} at {threshold:.4f}.")
            st.rerun(scope="app")
        point = {"positive_class": positive, "threshold": threshold, "tuned_on": tune, "temperature": temperature}
        st.download_button("Download the report (JSON, CSV and figures)",
                           _report_zip(run_dir.name, point, reports, figures),
                           file_name=f"{run_dir.name}-threshold-report.zip", mime="application/zip",
                           icon=":material/download:")
    with st.expander("From numbers to images", expanded=False):
        _cell_gallery(run_dir, is_pos, scores, threshold, tune)


operating_point()

with st.expander("Calibration", expanded=False):
    cols = st.columns(len(report_splits))
    for col, split in zip(cols, report_splits):
        is_pos, scores = _scores(str(run_dir), mtime, positive, split, temperature)
        table = evaluation.reliability(is_pos, scores)
        col.plotly_chart(figs.reliability(table, f"Reliability, {SPLIT_NAMES[split]}"), width="stretch",
                         key=f"rel_{split}")
        col.caption(f"Expected calibration error {evaluation.expected_calibration_error(is_pos, scores):.3f}, "
                    f"Brier score {evaluation.brier(is_pos, scores):.3f}"
                    + (f", temperature {temperature:.2f}" if calibrated else ""))

# External validation: a prediction set of this run beside its test split (ui/external_view.py).
external_view.compare_selector(run_dir)
