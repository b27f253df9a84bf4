"""From a run's predictions to the numbers the threshold page and `python -m core evaluate` show.

The operating point (positive class, threshold, where it was tuned) is saved with the run (see
core.rundir), so the review page and exports use the same decision.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, SupportsFloat

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.optimize import minimize_scalar
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    brier_score_loss,
    classification_report,
    roc_curve,
)
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from core import metrics, rundir, workspace
from core.roles import Identity, require


def default_positive(predictions: pd.DataFrame) -> str:
    """The rarer class: in a screening question that is usually the finding (GS, tumour, ...)."""
    counts = predictions["label"].value_counts()
    return str(counts.idxmin()) if len(counts) else rundir.classes_of(predictions)[-1]


def binary_scores(predictions: pd.DataFrame, positive: str,
                  split: str | None = None) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """(is_positive, score) of the positive class, one-vs-rest, for one split or all."""
    rows = predictions if split is None else predictions[predictions["split"] == split]
    if rundir.prob_column(positive) not in rows:
        classes = ", ".join(rundir.classes_of(predictions))
        raise ValueError(f"Unknown class '{positive}': the run's classes are {classes}.")
    return (rows["label"] == positive).to_numpy(), rows[rundir.prob_column(positive)].to_numpy(dtype=np.float64)


def summary(curve: metrics.Curve, threshold: float) -> dict[str, Any]:
    """Confusion matrix, every rate with its 95% interval (metrics.intervals), and the threshold-free areas.

    Takes a prepared Curve, so a caller that moves the threshold sorts the scores only once."""
    counts = curve.counts(threshold)
    return {
        "threshold": float(threshold), "n": curve.n, "positives": curve.n_pos, "negatives": curve.n_neg,
        "confusion_matrix": metrics.confusion_matrix(counts).tolist(),
        "metrics": {k: _clean(v) for k, v in metrics.rates(counts).items()},
        "intervals_95": metrics.intervals(counts),
        "roc_auc": _clean(curve.roc_auc()), "average_precision": _clean(curve.average_precision()),
    }


def _clean(value: SupportsFloat) -> float | None:
    number = float(value)
    return None if np.isnan(number) else number


# ---------------------------------------------------------------- operating point


def save_operating_point(run_dir: Path, positive: str, threshold: float, tuned_on: str, method: str,
                         temperature: float = 1.0, *, who: Identity | str) -> dict[str, Any]:
    """The temperature is saved with the threshold: a threshold chosen on temperature-scaled scores
    only means what it meant on those scores. Admins only: the point decides for everyone (each
    reader's predicted labels in Review, Grad-CAM's sets, prediction CSVs and bundles), so it is the
    lab's choice for the model, like launching it, not one reader's."""
    require(who, "save operating points")
    point = {"positive_class": positive, "threshold": float(threshold), "tuned_on": tuned_on,
             "method": method, "temperature": float(temperature), "saved": time.time()}
    workspace.atomic_write_json(rundir.operating_point_path(run_dir), point)
    return point


def load_operating_point(run_dir: Path) -> dict[str, Any] | None:
    point: dict[str, Any] | None = rundir.read_json(rundir.operating_point_path(run_dir))
    return point


def operating_point(run_dir: Path, predictions: pd.DataFrame) -> tuple[str, float, float]:
    """(positive class, threshold, temperature) saved with the run; without a saved point, the rarer
    class of `predictions` at 0.5 on the raw scores."""
    point = load_operating_point(run_dir) or {}
    positive = point.get("positive_class") or default_positive(predictions)
    return str(positive), float(point.get("threshold", 0.5)), float(point.get("temperature", 1.0))


def saved_decision(predictions: pd.DataFrame, run_dir: Path) -> tuple[str, float, np.ndarray]:
    """(positive class, threshold, every row's score) at the run's saved operating point, the
    scores temperature-scaled as they were when the threshold was chosen; without a saved point,
    the rarer class at 0.5 on the raw scores. Review, Grad-CAM and the command line all decide here."""
    positive, threshold, temperature = operating_point(run_dir, predictions)
    classes = rundir.classes_of(predictions)
    probs = predictions[rundir.prob_columns(classes)].to_numpy(dtype=np.float64)
    if temperature != 1.0:
        probs = apply_temperature(probs, temperature)
    return positive, threshold, probs[:, classes.index(positive)]


def evaluate_run(run_dir: Path, split: str = "test", threshold: float | None = None,
                 positive: str | None = None, prediction_set: str | None = None) -> dict[str, Any]:
    """The command line's report: at the given threshold on raw scores, else at the saved one on the
    scores it was chosen on (temperature-scaled when it was), else at 0.5. With `prediction_set`,
    on that set's rows whose label is one of the run's classes, instead of a split of the run."""
    own = rundir.read_predictions(run_dir)
    if prediction_set is None:
        predictions = own
    else:
        predictions, split = labelled_rows(rundir.read_prediction_set(run_dir, prediction_set)), prediction_set
    saved = load_operating_point(run_dir) or {}
    positive = positive or saved.get("positive_class") or default_positive(own)
    if split not in set(predictions["split"]):
        raise ValueError(f"The run has no '{split}' split; it has {', '.join(sorted(set(predictions['split'])))}.")
    is_pos, scores = binary_scores(predictions, positive, split)
    if threshold is not None:
        source = "given"
    elif saved.get("positive_class") == positive:
        _, threshold, all_scores = saved_decision(predictions, run_dir)
        scores = all_scores[(predictions["split"] == split).to_numpy()]
        source = f"saved (tuned on {saved.get('tuned_on')}, {saved.get('method', 'raw scores')})"
    else:
        threshold, source = 0.5, "default"
    report = {"run": Path(run_dir).name, "split": split, "positive_class": positive, "threshold_source": source,
              **summary(metrics.Curve.from_scores(is_pos, scores), threshold)}
    if len(rundir.classes_of(predictions)) > 2:
        report["multiclass"] = multiclass_report(predictions, split)
    return report


def parse_rule(text: str) -> tuple[str, float | None]:
    """A tuning rule as the command line writes it: youden, f1, sensitivity=0.95 or specificity=0.9."""
    name, _, target = text.strip().lower().partition("=")
    if name in ("youden", "f1") and not target:
        return name, None
    if name in ("sensitivity", "specificity"):
        try:
            value = float(target)
        except ValueError:
            value = float("nan")
        if 0 < value <= 1:
            return name, value
    raise ValueError(f"Unknown tuning rule '{text}': use youden, f1, sensitivity=T or specificity=T (0 < T <= 1).")


def tuned_threshold(curve: metrics.Curve, rule: str) -> float | None:
    """The threshold a rule chooses on a split's curve (the Threshold page's suggestions), or None
    where none can (a target no threshold reaches, a split without one of the classes)."""
    name, target = parse_rule(rule)
    if name == "youden":
        return metrics.youden_threshold(curve)
    if name == "f1":
        return metrics.best_f1_threshold(curve)
    assert target is not None  # parse_rule gives the targeted rules their target
    choose = metrics.threshold_for_sensitivity if name == "sensitivity" else metrics.threshold_for_specificity
    return choose(curve, target)


def tune_run(run_dir: Path, rule: str, on: str = "val", split: str = "test", positive: str | None = None,
             prediction_set: str | None = None) -> dict[str, Any]:
    """Choose the threshold on one split by a rule and report it there and on `split` (or on a
    prediction set): "tune on validation, report on test" as the Threshold page does it, on the raw
    scores. The choice is not saved here."""
    predictions = rundir.read_predictions(run_dir)
    saved = load_operating_point(run_dir) or {}
    positive = positive or saved.get("positive_class") or default_positive(predictions)
    if on not in set(predictions["split"]):
        have = ", ".join(sorted(set(predictions["split"])))
        raise ValueError(f"The run has no '{on}' split to tune on; it has {have}.")
    threshold = tuned_threshold(metrics.Curve.from_scores(*binary_scores(predictions, positive, on)), rule)
    if threshold is None:
        raise ValueError(f"No threshold meets '{rule}' on the {on} split for {positive}.")
    source = {"threshold_source": f"{rule} on {on}"}
    return {"rule": rule, "tuned_on": on, "positive_class": positive, "threshold": threshold,
            "tuning": {**evaluate_run(run_dir, on, threshold, positive), **source},
            "report": {**evaluate_run(run_dir, split, threshold, positive, prediction_set), **source}}


def roc_points(run_dir: Path, split: str, positive: str, prediction_set: str | None = None) -> pd.DataFrame:
    """fpr, tpr, threshold of the positive class's raw scores on a split (or a prediction set), as
    scikit-learn's roc_curve gives them (the first threshold is inf: nothing called positive)."""
    predictions = (rundir.read_predictions(run_dir) if prediction_set is None
                   else labelled_rows(rundir.read_prediction_set(run_dir, prediction_set)))
    is_pos, scores = binary_scores(predictions, positive, prediction_set or split)
    fpr, tpr, thresholds = roc_curve(is_pos, scores)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thresholds})


