"""Threshold analysis: sort the scores once, then answer any threshold by binary search.

A slider move then costs O(log n) instead of the O(n log n) of recomputing with scikit-learn,
which is what keeps the threshold page instant with a million predictions. Curves follow
scikit-learn's conventions exactly (an item is positive when its score is >= the threshold;
tied scores form one point), and the tests use scikit-learn as the oracle.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
from scipy import special

COUNT_NAMES = ("tp", "fp", "fn", "tn")
#: Confusion counts by name (tp, fp, fn, tn): numbers, or arrays of them (one per threshold or draw).
Counts = Mapping[str, np.ndarray | int]


@dataclass(frozen=True)
class Curve:
    """Scores sorted descending with cumulative positive counts: everything a threshold needs."""

    scores: np.ndarray  # descending
    cum_pos: np.ndarray  # positives among the top k items, for k = 1..n
    n_pos: int
    n_neg: int

    @classmethod
    def from_scores(cls, is_positive: npt.ArrayLike, scores: npt.ArrayLike) -> Curve:
        values = np.asarray(scores, dtype=np.float64)
        positive = np.asarray(is_positive, dtype=bool)
        if values.shape != positive.shape or values.ndim != 1:
            raise ValueError("scores and labels must be 1-D arrays of the same length")
        order = np.argsort(values, kind="mergesort")[::-1]
        labels = positive[order]
        n_pos = int(labels.sum())
        return cls(values[order], np.cumsum(labels, dtype=np.int64), n_pos, len(labels) - n_pos)

    @property
    def n(self) -> int:
        return self.n_pos + self.n_neg

    def counts(self, threshold: npt.ArrayLike) -> dict[str, np.ndarray]:
        """Confusion counts at one threshold or an array of them (score >= threshold is positive)."""
        t = np.asarray(threshold, dtype=np.float64)
        # score >= t  <=>  -score <= -t, searched in the negated scores kept from the first call
        predicted_pos = np.searchsorted(self._negated, -t, side="right")
        tp = np.where(predicted_pos > 0, self.cum_pos[np.maximum(predicted_pos - 1, 0)], 0)
        fp = predicted_pos - tp
        return {"tp": tp, "fp": fp, "fn": self.n_pos - tp, "tn": self.n_neg - fp}

    @cached_property
    def _negated(self) -> np.ndarray:
        """-scores, ascending: negated once so that each threshold is a bare binary search."""
        return -self.scores

    @cached_property
    def _steps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fps, tps, thresholds) at each distinct score, as scikit-learn's _binary_clf_curve.

        Computed once per Curve: the page reuses one Curve for every slider move."""
        last_of_tie = np.r_[np.flatnonzero(np.diff(self.scores)), self.n - 1]
        tps = self.cum_pos[last_of_tie]
        return 1 + last_of_tie - tps, tps, self.scores[last_of_tie]

    def roc(self, drop_intermediate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fpr, tpr, thresholds) exactly as sklearn.metrics.roc_curve returns them."""
        fps, tps, thresholds = self._steps
        if drop_intermediate and len(fps) > 2:
            keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
            fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
        fps, tps, thresholds = np.r_[0, fps], np.r_[0, tps], np.r_[np.inf, thresholds]
        fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, np.nan)
        tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
        return fpr, tpr, thresholds

    def pr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(precision, recall, thresholds) exactly as sklearn.metrics.precision_recall_curve."""
        fps, tps, thresholds = self._steps
        predicted = tps + fps
        precision = np.divide(tps, predicted, out=np.zeros(len(tps)), where=predicted != 0)
        recall = tps / tps[-1] if tps[-1] > 0 else np.ones(len(tps))
        return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]

    def roc_auc(self) -> float:
        return self._roc_auc

    def average_precision(self) -> float:
        """Area under the PR curve as a step function (scikit-learn's average_precision_score)."""
        return self._average_precision

    @cached_property
    def _roc_auc(self) -> float:
        if self.n_pos == 0 or self.n_neg == 0:
            return float("nan")
        fpr, tpr, _ = self.roc(drop_intermediate=False)
        return float(np.trapezoid(tpr, fpr))

    @cached_property
    def _average_precision(self) -> float:
        if self.n_pos == 0:
            return float("nan")
        precision, recall, _ = self.pr()
        return float(-np.sum(np.diff(recall) * precision[:-1]))


