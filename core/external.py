"""External validation: a labelled prediction set beside the run's own test split, at the run's
saved operating point, broken down by any of its columns, with a warning when its scores or
features have shifted away from the test split's.

The figures are `core.evaluation.summary` of the same scores `python -m core evaluate --set`
scores, so the page and the command line give the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core import embeddings, evaluation, metrics, rundir

#: A shift is reported when the two-sample KS test rejects equal score distributions at this level.
KS_ALPHA = 0.01
#: A domain classifier telling the set's features from the test split's this well (cross-validated
#: ROC AUC) means the images look different to the model, whatever their labels.
DOMAIN_AUC_WARNING = 0.75
#: Breakdown columns: at most this many values (a column with one value per image is no grouping).
MAX_GROUPS = 50


@dataclass(frozen=True)
class Scored:
    """One set of rows at the operating point: truth, score of the positive class, the decision rule."""

    positive: str
    threshold: float
    is_positive: np.ndarray
    scores: np.ndarray

    def curve(self) -> metrics.Curve:
        return metrics.Curve.from_scores(self.is_positive, self.scores)


@dataclass(frozen=True)
class ScoreShift:
    """Two-sample Kolmogorov-Smirnov test of the positive-class scores, set against test split."""

    statistic: float
    pvalue: float
    test_scores: np.ndarray
    set_scores: np.ndarray

    @property
    def shifted(self) -> bool:
        return self.pvalue < KS_ALPHA


@dataclass(frozen=True)
class FeatureShift:
    """How well a logistic regression tells the set's features from the test split's (5-fold ROC AUC;
    0.5: indistinguishable), and the distance of each item from the test split's mean feature."""

    domain_auc: float
    test_distance: np.ndarray
    set_distance: np.ndarray

    @property
    def shifted(self) -> bool:
        return self.domain_auc >= DOMAIN_AUC_WARNING


def scored(run_dir: Path, rows: pd.DataFrame) -> Scored:
    """Rows at the run's saved operating point, on the scores it was chosen on (temperature-scaled
    when it was); without a saved point, the rarer class of the run's own labels at 0.5."""
    positive, threshold, temperature = evaluation.operating_point(run_dir, rundir.read_predictions(run_dir))
    classes = rundir.classes_of(rows)
    probs = rows[rundir.prob_columns(classes)].to_numpy(dtype=np.float64)
    if temperature != 1.0:
        probs = evaluation.apply_temperature(probs, temperature)
    return Scored(positive, threshold, (rows["label"] == positive).to_numpy(), probs[:, classes.index(positive)])


def test_rows(run_dir: Path) -> pd.DataFrame:
    own = rundir.read_predictions(run_dir)
    return own[own["split"] == "test"]


def set_rows(run_dir: Path, name: str) -> pd.DataFrame:
    """The labelled rows of a set (ValueError with the reason when it has none)."""
    return evaluation.labelled_rows(rundir.read_prediction_set(run_dir, name))


def comparison(run_dir: Path, name: str) -> dict[str, dict[str, Any]]:
    """summary() of the test split and of the set, by their display names."""
    return {"test split": evaluation.summary(scored(run_dir, test_rows(run_dir)).curve(), _threshold(run_dir)),
            name: evaluation.summary(scored(run_dir, set_rows(run_dir, name)).curve(), _threshold(run_dir))}


def _threshold(run_dir: Path) -> float:
    return evaluation.operating_point(run_dir, rundir.read_predictions(run_dir))[1]


def breakdown_columns(table: pd.DataFrame) -> list[str]:
    """Columns a labelled set can be broken down by: group, the source's split, and the source's own
    columns (a CSV's centre, scanner, slide), each with 2 to MAX_GROUPS values of which at least one
    holds both a positive and a negative (a column that only restates the label has nothing to show),
    the coarsest first."""
    candidates = ["group", "source_split", *(c for c in table.columns if c.startswith(rundir.SOURCE_COLUMN_PREFIX))]
    usable = [c for c in candidates if c in table and 2 <= table[c].nunique() <= MAX_GROUPS
              and table.groupby(c)["label"].nunique().max() > 1]
    return sorted(usable, key=lambda c: table[c].nunique())  # the coarsest (centre before slide) first


def column_title(column: str) -> str:
    """How a breakdown column is named to a user: a source column by its name in the source."""
    return column.removeprefix(rundir.SOURCE_COLUMN_PREFIX) if column.startswith(rundir.SOURCE_COLUMN_PREFIX) \
        else {"group": "group", "source_split": "split in the source"}.get(column, column)


