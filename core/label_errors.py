"""Likely label errors by confident learning (Northcutt, Jiang and Chuang, JAIR 2021) on out-of-fold
probabilities.

The `cleanlab` package is not installed in Lumen's environment, so this is the paper's standard
method, written out: per-class thresholds t_j = the mean probability of class j over the items
labelled j (its self-confidence); an item counts towards the confident joint C[given, j] for the
class j of largest probability among those at or above their threshold; C is calibrated so each row
sums to its class's count; then, for every off-diagonal pair (i, j), the C[i, j] items labelled i
with the largest margin p_j - p_i are issues (prune by noise rate). Issues are ranked by
self-confidence, lowest first.

Only probabilities the model did not train on (out of fold) can show an error: a model that
memorised its training labels is confident in every one of them.
"""
from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from core import rundir


def confident_joint(labels: npt.NDArray[np.intp], probs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """C[given, likely true] counts, calibrated so that each row sums to its class's count."""
    k = probs.shape[1]
    thresholds = np.array([probs[labels == j, j].mean() if (labels == j).any() else 1.0 for j in range(k)])
    above = probs >= thresholds[None, :] - 1e-12
    confident = above.any(axis=1)
    likely = np.where(above, probs, -np.inf).argmax(axis=1)
    joint = np.zeros((k, k))
    np.add.at(joint, (labels[confident], likely[confident]), 1)
    counts = np.bincount(labels, minlength=k).astype(float)
    sums = joint.sum(axis=1, keepdims=True)
    calibrated: npt.NDArray[np.float64] = np.divide(joint * counts[:, None], sums, out=np.zeros_like(joint),
                                                    where=sums > 0)
    return calibrated


def find_label_issues(labels: npt.NDArray[np.intp], probs: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """Indices of the likely label errors, lowest self-confidence first (prune by noise rate)."""
    joint = np.round(confident_joint(labels, probs)).astype(int)
    n = len(labels)
    issue = np.zeros(n, dtype=bool)
    given = probs[np.arange(n), labels]
    for i in range(probs.shape[1]):
        mine = np.flatnonzero(labels == i)
        for j in range(probs.shape[1]):
            if i == j or joint[i, j] == 0:
                continue
            margin = probs[mine, j] - given[mine]
            issue[mine[np.argsort(-margin, kind="stable")[:joint[i, j]]]] = True
    flagged = np.flatnonzero(issue)
    return flagged[np.argsort(given[flagged], kind="stable")]


def ranking(table: pd.DataFrame) -> pd.DataFrame:
    """Every item of an out-of-fold table (several repeats or cells are averaged per item), ranked:
    item_id, rank (0 first), issue (flagged by confident learning), self_confidence. Issues come
    first by self-confidence, then the rest by self-confidence."""
    classes = rundir.classes_of(table)
    columns = rundir.prob_columns(classes)
    mean = table.groupby("item_id", sort=True).agg({"label": "first", **dict.fromkeys(columns, "mean")})
    probs = mean[columns].to_numpy(dtype=np.float64)
    labels = np.asarray(mean["label"].map({c: i for i, c in enumerate(classes)}), dtype=np.intp)
    given = probs[np.arange(len(labels)), labels]
    issues = find_label_issues(labels, probs)
    is_issue = np.zeros(len(labels), dtype=bool)
    is_issue[issues] = True
    rest = np.flatnonzero(~is_issue)
    order = np.concatenate([issues, rest[np.argsort(given[rest], kind="stable")]])
    rank = np.empty(len(order), dtype=int)
    rank[order] = np.arange(len(order))
    return pd.DataFrame({"item_id": mean.index, "rank": rank, "issue": is_issue, "self_confidence": given})
