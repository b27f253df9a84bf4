"""External validation of a run trained on two glomeruli centres: the set beside the test split,
the breakdown by centre, the score and feature shift, and the command line's same numbers."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from core import embeddings, evaluation, external, prediction_jobs, rundir
from core.sources import SourceSpec
from core.workspace import DEMO_DIR
from tests.conftest import EXTERNAL_CENTRE, TRAIN_CENTRES, train_centre_run

CENTRE = f"{rundir.SOURCE_COLUMN_PREFIX}center"


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    """The two-centre run with a saved, temperature-scaled operating point and two prediction sets:
    every centre (labelled) and the test split's own images again."""
    home = tmp_path_factory.mktemp("external-home")
    run_dir, every = train_centre_run(home, home / "csv")
    evaluation.save_operating_point(run_dir, "GS", 0.4, "val", "temperature-scaled", temperature=1.7, who="admin")
    embeddings.load_features(run_dir)  # stored, so each job stores its set's features too
    test_items = rundir.read_items(run_dir)
    again = home / "csv" / "test-again.csv"
    test_items[test_items["split"] == "test"][["path", "label"]].rename(columns={"label": "class"}).to_csv(
        again, index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LUMEN_HOME", str(home))
        for name, source in (("every-centre", every), ("test-again", again)):
            prediction_jobs.launch(run_dir, SourceSpec(path=str(source), kind="csv"), name, "admin")
            assert prediction_jobs.wait(run_dir, name, timeout=300)["state"] == "finished"
    return run_dir, every


def test_the_comparison_is_what_core_evaluate_reports_for_the_set_and_the_test_split(validated, cli):
    run_dir, _ = validated
    reports = external.comparison(run_dir, "every-centre")
    for shown, args in ((reports["every-centre"], ["--set", "every-centre"]), (reports["test split"], [])):
        printed = cli("evaluate", run_dir, *args, "--json")
        assert printed.returncode == 0, printed.stderr
        report = json.loads(printed.stdout)
        for key in ("n", "positives", "threshold", "confusion_matrix", "metrics", "roc_auc", "average_precision"):
            assert shown[key] == report[key], key
        assert {k: list(v) for k, v in shown["intervals_95"].items()} == report["intervals_95"]


def test_breakdown_by_centre_gives_each_centres_own_figures(validated):
    run_dir, every = validated
    table = external.breakdown(run_dir, "every-centre", CENTRE)
    assert list(table["center"]) == sorted([*TRAIN_CENTRES, EXTERNAL_CENTRE])
    stored = rundir.read_prediction_set(run_dir, "every-centre")
    probs = evaluation.apply_temperature(stored[["prob_GS", "prob_nonGS"]].to_numpy(), 1.7)[:, 0]
    source = pd.read_csv(every)
    assert table["n"].tolist() == source.groupby("center").size().sort_index().tolist()
    for row in table.itertuples(index=False):
        mine = (stored[CENTRE] == row.center).to_numpy()
        truth = stored["label"].to_numpy()[mine] == "GS"
        assert row.positives == truth.sum()
        assert row._3 == pytest.approx(roc_auc_score(truth, probs[mine]))  # ROC AUC
        decided = probs[mine] >= 0.4
        assert row.sensitivity == pytest.approx(decided[truth].mean())
        assert row.specificity == pytest.approx((~decided[~truth]).mean())
        low, high = (float(x) for x in row._4.split("–"))  # AUC 95% CI
        assert low <= row._3 <= high


def test_only_columns_that_group_both_classes_are_offered(validated):
    run_dir, _ = validated
    labelled = evaluation.labelled_rows(rundir.read_prediction_set(run_dir, "every-centre"))
    columns = external.breakdown_columns(labelled)
    assert CENTRE in columns
    assert f"{rundir.SOURCE_COLUMN_PREFIX}class" not in columns  # it restates the label
    assert f"{rundir.SOURCE_COLUMN_PREFIX}path" not in columns
    assert external.column_title(CENTRE) == "center"


def test_auc_interval_resamples_each_class_and_brackets_the_auc(validated):
    run_dir, _ = validated
    scored = external.scored(run_dir, external.set_rows(run_dir, "every-centre"))
    auc = roc_auc_score(scored.is_positive, scored.scores)
    pos, neg = scored.scores[scored.is_positive], scored.scores[~scored.is_positive]
    assert float(external._auc(pos, neg)) == pytest.approx(auc)
    low, high = external.auc_interval(scored.is_positive, scored.scores)
    assert low < auc < high
    assert external.auc_interval(scored.is_positive[:1], scored.scores[:1]) == (None, None)


def test_the_same_images_show_no_shift_and_another_domain_does(validated, lumen_home, tmp_path):
    run_dir, _ = validated
    same = external.score_shift(run_dir, "test-again")
    # the same files give the same scores again (to float rounding), so nothing is flagged
    assert np.sort(same.set_scores) == pytest.approx(np.sort(same.test_scores), abs=1e-4)
    assert not same.shifted and same.pvalue > 0.5
    copy = lumen_home / "runs" / "shifted"
    shutil.copytree(run_dir, copy)
    cells = SourceSpec(path=str(DEMO_DIR / "bccd" / "labels.csv"), kind="csv", label_column="")
    prediction_jobs.launch(copy, cells, "blood-cells", "admin")
    assert prediction_jobs.wait(copy, "blood-cells", timeout=300)["state"] == "finished"
    other = external.score_shift(copy, "blood-cells")
    assert other.shifted
    assert other.statistic == pytest.approx(stats.ks_2samp(other.test_scores, other.set_scores).statistic)
    # features: blood cells are told from glomeruli at a glance, the test images not from themselves
    cells_features = external.run_feature_shift(copy, "blood-cells")
    assert cells_features.shifted and cells_features.domain_auc > 0.9
    assert cells_features.set_distance.mean() > cells_features.test_distance.mean()
    again = external.run_feature_shift(run_dir, "test-again")
    assert not again.shifted
    stored = np.load(rundir.prediction_features_path(run_dir, "test-again"))
    own = embeddings.load_features(run_dir).attrs["features"]
    assert stored.shape == (len(rundir.read_prediction_set(run_dir, "test-again")), own.shape[1])