def breakdown(run_dir: Path, name: str, column: str) -> pd.DataFrame:
    """Per value of `column`: n, positives, ROC AUC, sensitivity and specificity at the saved point,
    each with its 95% interval (AUC: stratified bootstrap; rates: as core.metrics.intervals)."""
    rows = set_rows(run_dir, name)
    if column not in rows:
        raise ValueError(f"The prediction set '{name}' has no column '{column_title(column)}'.")
    out = []
    for value, part in rows.groupby(rows[column].fillna("(blank)").astype(str), sort=True):
        one = scored(run_dir, part)
        report = evaluation.summary(one.curve(), one.threshold)
        auc_low, auc_high = auc_interval(one.is_positive, one.scores)
        ci = report["intervals_95"]
        out.append({
            column_title(column): value, "n": report["n"], "positives": report["positives"],
            "ROC AUC": report["roc_auc"], "AUC 95% CI": _interval(auc_low, auc_high),
            "sensitivity": report["metrics"]["sensitivity"], "sensitivity 95% CI": _interval(*ci.get("sensitivity",
                                                                                                   (None, None))),
            "specificity": report["metrics"]["specificity"], "specificity 95% CI": _interval(*ci.get("specificity",
                                                                                                   (None, None))),
        })
    return pd.DataFrame(out)


def _interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None or np.isnan(low) else f"{low:.3f}–{high:.3f}"


def auc_interval(is_positive: np.ndarray, scores: np.ndarray, n_boot: int = 1000,
                 seed: int = 0) -> tuple[float | None, float | None]:
    """95% percentile interval of the ROC AUC, resampling positives and negatives separately
    (scipy.stats.bootstrap with two independent samples), so no resample lacks a class."""
    pos, neg = scores[is_positive], scores[~is_positive]
    if len(pos) < 2 or len(neg) < 2:
        return None, None
    result = stats.bootstrap((pos, neg), _auc, vectorized=True, paired=False, n_resamples=n_boot, batch=200,
                             method="percentile", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _auc(pos: np.ndarray, neg: np.ndarray, axis: int = -1) -> np.ndarray:
    """ROC AUC as the Mann-Whitney statistic (ties count one half), along `axis` for many resamples."""
    ranks = stats.rankdata(np.concatenate([pos, neg], axis=axis), axis=axis)
    n_pos, n_neg = pos.shape[axis], neg.shape[axis]
    rank_sum = np.take(ranks, np.arange(n_pos), axis=axis).sum(axis=axis)
    auc: np.ndarray = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return auc


def score_shift(run_dir: Path, name: str) -> ScoreShift:
    """The set's positive-class scores (every row, labelled or not) against the test split's."""
    test = scored(run_dir, test_rows(run_dir)).scores
    new = scored(run_dir, rundir.read_prediction_set(run_dir, name)).scores
    result = stats.ks_2samp(test, new)
    return ScoreShift(float(result.statistic), float(result.pvalue), test, new)


def run_feature_shift(run_dir: Path, name: str) -> FeatureShift | None:
    """The feature shift of a set against the test split, when both have stored features (a run's
    features are made on the Embeddings page or by `python -m core embed`; the set's by its job)."""
    path = rundir.prediction_features_path(run_dir, name)
    if not path.exists() or not embeddings.features_cached(run_dir):
        return None
    own = embeddings.load_features(run_dir)
    test = own.attrs["features"][(own["split"] == "test").to_numpy()]
    new = np.load(path, allow_pickle=False)
    return feature_shift(test, new) if test.shape[1:] == new.shape[1:] else None


def feature_shift(test_features: np.ndarray, set_features: np.ndarray, seed: int = 0) -> FeatureShift | None:
    """A domain classifier's cross-validated AUC (test split = 0, set = 1) on standardised features,
    and each item's distance from the test split's mean; None with fewer than 10 items on a side."""
    if min(len(test_features), len(set_features)) < 10:
        return None
    x = np.concatenate([test_features, set_features]).astype(np.float64)
    y = np.r_[np.zeros(len(test_features)), np.ones(len(set_features))]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced"))
    folds = min(5, len(test_features), len(set_features))
    probs = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    auc = float(_auc(probs[y == 1], probs[y == 0]))
    centre = test_features.mean(axis=0)
    distance = np.linalg.norm(x - centre, axis=1)
    return FeatureShift(auc, distance[y == 0], distance[y == 1])