def _ratio(num: npt.ArrayLike, den: npt.ArrayLike) -> np.ndarray:
    top, bottom = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    ratio: np.ndarray = np.divide(top, bottom, out=np.full(np.broadcast(top, bottom).shape, np.nan),
                                  where=bottom != 0)
    return ratio


def rates(counts: Counts) -> dict[str, np.ndarray]:
    """Every threshold metric from confusion counts (arrays broadcast, so this serves bootstraps)."""
    tp, fp, fn, tn = (np.asarray(counts[k], dtype=np.float64) for k in COUNT_NAMES)
    sensitivity, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    ppv, npv = _ratio(tp, tp + fp), _ratio(tn, tn + fn)
    return {
        "sensitivity": sensitivity, "specificity": specificity, "ppv": ppv, "npv": npv,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn), "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "mcc": mcc(tp, fp, fn, tn), "youden_j": sensitivity + specificity - 1,
    }


def mcc(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    """Matthews correlation coefficient (NaN where a row or column of the matrix is empty)."""
    return _ratio(tp * tn - fp * fn, np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))


def confusion_matrix(counts: Counts) -> np.ndarray:
    """[[tn, fp], [fn, tp]]: rows true, columns predicted, negative first (scikit-learn's layout)."""
    return np.array([[int(counts["tn"]), int(counts["fp"])], [int(counts["fn"]), int(counts["tp"])]])


#: How `intervals` gets each rate's interval, in words, for the pages and reports that show them.
INTERVALS_NOTE = ("Intervals (95%): Wilson score for sensitivity, specificity, PPV, NPV and accuracy; for F1, the "
                  "Wilson interval of TP / (TP + FP + FN) mapped through F1 = 2J / (1 + J); Newcombe's hybrid score "
                  "(MOVER) for balanced accuracy and Youden's J; for MCC, the delta method on Fisher's z scale.")
#: The proportions with a Wilson interval: (the cells that count as successes, the cells of the trials).
PROPORTIONS = {"sensitivity": (("tp",), ("tp", "fn")), "specificity": (("tn",), ("tn", "fp")),
               "ppv": (("tp",), ("tp", "fp")), "npv": (("tn",), ("tn", "fn")),
               "accuracy": (("tp", "tn"), COUNT_NAMES), "jaccard": (("tp",), ("tp", "fp", "fn"))}


