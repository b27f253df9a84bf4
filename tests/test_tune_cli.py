"""`python -m core evaluate --tune`: choose the threshold on validation, report on test, save it as the
Threshold page does, write ROC points; on a real tiny run, with scikit-learn as the oracle."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, roc_curve

from core import evaluation, rundir
from core.registry import DEMO_DATASETS
from tests.conftest import train_tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    home = tmp_path_factory.mktemp("tune-home")
    return train_tiny_run(home, "tuned", next(iter(DEMO_DATASETS.values())), epochs=2,
                          split={"ratios": [0.5, 0.25, 0.25]})


def _split(run_dir, split):
    rows = rundir.read_predictions(run_dir).query("split == @split")
    return (rows["label"] == "GS").to_numpy(), rows["prob_GS"].to_numpy()


def test_youden_on_val_is_reported_on_test(run_dir, cli):
    result = cli("evaluate", run_dir, "--tune", "youden", "--on", "val", "--split", "test", "--positive", "GS",
                 "--json")
    assert result.returncode == 0, result.stderr
    tuned = json.loads(result.stdout)
    y_val, s_val = _split(run_dir, "val")
    fpr, tpr, _ = roc_curve(y_val, s_val)
    threshold = tuned["threshold"]
    called = s_val >= threshold
    assert called[y_val].mean() - called[~y_val].mean() == pytest.approx((tpr - fpr).max())  # largest J
    assert tuned["tuned_on"] == "val" and tuned["tuning"]["split"] == "val"
    assert tuned["report"]["threshold_source"] == "youden on val"
    y_test, s_test = _split(run_dir, "test")
    assert tuned["report"]["split"] == "test" and tuned["report"]["threshold"] == threshold
    assert tuned["report"]["confusion_matrix"] == confusion_matrix(y_test, s_test >= threshold,
                                                                   labels=[False, True]).tolist()
    assert not evaluation.load_operating_point(run_dir)  # nothing saved without --save


def test_sensitivity_target_is_the_highest_threshold_that_reaches_it(run_dir, cli):
    result = cli("evaluate", run_dir, "--tune", "sensitivity=0.9", "--positive", "GS", "--json")
    assert result.returncode == 0, result.stderr
    threshold = json.loads(result.stdout)["threshold"]
    y, s = _split(run_dir, "val")
    assert (s[y] >= threshold).mean() >= 0.9
    higher = np.unique(s[s > threshold])
    assert len(higher) == 0 or (s[y] >= higher[0]).mean() < 0.9


def test_save_writes_the_pages_operating_point_and_roc_points(run_dir, tmp_path, cli):
    roc_file = tmp_path / "roc.csv"
    result = cli("evaluate", run_dir, "--tune", "f1", "--positive", "GS", "--save", "--roc", roc_file)
    assert result.returncode == 0, result.stderr
    assert "f1 on val: threshold" in result.stdout and "saved with the run" in result.stdout
    saved = evaluation.load_operating_point(run_dir)
    y_val, s_val = _split(run_dir, "val")
    f1 = [2 * (y_val & (s_val >= t)).sum() / (y_val.sum() + (s_val >= t).sum()) for t in np.unique(s_val)]
    assert saved["positive_class"] == "GS" and saved["tuned_on"] == "val"
    assert (saved["method"], saved["temperature"]) == ("raw scores", 1.0)  # what the page's Save writes
    assert 2 * (y_val & (s_val >= saved["threshold"])).sum() / (y_val.sum() + (s_val >= saved["threshold"]).sum()) \
        == pytest.approx(max(f1))
    later = cli("evaluate", run_dir, "--json")  # the saved point is the run's decision from now on
    assert json.loads(later.stdout)["threshold"] == saved["threshold"]
    y_test, s_test = _split(run_dir, "test")
    fpr, tpr, thresholds = roc_curve(y_test, s_test)
    written = pd.read_csv(roc_file)
    assert list(written.columns) == ["fpr", "tpr", "threshold"]
    np.testing.assert_allclose(written[["fpr", "tpr", "threshold"]].to_numpy(), np.c_[fpr, tpr, thresholds])
    rundir.operating_point_path(run_dir).unlink()


@pytest.mark.parametrize("args, message", [
    (["--tune", "sensitivity=1.5"], "Unknown tuning rule 'sensitivity=1.5'"),
    (["--tune", "accuracy"], "Unknown tuning rule 'accuracy'"),
    (["--tune", "youden", "--on", "holdout"], "no 'holdout' split to tune on"),
    (["--tune", "youden", "--threshold", "0.3"], "leave out --threshold"),
    (["--save"], "add --tune"),
])
def test_bad_tuning_requests_exit_2_with_a_message(run_dir, cli, args, message):
    result = cli("evaluate", run_dir, *args)
    assert result.returncode == 2 and message in result.stderr
    assert not rundir.operating_point_path(run_dir).exists()
