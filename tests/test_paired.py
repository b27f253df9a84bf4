"""Paired comparison of two runs (core.paired, `python -m core compare`): DeLong against its defining
O(m x n) formula and against a bootstrap on real predictions, McNemar against the counts by hand."""
import json
import shutil

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from core import evaluation, paired, rundir
from core.registry import DEMO_DATASETS
from tests.conftest import train_tiny_run

GLOMERULI = next(iter(DEMO_DATASETS.values()))
WIDE_TEST = {"ratios": [0.5, 0.2, 0.3]}  # 90 test items of the 300 demo glomeruli: enough for the bootstrap


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """Two real runs on the same split of the demo glomeruli: one epoch and three."""
    home = tmp_path_factory.mktemp("paired-home")
    train_tiny_run(home, "one-epoch", GLOMERULI, epochs=1, split=WIDE_TEST)
    train_tiny_run(home, "three-epochs", GLOMERULI, epochs=3, split=WIDE_TEST)
    return home


def _delong_by_definition(y, a, b):
    """DeLong, DeLong and Clarke-Pearson (1988) as written: every positive against every negative."""
    def placements(s):
        pos, neg = s[y][:, None], s[~y][None, :]
        psi = (pos > neg) + 0.5 * (pos == neg)
        return psi.mean(axis=1), psi.mean(axis=0)
    (pa, na), (pb, nb) = placements(a), placements(b)
    m, n = y.sum(), (~y).sum()
    s10, s01 = np.cov(np.vstack([pa, pb])), np.cov(np.vstack([na, nb]))
    cov = s10 / m + s01 / n
    diff = pa.mean() - pb.mean()
    z = diff / np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    return pa.mean(), pb.mean(), z, 2 * stats.norm.sf(abs(z))


def test_fast_delong_is_the_defining_formula_with_ties():
    rng = np.random.default_rng(3)
    y = rng.random(400) < 0.3
    a = np.round(y + rng.normal(size=400), 1)  # rounded: many ties, within and across the classes
    b = np.round(0.5 * y + 0.5 * a + rng.normal(size=400), 1)
    result = paired.delong(y, a, b)
    auc_a, auc_b, z, p = _delong_by_definition(y, a, b)
    assert result["auc_a"] == pytest.approx(auc_a) == pytest.approx(roc_auc_score(y, a))
    assert result["auc_b"] == pytest.approx(auc_b) == pytest.approx(roc_auc_score(y, b))
    assert result["z"] == pytest.approx(z) and result["p_value"] == pytest.approx(p)
    low, high = result["ci_95"]
    assert low < result["difference"] < high and (high - low) == pytest.approx(2 * 1.959964 * result["se"])


def test_delong_needs_both_classes():
    with pytest.raises(ValueError, match="two positives and two negatives"):
        paired.delong(np.array([True, False, False]), np.arange(3.0), np.arange(3.0))
    same = paired.delong(np.array([1, 1, 0, 0], bool), np.arange(4.0), np.arange(4.0))
    assert same["difference"] == 0 and same["p_value"] == 1.0


def test_delong_interval_agrees_with_a_bootstrap_of_real_runs(home):
    a, b = (rundir.read_predictions(home / "runs" / name).query("split == 'test'").set_index("item_id")
            for name in ("one-epoch", "three-epochs"))
    b = b.loc[a.index]
    y = (a["label"] == "GS").to_numpy()
    sa, sb = a["prob_GS"].to_numpy(), b["prob_GS"].to_numpy()
    result = paired.delong(y, sa, sb)
    rng = np.random.default_rng(0)
    differences = []
    for _ in range(2000):
        draw = rng.integers(0, len(y), len(y))
        if 0 < y[draw].sum() < len(y):
            differences.append(roc_auc_score(y[draw], sa[draw]) - roc_auc_score(y[draw], sb[draw]))
    boot_se = float(np.std(differences, ddof=1))
    assert result["se"] == pytest.approx(boot_se, rel=0.25)