def wilson(successes: npt.ArrayLike, trials: npt.ArrayLike, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of binomial proportions, vectorised (NaN where there are no trials).

    Sound at 0/n and n/n, where a percentile bootstrap collapses to a point (Brown, Cai and
    DasGupta 2001); written out because scipy's binomtest computes it one proportion at a time
    with a p-value on top, several times the cost of a slider move."""
    k, n = np.asarray(successes, dtype=np.float64), np.asarray(trials, dtype=np.float64)
    z = float(special.ndtri((1 + level) / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def intervals(counts: Counts, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """An interval for every rate at a fixed threshold, by the method that fits it (INTERVALS_NOTE).

    Everything comes from the four counts in closed form, so a slider move costs microseconds, never O(n)."""
    cells = {k: int(counts[k]) for k in COUNT_NAMES}
    low, high = wilson([sum(cells[c] for c in hits) for hits, _ in PROPORTIONS.values()],
                       [sum(cells[c] for c in trials) for _, trials in PROPORTIONS.values()], level)
    found = {name: (float(lo), float(hi)) for name, lo, hi in zip(PROPORTIONS, low, high) if np.isfinite(lo)}
    jaccard = found.pop("jaccard", None)
    if jaccard is not None:  # F1 = 2J / (1 + J) rises with J, so J's limits map to F1's
        found["f1"] = (2 * jaccard[0] / (1 + jaccard[0]), 2 * jaccard[1] / (1 + jaccard[1]))
    if "sensitivity" in found and "specificity" in found:
        # MOVER (Zou and Donner 2008): the sum of two independent proportions from their Wilson limits
        point = rates(counts)
        sens, spec = float(point["sensitivity"]), float(point["specificity"])
        (sl, sh), (pl, ph) = found["sensitivity"], found["specificity"]
        total, below, above = sens + spec, float(np.hypot(sens - sl, spec - pl)), float(np.hypot(sh - sens, ph - spec))
        found["balanced_accuracy"] = ((total - below) / 2, (total + above) / 2)
        found["youden_j"] = (total - below - 1, total + above - 1)
    found_mcc = _mcc_interval(cells, level)
    if found_mcc is not None:
        found["mcc"] = found_mcc
    return found


def _mcc_interval(cells: dict[str, int], level: float) -> tuple[float, float] | None:
    """Delta-method interval of MCC on Fisher's z scale: the multinomial variance of the four cell
    shares carried through MCC's gradient, then tanh(atanh(MCC) +- z * se / (1 - MCC^2)), which
    keeps the limits inside (-1, 1). Four counts in, so a slider move costs microseconds."""
    shares = np.array([cells[k] for k in COUNT_NAMES], dtype=np.float64)
    n = shares.sum()
    shares /= n
    point = float(mcc(*shares))
    if not np.isfinite(point) or abs(point) >= 1:
        return None
    step = 1e-6  # central differences: MCC is smooth wherever it is defined and below 1 in size
    moved = shares + step * np.vstack([np.eye(4), -np.eye(4)])
    values = mcc(*moved.T)
    gradient = (values[:4] - values[4:]) / (2 * step)
    variance = float(gradient @ (np.diag(shares) - np.outer(shares, shares)) @ gradient) / n
    half = float(special.ndtri((1 + level) / 2)) * np.sqrt(max(variance, 0.0)) / (1 - point * point)
    return float(np.tanh(np.arctanh(point) - half)), float(np.tanh(np.arctanh(point) + half))


# ---------------------------------------------------------------- suggested thresholds


def candidate_thresholds(curve: Curve) -> np.ndarray:
    """Every distinct score: the only places where the confusion matrix changes."""
    return curve._steps[2]


def _best(curve: Curve, values: np.ndarray, thresholds: np.ndarray) -> float | None:
    if not np.isfinite(values).any():
        return None
    return float(thresholds[int(np.nanargmax(values))])


def youden_threshold(curve: Curve) -> float | None:
    t = candidate_thresholds(curve)
    return _best(curve, rates(curve.counts(t))["youden_j"], t)


def best_f1_threshold(curve: Curve) -> float | None:
    t = candidate_thresholds(curve)
    return _best(curve, rates(curve.counts(t))["f1"], t)


def threshold_for_sensitivity(curve: Curve, target: float) -> float | None:
    """The highest threshold whose sensitivity reaches the target (so specificity is the best
    it can be there); None when no threshold reaches it."""
    t = candidate_thresholds(curve)  # descending, so sensitivity rises along it
    ok = np.flatnonzero(rates(curve.counts(t))["sensitivity"] >= target)
    return float(t[ok[0]]) if len(ok) else None


def threshold_for_specificity(curve: Curve, target: float) -> float | None:
    """The lowest threshold whose specificity still reaches the target (best sensitivity there)."""
    t = candidate_thresholds(curve)
    ok = np.flatnonzero(rates(curve.counts(t))["specificity"] >= target)
    return float(t[ok[-1]]) if len(ok) else None


def least_cost_threshold(curve: Curve, cost_fn: float, cost_fp: float, prevalence: float) -> float | None:
    """Minimise expected cost per case: cost_fn * prevalence * (1 - sens) + cost_fp * (1 - prev) * (1 - spec)."""
    t = candidate_thresholds(curve)
    r = rates(curve.counts(t))
    cost = cost_fn * prevalence * (1 - r["sensitivity"]) + cost_fp * (1 - prevalence) * (1 - r["specificity"])
    return _best(curve, -cost, t)
