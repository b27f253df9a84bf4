"""The embedded demo run shows what a threshold is for: trained on two glomeruli centres, it errs on
both sides at 0.5 on its test split, and ships the third centre's prediction set for external validation."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from core import evaluation, prediction_jobs, rundir
from core.runconfig import dataset_spec

DEMO = rundir.demo_runs()[0]
EXTERNAL = "centre-SAS"


def _errors(rows: pd.DataFrame, positive: str = "GS") -> tuple[int, int]:
    """False negatives and false positives at threshold 0.5."""
    is_positive, called = rows["label"] == positive, rows[rundir.prob_column(positive)] >= 0.5
    return int((is_positive & ~called).sum()), int((~is_positive & called).sum())


def test_the_demo_test_split_has_errors_on_both_sides_at_one_half():
    predictions = rundir.read_predictions(DEMO)
    false_negatives, false_positives = _errors(predictions[predictions["split"] == "test"])
    assert false_negatives >= 1 and false_positives >= 1
    assert evaluation.load_operating_point(DEMO) is None  # nothing saved: the pages open at 0.5


def test_the_demo_ships_an_external_centre_the_run_never_trained_on():
    assert EXTERNAL in rundir.list_prediction_sets(DEMO)
    external = rundir.read_prediction_set(DEMO, EXTERNAL)
    job = prediction_jobs.status(DEMO, EXTERNAL)
    assert job["state"] == "finished" and job["items"] == len(external) == job["labelled"] and not job["skipped"]
    centres = set(external[f"{rundir.SOURCE_COLUMN_PREFIX}center"])
    trained_on = pd.read_csv(dataset_spec(rundir.read_config(DEMO)).path)
    assert centres == {"SAS"} and "SAS" not in set(trained_on["center"])
    assert external["label"].nunique() == 2
    assert all(Path(p).is_file() for p in external["path"])  # stored relative to the repository, read absolute
    assert Path(external["source"].iloc[0]).is_file()
    assert rundir.prediction_features_path(DEMO, EXTERNAL).exists()  # the feature-shift check has both sides