def labelled_rows(prediction_set: pd.DataFrame) -> pd.DataFrame:
    """The rows of a prediction set that can be scored: those labelled with one of the run's classes."""
    classes = rundir.classes_of(prediction_set)
    rows = prediction_set[prediction_set["label"].isin(classes)]
    if rows.empty:
        found = sorted(prediction_set["label"].dropna().astype(str).unique())
        raise ValueError("The prediction set has no labelled rows to score: "
                         + (f"its labels ({', '.join(found[:10])}) are not the run's classes ({', '.join(classes)})."
                            if found else "its source gave no labels (name the label column to predict with them)."))
    return rows


# ---------------------------------------------------------------- several classes


def multiclass_predicted(predictions: pd.DataFrame, split: str, thresholds: dict[str, float] | None = None,
                         fallback: str | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(classes, true class index, predicted class index) of one split's labelled rows: by the
    largest probability, or with per-class thresholds (see `decide`) when they are given."""
    classes = rundir.classes_of(predictions)
    rows = predictions[predictions["split"] == split]
    truth = pd.Categorical(rows["label"], categories=classes).codes
    probs = rows[rundir.prob_columns(classes)].to_numpy()[truth >= 0]
    if thresholds:
        predicted = decide(probs, np.array([thresholds[c] for c in classes]), classes.index(fallback or classes[0]))
    else:
        predicted = probs.argmax(axis=1)
    return classes, truth[truth >= 0].astype(np.int64), predicted.astype(np.int64)


def multiclass_confusion(predictions: pd.DataFrame, split: str, thresholds: dict[str, float] | None = None,
                         fallback: str | None = None) -> tuple[list[str], np.ndarray]:
    """K x K counts, rows true, columns predicted (see `multiclass_predicted`)."""
    classes, truth, predicted = multiclass_predicted(predictions, split, thresholds, fallback)
    return classes, sk_confusion_matrix(truth, predicted, labels=np.arange(len(classes)))


def multiclass_report(predictions: pd.DataFrame, split: str, thresholds: dict[str, float] | None = None,
                      fallback: str | None = None) -> dict[str, Any]:
    """Every class at once, as scikit-learn reports it: accuracy, balanced accuracy, the K x K matrix
    and per-class precision, recall, F1 and support. One-vs-rest at a threshold answers another
    question ("is it class X?") and overstates accuracy when X is rare."""
    classes, truth, predicted = multiclass_predicted(predictions, split, thresholds, fallback)
    labels = np.arange(len(classes))
    per_class = classification_report(truth, predicted, labels=labels, target_names=classes, output_dict=True,
                                      zero_division=0)
    return {
        "split": split, "n": int(len(truth)), "classes": classes,
        "accuracy": _clean(accuracy_score(truth, predicted)) if len(truth) else None,
        "balanced_accuracy": _clean(balanced_accuracy_score(truth, predicted)) if len(truth) else None,
        "confusion_matrix": sk_confusion_matrix(truth, predicted, labels=labels).tolist(),
        "per_class": {c: {k: float(v) if k != "support" else int(v) for k, v in per_class[c].items()}
                      for c in classes},
    }


def per_class_table(report: dict[str, Any]) -> pd.DataFrame:
    """The report's per-class figures as rows (class, precision, recall, F1, support)."""
    return pd.DataFrame([{"class": c, "precision": v["precision"], "recall": v["recall"], "F1": v["f1-score"],
                          "support": v["support"]} for c, v in report["per_class"].items()])


def one_vs_rest(probs: np.ndarray, positive: int, threshold: float, temperature: float = 1.0) -> np.ndarray:
    """Class index per row at an operating point: the positive class where its score (temperature-
    scaled, as the threshold was chosen) reaches the threshold, else the most probable other class."""
    scores = (apply_temperature(probs, temperature) if temperature != 1.0 else probs)[:, positive]
    others = np.where(np.arange(probs.shape[1]) == positive, -np.inf, probs)
    return np.where(scores >= threshold, positive, others.argmax(axis=1))


def decide(probs: np.ndarray, thresholds: np.ndarray, fallback: int) -> np.ndarray:
    """Per-class thresholds: the most probable class among those over their threshold, else fallback."""
    over = probs >= thresholds[None, :]
    masked = np.where(over, probs, -np.inf)
    choice = masked.argmax(axis=1)
    return np.where(over.any(axis=1), choice, fallback)


# ---------------------------------------------------------------- calibration


def reliability(is_positive: np.ndarray, scores: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Per equal-width bin: mean predicted score, observed positive rate, count."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    frame = pd.DataFrame({"bin": which, "score": scores, "positive": is_positive.astype(float)})
    table = frame.groupby("bin").agg(mean_score=("score", "mean"), observed=("positive", "mean"),
                                     count=("score", "size")).reset_index()
    table["low"], table["high"] = edges[table["bin"]], edges[table["bin"] + 1]
    return table


def expected_calibration_error(is_positive: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    table = reliability(is_positive, scores, bins)
    return float((table["count"] * (table["mean_score"] - table["observed"]).abs()).sum() / max(len(scores), 1))


def brier(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Mean squared distance of the scores from the outcomes; NaN for no items (scikit-learn refuses them)."""
    return float(brier_score_loss(is_positive, scores, pos_label=True)) if len(scores) else float("nan")


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that minimises the negative log-likelihood of softmax(log p / T) on
    validation; T > 1 softens an over-confident model."""
    logits = np.log(np.clip(probs, 1e-12, 1))

    def nll(t: float) -> float:
        return float(-np.mean(_log_softmax(logits / t)[np.arange(len(labels)), labels]))

    return float(minimize_scalar(nll, bounds=(0.05, 20), method="bounded").x)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    scaled: np.ndarray = np.exp(_log_softmax(np.log(np.clip(probs, 1e-12, 1)) / temperature))
    return scaled


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    result: np.ndarray = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return result