def test_mcnemar_counts_the_discordant_pairs():
    a = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 0], bool)
    b = np.array([1, 0, 0, 0, 0, 0, 1, 0, 1, 0], bool)
    result = paired.mcnemar(a, b)
    assert (result["only_a_correct"], result["only_b_correct"], result["both_correct"], result["both_wrong"]) == \
        (5, 1, 2, 2)
    assert result["p_value"] == pytest.approx(2 * (1 + 6 + 0) / 2 ** 6)  # two-sided exact: P(X <= 1 or X >= 5)


def test_cli_compare_matches_the_tests_on_the_runs_predictions(home, monkeypatch, cli):
    monkeypatch.setenv("LUMEN_HOME", str(home))
    first, second = home / "runs" / "one-epoch", home / "runs" / "three-epochs"
    evaluation.save_operating_point(second, "GS", 0.3, "val", "raw scores", who="admin")
    result = cli("compare", first, second, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    a, b = (rundir.read_predictions(d).query("split == 'test'").set_index("item_id").sort_index()
            for d in (first, second))
    y = (a["label"] == "GS").to_numpy()
    assert report["n"] == len(a) and report["positive_class"] == "GS"
    assert report["delong"]["auc_a"] == pytest.approx(roc_auc_score(y, a["prob_GS"]))
    assert report["delong"]["auc_b"] == pytest.approx(roc_auc_score(y, b["prob_GS"]))
    assert report["thresholds"] == {"a": 0.5, "b": 0.3}  # no saved point: the rarer class at 0.5
    right_a, right_b = (a["prob_GS"] >= 0.5).to_numpy() == y, (b["prob_GS"] >= 0.3).to_numpy() == y
    assert report["mcnemar"]["only_a_correct"] == int((right_a & ~right_b).sum())
    assert report["mcnemar"]["only_b_correct"] == int((~right_a & right_b).sum())
    text = cli("compare", first, second)
    assert "DeLong z" in text.stdout and "McNemar exact p" in text.stdout
    table = paired.table(report)
    assert list(table["test"]) == ["DeLong (ROC AUC)", "McNemar (accuracy at the saved thresholds)"]


def test_cli_compare_refuses_runs_on_different_items(home, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("LUMEN_HOME", str(home))
    fewer = tmp_path / "fewer"
    shutil.copytree(home / "runs" / "three-epochs", fewer)
    predictions = rundir.read_predictions(fewer)
    test_rows = predictions.index[predictions["split"] == "test"]
    predictions.drop(index=test_rows[:3]).to_parquet(rundir.predictions_path(fewer), index=False)
    result = cli("compare", home / "runs" / "one-epoch", fewer)
    assert result.returncode == 2 and "not tested on the same items" in result.stderr
    assert f"{len(test_rows) - 3} are in both" in result.stderr
    relabelled, row = predictions.copy(), test_rows[0]
    relabelled.loc[row, "label"] = "GS" if relabelled.loc[row, "label"] == "nonGS" else "nonGS"
    relabelled.to_parquet(rundir.predictions_path(fewer), index=False)
    result = cli("compare", home / "runs" / "one-epoch", fewer)
    assert result.returncode == 2 and "different labels" in result.stderr
    missing = cli("compare", home / "runs" / "one-epoch", fewer, "--split", "holdout")
    assert missing.returncode == 2 and "no 'holdout' split" in missing.stderr


def test_train_page_shows_the_paired_test_of_two_chosen_runs(home, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    monkeypatch.setenv("LUMEN_HOME", str(home))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/train.py").run()
    at.multiselect(key="train_compare").select("one-epoch").select("three-epochs").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = next(df.value for df in at.dataframe if "p-value" in df.value.columns)
    expected = paired.compare_runs(home / "runs" / "one-epoch", home / "runs" / "three-epochs")
    assert shown.loc[0, "p-value"] == pytest.approx(expected["delong"]["p_value"])
    assert shown.loc[1, "p-value"] == pytest.approx(expected["mcnemar"]["p_value"])
    assert any(f"same {expected['n']} test items" in m.value for m in at.markdown)
