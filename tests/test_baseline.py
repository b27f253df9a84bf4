"""`python -m core baseline RUN`: a pixel logistic regression on the run's own items and splits, its C
chosen on validation, written beside the run as a run-like folder that `compare` can test against."""
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core import rundir
from core.registry import DEMO_DATASETS
from tests.conftest import train_tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    home = tmp_path_factory.mktemp("baseline-home")
    # Not grouped: the demo's 17 slides leave a grouped test split of 4, on which even the CNN ranks backwards.
    return train_tiny_run(home, "cnn", next(iter(DEMO_DATASETS.values())), epochs=1,
                          split={"ratios": [0.6, 0.2, 0.2], "grouped": False})


def test_baseline_chooses_c_on_validation_and_reports_on_test(run_dir, cli):
    result = cli("baseline", run_dir, "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record == json.loads(rundir.baseline_record_path(run_dir).read_text())
    mine = rundir.read_predictions(rundir.baseline_dir(run_dir)).set_index("item_id")
    theirs = rundir.read_predictions(run_dir).set_index("item_id")
    assert mine[["split", "label"]].sort_index().equals(theirs[["split", "label"]].sort_index())  # same items
    assert len(record["grid"]) > 3 and record["C"] == max(record["grid"], key=lambda r: r["val AUC"])["C"]
    val, test = (mine[mine["split"] == s] for s in ("val", "test"))
    assert record["val AUC"] == pytest.approx(roc_auc_score(val["label"] == "GS", val["prob_GS"]))
    assert record["baseline"]["test AUC"] == pytest.approx(roc_auc_score(test["label"] == "GS", test["prob_GS"]))
    assert record["baseline"]["test AUC"] > 0.7  # pixels tell sclerosed glomeruli apart: a baseline, not chance
    assert np.allclose(mine.filter(like="prob_").sum(axis=1), 1)


def test_baseline_prints_its_figures_beside_the_runs_and_compares(run_dir, cli):
    result = cli("baseline", run_dir)
    assert result.returncode == 0, result.stderr
    assert "C on validation" in result.stdout and "DeLong p" in result.stdout
    compared = cli("compare", run_dir, rundir.baseline_dir(run_dir), "--json")
    assert compared.returncode == 0, compared.stderr
    assert json.loads(compared.stdout)["runs"]["b"] == "baseline"


def test_baseline_of_an_unfinished_run_says_so(tmp_path, cli):
    result = cli("baseline", tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error:")
