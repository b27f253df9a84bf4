"""The review queue: a run's predictions at its saved operating point, filtered and sorted."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core import evaluation, label_errors, rundir, study

LABEL_ERROR, IN_SAMPLE = "likely label error", "likely label error (in-sample)"
SORTS = {LABEL_ERROR: "confident learning on a cross-validation's out-of-fold probabilities",
         IN_SAMPLE: "wrong and confident first, on this run's own predictions (mostly of items it trained on)",
         "uncertainty": "closest to the decision first", "confidence": "most confident first", "item": "by item id"}


def sorts(rows: pd.DataFrame) -> dict[str, str]:
    """The orders on offer: the out-of-fold one only where a cross-validation ranked these items."""
    return SORTS if rows["oof_rank"].notna().any() else {k: v for k, v in SORTS.items() if k != LABEL_ERROR}


def with_out_of_fold_rank(rows: pd.DataFrame, dataset_path: str) -> pd.DataFrame:
    """`oof_rank` (0: most likely a label error) from the newest finished cross-validation of the
    dataset; NaN for items it did not hold out, or everywhere when there is none."""
    table = study.latest_cross_validation(dataset_path)
    if table is None:
        return rows.assign(oof_rank=np.nan)
    rank = label_errors.ranking(table).set_index("item_id")["rank"]
    return rows.assign(oof_rank=rows["item_id"].map(rank).astype(float))


def decisions(preds: pd.DataFrame, run_dir) -> pd.DataFrame:
    """Each prediction with predicted label, confidence, margin to the decision and outcome.

    Binary runs decide at the saved operating point (TP/FP/FN/TN); several classes by argmax."""
    classes = rundir.classes_of(preds)
    probs = preds[rundir.prob_columns(classes)].to_numpy()
    if len(classes) == 2:
        positive, threshold, score = evaluation.saved_decision(preds, run_dir)
        negative = next(c for c in classes if c != positive)
        predicted = np.where(score >= threshold, positive, negative)
        truth_pos, pred_pos = preds["label"].to_numpy() == positive, score >= threshold
        outcome = np.select([truth_pos & pred_pos, ~truth_pos & pred_pos, truth_pos & ~pred_pos],
                            ["TP", "FP", "FN"], "TN")
        margin = np.abs(score - threshold)
    else:
        predicted = np.array(classes)[probs.argmax(axis=1)]
        outcome = np.where(predicted == preds["label"].to_numpy(), "correct", "wrong")
        top2 = np.sort(probs, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
    confidence = probs.max(axis=1)
    return preds.assign(predicted=predicted, outcome=outcome, confidence=confidence, margin=margin)


def sort_queue(rows: pd.DataFrame, how: str) -> pd.DataFrame:
    if how == LABEL_ERROR:
        return rows.sort_values("oof_rank", na_position="last", kind="stable")
    if how == IN_SAMPLE:
        wrong = rows["predicted"] != rows["label"]
        return rows.assign(_wrong=wrong).sort_values(["_wrong", "confidence"], ascending=[False, False]).drop(
            columns="_wrong")
    if how == "uncertainty":
        return rows.sort_values("margin")
    if how == "confidence":
        return rows.sort_values("confidence", ascending=False)
    return rows.sort_values("item_id")
