"""The metrics table of the Threshold and Predict pages: one place for how a figure and its
interval read, so a split and an external set are shown alike."""
from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd


def metrics_table(reports: Mapping[str, dict], title: Callable[[str], str] = str, totals: bool = True) -> pd.DataFrame:
    """One row per figure of `evaluation.summary`, one column per report (headed `title(key)`): value
    and 95% interval. `totals` puts items, positives, ROC AUC and average precision first."""
    columns = {title(key): report for key, report in reports.items()}
    rows = []
    if totals:
        rows += [{"metric": "items", **{k: f"{r['n']:,}" for k, r in columns.items()}},
                 {"metric": "positives", **{k: f"{r['positives']:,}" for k, r in columns.items()}},
                 {"metric": "ROC AUC", **{k: _number(r["roc_auc"]) for k, r in columns.items()}},
                 {"metric": "average precision", **{k: _number(r["average_precision"]) for k, r in columns.items()}}]
    for name in next(iter(columns.values()))["metrics"]:
        rows.append({"metric": name.replace("_", " "),
                     **{k: _number(r["metrics"][name], r["intervals_95"].get(name)) for k, r in columns.items()}})
    return pd.DataFrame(rows)


def _number(value: float | None, ci: tuple[float, float] | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f"  ({ci[0]:.3f}–{ci[1]:.3f})" if ci else "")
