"""A baseline worth beating: scikit-learn's logistic regression on a run's own items as small pixel
images, its regularisation chosen on the run's validation split, tested on its test split.

"The CNN beats the baseline" then means something: same items, same splits, same squaring, padding
and channels (the run's Preprocessor at a smaller size), and a baseline whose strength was tuned
rather than left at a default. It is written inside the run as a run-like folder
(rundir.baseline_dir: predictions.parquet with a run's columns, and baseline.json), so
`python -m core compare RUN RUN/baseline` tests the difference on the same test items.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core import rundir, runmodel, workspace
from core.study import test_metrics

SIDE = 32  # pixels per side: 32 x 32 x 3 = 3,072 features
C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # inverse regularisation strengths tried on validation


def _auc(labels: npt.NDArray[np.intp], probs: npt.NDArray[np.float64]) -> float:
    """ROC AUC of class 1 for two classes, one-vs-rest macro for more (as the study table reports)."""
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels == 1, probs[:, 1]))
    return float(roc_auc_score(labels, probs, multi_class="ovr", labels=np.arange(probs.shape[1])))


def fit_baseline(run_dir: Path, side: int = SIDE, grid: tuple[float, ...] = C_GRID) -> dict[str, Any]:
    """Fit on train for every C, keep the C of best validation AUC, write its predictions of every
    item and the record, and return the record (the run's own test figures beside the baseline's)."""
    ckpt = rundir.load_checkpoint(run_dir, "best")
    classes = list(ckpt["classes"])
    items = runmodel.run_items(run_dir)
    pixels = runmodel.run_pixels(items, replace(runmodel.preprocessor_of(ckpt), size=side))
    x = np.asarray(pixels, dtype=np.float32).reshape(len(items), -1) / 255
    y = np.asarray(items["label"].map({c: i for i, c in enumerate(classes)}), dtype=np.intp)
    split = items["split"].to_numpy()
    train, val = split == "train", split == "val"
    if len(set(y[val])) < len(classes):
        raise ValueError("The run's validation split lacks a class, so no C can be chosen on it.")
    tried, best, best_auc = [], None, -np.inf
    for c in grid:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        model.fit(x[train], y[train])
        auc = _auc(y[val], model.predict_proba(x[val]))
        tried.append({"C": c, "val AUC": auc})
        if auc > best_auc:
            best, best_auc = model, auc
    assert best is not None  # the grid is not empty
    folder = rundir.baseline_dir(run_dir)
    folder.mkdir(exist_ok=True)
    predictions = rundir.write_predictions(rundir.predictions_path(folder),
                                           items[["item_id", "split", "label", "group"]], classes,
                                           best.predict_proba(x))
    chosen = max(tried, key=lambda row: row["val AUC"])
    record = {"model": f"logistic regression on {side}x{side} pixels (scikit-learn, standardised)",
              "run": Path(run_dir).name, "grid": tried, "C": chosen["C"], "val AUC": chosen["val AUC"],
              "baseline": test_metrics(predictions), "run test": test_metrics(rundir.read_predictions(run_dir))}
    workspace.atomic_write_json(rundir.baseline_record_path(run_dir), record)
    return record
