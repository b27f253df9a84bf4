"""Threshold page: choose the operating point on validation, report it on test, save it."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core import evaluation, metrics, roles, rundir
from core.review import with_predicted_items
from core.runconfig import dataset_spec
from core.sources import SourceError, source_signature
from ui import external_view
from ui import threshold_figures as figs
from ui.gallery import image_grid
from ui.identity import current_reader
from ui.metrics_table import metrics_table
from ui.router import ensure_router
from ui.runs_picker import pick_run, predictions
from ui.state import load_manifest
from ui.text import md

ensure_router()

SPLIT_NAMES = {"val": "validation", "test": "test", "train": "training"}
MAX_STEPS = 1000  # slider positions at most: above that, each arrow key moves past about n / 1000 items
CELLS = {"TP": "true positives", "FN": "false negatives (missed)", "FP": "false positives", "TN": "true negatives"}


@st.cache_resource(max_entries=32, show_spinner=False)
def _curve(run: str, mtime: float, positive: str, split: str, temperature: float):
    """Sorted once per run, class, split and temperature; every slider move reuses it."""
    is_pos, scores, _ = _scores(run, mtime, positive, split, temperature)
    return metrics.Curve.from_scores(is_pos, scores)


@st.cache_resource(max_entries=32, show_spinner=False)
def _scores(run: str, mtime: float, positive: str, split: str, temperature: float):
    """(is_positive, score) of a split, shared read-only: a copy per call would cost every slider move
    a pass over a million scores."""
    preds = predictions(Path(run))
    rows = preds[preds["split"] == split]
    if temperature != 1.0:
        classes = rundir.classes_of(preds)
        probs = evaluation.apply_temperature(rows[rundir.prob_columns(classes)].to_numpy(), temperature)
        arrays = (rows["label"] == positive).to_numpy(), probs[:, classes.index(positive)]
    else:
        arrays = evaluation.binary_scores(preds, positive, split)
    return tuple(_read_only(a) for a in (*arrays, rows["item_id"].to_numpy()))


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@st.cache_data(max_entries=32, show_spinner=False)
def _shapes(run: str, mtime: float, positive: str, split: str, temperature: float) -> dict:
    """What the figures draw that no threshold moves: the ROC and PR curves, thinned for the browser,
    and the score histograms."""
    curve = _curve(run, mtime, positive, split, temperature)
    is_pos, scores, _ = _scores(run, mtime, positive, split, temperature)
    fpr, tpr, _ = curve.roc()
    precision, recall, _ = curve.pr()
    return {"roc": figs.thin(fpr, tpr), "pr": figs.thin(precision, recall), "hist": figs.histograms(is_pos, scores)}


@st.cache_data(max_entries=32, show_spinner=False)
def _calibration(run: str, mtime: float, positive: str, split: str, temperature: float):
    """(reliability table, ECE, Brier score): none of them depends on the threshold."""
    is_pos, scores, _ = _scores(run, mtime, positive, split, temperature)
    return (evaluation.reliability(is_pos, scores), evaluation.expected_calibration_error(is_pos, scores),
            evaluation.brier(is_pos, scores))


@st.cache_resource(max_entries=4, show_spinner="Reading the run's images…")
def _items_by_id(run: str, mtime: float, signature: str) -> pd.DataFrame:
    """The run's manifest indexed by item id, shared read-only: the gallery looks up 24 items per move."""
    preds = predictions(Path(run))
    return with_predicted_items(load_manifest(dataset_spec(rundir.read_config(Path(run)))), preds).set_index("id")


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


def _floor4(value):
    """Slider positions have 4 decimals; flooring keeps every item at the suggested score included.
    Rounded at 1e-10 first, so a stored 0.3843 (3842.9999... times 10,000) stays 0.3843."""
    return np.floor(np.round(np.multiply(value, 10_000), 6)) / 10_000


@st.cache_data(max_entries=32, show_spinner=False)
def _steps(run: str, mtime: float, positive: str, split: str, temperature: float) -> list[float]:
    """A split's slider positions: each distinct score floored to 4 decimals, so an arrow key moves to
    the next threshold that changes a matrix; evenly thinned to MAX_STEPS when there are more."""
    values = np.unique(_floor4(metrics.candidate_thresholds(_curve(run, mtime, positive, split, temperature))))
    if len(values) > MAX_STEPS:
        values = values[np.linspace(0, len(values) - 1, MAX_STEPS).round().astype(int)]
    return [float(v) for v in values]


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


