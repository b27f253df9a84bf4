"""Paired comparison of two runs on the same test items: is one model really better, or is the gap
within what these items would give by chance?

Two tests, because two questions: DeLong's test of the ROC AUC difference (threshold-free; DeLong,
DeLong and Clarke-Pearson 1988, in the fast form of Sun and Xu 2014: midranks instead of the m x n
comparisons) and McNemar's exact test at each run's saved operating point (the decisions a
pathologist would see). No library in Lumen's environment offers DeLong; McNemar is scipy's exact
binomial test on the discordant pairs (statsmodels is not installed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from core import evaluation, rundir

LEVEL = 0.95


def delong(is_positive: npt.ArrayLike, scores_a: npt.ArrayLike, scores_b: npt.ArrayLike) -> dict[str, Any]:
    """AUC of each score, their difference (a - b) with its 95% interval, z and the two-sided p-value.

    Sun and Xu's algorithm: each positive's placement value (the share of negatives it outranks,
    ties counting half) is its midrank among all items less its midrank among the positives, so the
    covariance of the two AUCs costs three sorts per score instead of m x n comparisons."""
    positive = np.asarray(is_positive, dtype=bool)
    scores = np.vstack([np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)])
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's test needs at least two positives and two negatives; these items have {m} and {n}.")
    pos, neg = scores[:, positive], scores[:, ~positive]
    all_ranks = stats.rankdata(np.hstack([pos, neg]), axis=1)
    v_pos = (all_ranks[:, :m] - stats.rankdata(pos, axis=1)) / n  # placement of each positive among negatives
    v_neg = 1 - (all_ranks[:, m:] - stats.rankdata(neg, axis=1)) / m  # share of positives above each negative
    auc = v_pos.mean(axis=1)
    cov = np.cov(v_pos) / m + np.cov(v_neg) / n
    difference = float(auc[0] - auc[1])
    se = float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
    half = float(stats.norm.ppf(0.5 + LEVEL / 2)) * se
    if se > 0:
        z = difference / se
        p_value = float(2 * stats.norm.sf(abs(z)))
    else:  # identical rankings: no difference, and none could be seen
        z, p_value = 0.0, 1.0
    return {"auc_a": float(auc[0]), "auc_b": float(auc[1]), "difference": difference, "se": se,
            "ci_95": [difference - half, difference + half], "z": float(z), "p_value": p_value}


def mcnemar(correct_a: npt.ArrayLike, correct_b: npt.ArrayLike) -> dict[str, Any]:
    """McNemar's exact test: of the items exactly one run gets right, is the split far from even?"""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    p_value = float(stats.binomtest(only_a, discordant, 0.5).pvalue) if discordant else 1.0
    return {"accuracy_a": float(a.mean()), "accuracy_b": float(b.mean()), "only_a_correct": only_a,
            "only_b_correct": only_b, "both_correct": int((a & b).sum()), "both_wrong": int((~a & ~b).sum()),
            "p_value": p_value, "method": "exact binomial test on the discordant pairs"}


def _split_rows(run_dir: Path, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every prediction of the run, its rows of `split` indexed by item_id)."""
    predictions = rundir.read_predictions(run_dir)
    rows = predictions[predictions["split"] == split]
    if rows.empty:
        have = ", ".join(sorted(set(predictions["split"])))
        raise ValueError(f"{Path(run_dir).name} has no '{split}' split; it has {have}.")
    return predictions, rows.set_index("item_id")


def _decided(run_dir: Path, predictions: pd.DataFrame, split: str) -> tuple[str, float, pd.Series]:
    """(positive class, threshold, score per item of the split) at the run's saved operating point."""
    positive, threshold, scores = evaluation.saved_decision(predictions, run_dir)
    mine = (predictions["split"] == split).to_numpy()
    return positive, threshold, pd.Series(scores[mine], index=predictions.loc[mine, "item_id"])


def compare_runs(run_a: Path, run_b: Path, split: str = "test") -> dict[str, Any]:
    """DeLong and McNemar for two runs on one split, items matched by id. Refuses (ValueError) when the
    runs' items or labels differ, or when their saved operating points have different positive classes."""
    preds_a, rows_a = _split_rows(run_a, split)
    preds_b, rows_b = _split_rows(run_b, split)
    ids_a, ids_b = set(rows_a.index), set(rows_b.index)
    if ids_a != ids_b:
        raise ValueError(f"The runs were not tested on the same items: {Path(run_a).name}'s {split} split has "
                         f"{len(ids_a)}, {Path(run_b).name}'s has {len(ids_b)}, and {len(ids_a & ids_b)} are in both. "
                         "A paired test needs the same items: train both on the same dataset, split and split seed.")
    ids = sorted(ids_a)
    labels = rows_a.loc[ids, "label"]
    if not labels.equals(rows_b.loc[ids, "label"]):
        raise ValueError("The runs give some of the same items different labels: they were trained on different "
                         "versions of the dataset, so a paired test does not apply.")
    positive_a, threshold_a, scores_a = _decided(run_a, preds_a, split)
    positive_b, threshold_b, scores_b = _decided(run_b, preds_b, split)
    if positive_a != positive_b:
        raise ValueError(f"The runs' operating points are for different classes ({positive_a} and {positive_b}): "
                         "save both for the same positive class on the Threshold page.")
    is_positive = (labels == positive_a).to_numpy()
    a, b = scores_a.loc[ids].to_numpy(), scores_b.loc[ids].to_numpy()
    return {
        "split": split, "positive_class": positive_a, "n": len(ids), "positives": int(is_positive.sum()),
        "runs": {"a": Path(run_a).name, "b": Path(run_b).name},
        "thresholds": {"a": threshold_a, "b": threshold_b},
        "delong": delong(is_positive, a, b),
        "mcnemar": mcnemar((a >= threshold_a) == is_positive, (b >= threshold_b) == is_positive),
    }


def table(report: dict[str, Any]) -> pd.DataFrame:
    """The report as rows a person reads: each test, each run's figure, the difference (with its
    interval for the AUC; for McNemar, the items only the first / only the second run gets right)
    and the p-value."""
    d, m, runs = report["delong"], report["mcnemar"], report["runs"]
    return pd.DataFrame([
        {"test": "DeLong (ROC AUC)", runs["a"]: d["auc_a"], runs["b"]: d["auc_b"], "difference": d["difference"],
         "95% interval": f"{d['ci_95'][0]:.3f} to {d['ci_95'][1]:.3f}", "only one right": "",
         "p-value": d["p_value"]},
        {"test": "McNemar (accuracy at the saved thresholds)", runs["a"]: m["accuracy_a"], runs["b"]: m["accuracy_b"],
         "difference": m["accuracy_a"] - m["accuracy_b"], "95% interval": "",
         "only one right": f"{m['only_a_correct']} / {m['only_b_correct']}", "p-value": m["p_value"]},
    ])