def _cell_gallery(run_dir, is_pos, scores, item_ids, threshold, split, shown: int = 24) -> None:
    cell = st.radio("Show the images of", list(CELLS), format_func=lambda c: f"{c}: {CELLS[c]}",
                    horizontal=True, key="thr_cell")
    predicted = scores >= threshold
    mask = {"TP": is_pos & predicted, "FN": is_pos & ~predicted, "FP": ~is_pos & predicted,
            "TN": ~is_pos & ~predicted}[cell]
    rows = np.flatnonzero(mask)
    if not len(rows):
        st.caption(f"No {CELLS[cell]} at this threshold.")
        return
    # the first `shown` by score without sorting every row of the cell
    key = scores[rows] if cell in ("TP", "FN") else -scores[rows]
    first = np.argpartition(key, shown)[:shown] if len(rows) > shown else np.arange(len(rows))
    order = rows[first[np.argsort(key[first], kind="stable")]]
    spec = dataset_spec(rundir.read_config(run_dir))
    try:
        manifest = _items_by_id(str(run_dir), mtime, source_signature(spec))
    except SourceError as exc:
        st.warning(f"The images of this run cannot be read ({md(exc)}); the numbers above come from its stored "
                   "predictions and stay true.")
        return
    ids = item_ids[order].tolist()
    gallery = manifest.loc[ids].reset_index().assign(
        caption=[f"{scores[i]:.3f} · {item_id.rsplit('/', 1)[-1]}" for i, item_id in zip(order, ids)])
    st.caption(f"{len(rows):,} {CELLS[cell]}: {len(order)} shown, captioned with their score; mistakes "
               "the model was surest of come first, correct ones nearest the threshold first.")
    image_grid(gallery, columns=8, caption="caption")
    if st.button(f"Open these {len(order)} in Grad-CAM", icon=":material/visibility:", key="thr_to_cam"):
        st.session_state.update(cam_split=split, cam_set="ids", cam_ids=ids)
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
    mine = saved.get("positive_class") == positive
    st.session_state[slider_key] = float(_floor4(saved["threshold"])) if mine else 0.5


def _moving_figures(key: tuple, panels: figs.Panels, marks: figs.Marks) -> figs.MovingFigures:
    """This session's figures of the split and class in `key`, moved to `marks`: built when the
    key changes, moved in place on every other rerun. Held in the session, not in a shared cache,
    since a move changes them."""
    held = st.session_state.get("thr_figures")
    if held is None or held[0] != key:
        st.session_state["thr_figures"] = held = (key, figs.MovingFigures(panels, marks))
    else:
        held[1].move(marks)
    return held[1]


def _apply(value: float) -> None:
    st.session_state[slider_key] = float(_floor4(value))


# The targets and their suggestions stay out of the slider's fragment: a move does not change them,
# and each widget the fragment redraws costs the browser time on every move.
tuning_curve = _curve(str(run_dir), mtime, positive, tune, temperature)
with st.container(border=True):
    targets = {}
    c = st.columns(5)
    targets["sens"] = c[0].number_input("Target sensitivity", 0.5, 1.0, 0.95, 0.01, key="thr_sens")
    targets["spec"] = c[1].number_input("Target specificity", 0.5, 1.0, 0.95, 0.01, key="thr_spec")
    targets["cost_fn"] = c[2].number_input("Cost of a missed positive", 0.0, 1e6, 5.0, key="thr_cfn")
    targets["cost_fp"] = c[3].number_input("Cost of a false alarm", 0.0, 1e6, 1.0, key="thr_cfp")
    # Keyed per run and class: its default (the class's share in the tuning split) differs for each,
    # and a key shared by all would keep the first one's value.
    targets["prevalence"] = c[4].number_input("Prevalence in practice", 0.001, 0.999,
                                              float(round(tuning_curve.n_pos / max(tuning_curve.n, 1), 3)),
                                              key=f"thr_prev_{run_dir.name}_{positive}")
    buttons = st.columns(5)
    suggested = _suggestions(str(run_dir), mtime, positive, tune, temperature, tuple(sorted(targets.items())))
    for col, (name, value) in zip(buttons, suggested.items()):
        col.button(f"{name}: {value:.3f}" if value is not None else f"{name}: none", disabled=value is None,
                   on_click=_apply, args=(value,) if value is not None else (0.5,), key=f"thr_btn_{name}",
                   width="stretch", help=f"Suggested on the {SPLIT_NAMES[tune]} split; one click applies it.")


@st.fragment
def operating_point() -> None:
    """Everything the slider moves; only this part reruns on a move."""
    curve = _curve(str(run_dir), mtime, positive, tune, temperature)
    # the positions of every split shown, and the suggested or saved threshold in the state
    steps = {step for split in report_splits for step in _steps(str(run_dir), mtime, positive, split, temperature)}
    steps |= {1.0, float(st.session_state[slider_key])}
    threshold = st.select_slider(f"Threshold: {positive} when its score is at least", sorted(steps),
                                 format_func=lambda v: f"{v:.4f}", key=slider_key,
                                 help="Arrow keys move to the next threshold that changes a matrix below.")
    reports = {s: evaluation.summary(_curve(str(run_dir), mtime, positive, s, temperature), threshold)
               for s in report_splits}
    counts = curve.counts(threshold)
    r = metrics.rates(counts)
    shapes = _shapes(str(run_dir), mtime, positive, tune, temperature)
    negative = f"not {positive}" if len(classes) > 2 else next(c for c in classes if c != positive)
    panels = figs.Panels(shapes, [negative, positive], positive, reports[tune]["roc_auc"],
                         reports[tune]["average_precision"], curve.n_pos / max(curve.n, 1))
    marks = figs.Marks(metrics.confusion_matrix(counts), (1 - float(r["specificity"]), float(r["sensitivity"])),
                       (float(r["sensitivity"]), float(np.nan_to_num(r["ppv"], nan=1.0))), threshold)
    drawn = _moving_figures((str(run_dir), mtime, positive, tune, temperature), panels, marks)
    st.markdown(f"**{SPLIT_NAMES[tune].capitalize()} split** ({curve.n:,} items, {curve.n_pos:,} {md(positive)})")
    top = st.columns([1, 3])
    top[0].plotly_chart(drawn.matrix, width="stretch", key="fig_confusion")
    top[1].plotly_chart(drawn.curves, width="stretch", key="fig_curves")
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Metrics at this threshold** (95% intervals)")
        st.dataframe(metrics_table(reports, SPLIT_NAMES.__getitem__, totals=False), hide_index=True,
                     width="stretch")
        st.caption(metrics.INTERVALS_NOTE)
    with right:
        st.markdown("**Save and export**")
        if saved:
            st.caption(f"Saved: {md(saved['positive_class'])} at {saved['threshold']:.4f}, tuned on "
                       f"{SPLIT_NAMES.get(saved['tuned_on'], saved['tuned_on'])} ({saved['method']}).")
        me = current_reader()
        if not roles.may(me, "save operating points"):
            st.caption("Saving the operating point needs the admin role: it decides for every reader and export.")
        elif st.button("Save this operating point with the run", type="primary", icon=":material/save:"):
            evaluation.save_operating_point(run_dir, positive, threshold, tune,
                                            "temperature-scaled" if calibrated else "raw scores", temperature, who=me)
            st.toast(f"Saved {md(positive)} at {threshold:.4f}.")
            st.rerun(scope="app")
        point = {"positive_class": positive, "threshold": threshold, "tuned_on": tune, "temperature": temperature}
        st.download_button("Download the report (JSON, CSV and figures)",  # written on the click, not per move
                           lambda: _report_zip(run_dir.name, point, reports, figs.separate(panels, marks)),
                           file_name=f"{run_dir.name}-threshold-report.zip", mime="application/zip",
                           icon=":material/download:")
    # Its images are fetched and sent only while it is open, not on every move of a closed expander.
    gallery = st.expander("From numbers to images", expanded=False, key="thr_gallery", on_change="rerun")
    if gallery.open:
        with gallery:
            _cell_gallery(run_dir, *_scores(str(run_dir), mtime, positive, tune, temperature), threshold, tune)


operating_point()

with st.expander("Calibration", expanded=False):
    cols = st.columns(len(report_splits))
    for col, split in zip(cols, report_splits):
        table, ece, brier = _calibration(str(run_dir), mtime, positive, split, temperature)
        col.plotly_chart(figs.reliability(table, f"Reliability, {SPLIT_NAMES[split]}"), width="stretch",
                         key=f"rel_{split}")
        col.caption(f"Expected calibration error {ece:.3f}, Brier score {brier:.3f}"
                    + (f", temperature {temperature:.2f}" if calibrated else ""))

# External validation: a prediction set of this run beside its test split (ui/external_view.py).
external_view.compare_selector(run_dir)
