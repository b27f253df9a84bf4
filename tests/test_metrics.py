"""The threshold engine against scikit-learn as the oracle, on random and heavily tied scores."""
import numpy as np
import pytest
from sklearn import metrics as skm

from core import metrics
from core.metrics import Curve


def cases():
    rng = np.random.default_rng(42)
    for n, decimals, prevalence in ((200, None, 0.3), (500, 1, 0.2), (1000, 2, 0.5), (50, 0, 0.4)):
        y = rng.random(n) < prevalence
        scores = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
        if decimals is not None:
            scores = np.round(scores, decimals)  # ties, including whole tied blocks at 0 and 1
        yield y, scores


CASES = list(cases())


@pytest.mark.parametrize("y, scores", CASES)
def test_roc_and_pr_curves_equal_sklearn(y, scores):
    curve = Curve.from_scores(y, scores)
    for ours, theirs in zip(curve.roc(), skm.roc_curve(y, scores)):
        np.testing.assert_allclose(ours, theirs)
    for ours, theirs in zip(curve.roc(drop_intermediate=False), skm.roc_curve(y, scores, drop_intermediate=False)):
        np.testing.assert_allclose(ours, theirs)
    for ours, theirs in zip(curve.pr(), skm.precision_recall_curve(y, scores)):
        np.testing.assert_allclose(ours, theirs)
    assert curve.roc_auc() == pytest.approx(skm.roc_auc_score(y, scores))
    assert curve.average_precision() == pytest.approx(skm.average_precision_score(y, scores))


@pytest.mark.parametrize("y, scores", CASES)
def test_confusion_counts_equal_sklearn_at_every_kind_of_threshold(y, scores):
    curve = Curve.from_scores(y, scores)
    distinct = np.unique(scores)
    probes = np.r_[distinct, (distinct[:-1] + distinct[1:]) / 2, scores.min() - 1, scores.max() + 1, 0.5]
    batch = curve.counts(probes)
    for i, t in enumerate(probes):
        expected = skm.confusion_matrix(y, scores >= t, labels=[False, True])
        one = curve.counts(t)
        assert metrics.confusion_matrix(one).tolist() == expected.tolist()
        assert [int(batch[k][i]) for k in metrics.COUNT_NAMES] == [int(one[k]) for k in metrics.COUNT_NAMES]


@pytest.mark.parametrize("y, scores", CASES[:3])
def test_rates_equal_sklearn(y, scores):
    curve = Curve.from_scores(y, scores)
    t = float(np.median(scores))
    predicted = scores >= t
    r = metrics.rates(curve.counts(t))
    assert r["sensitivity"] == pytest.approx(skm.recall_score(y, predicted))
    assert r["specificity"] == pytest.approx(skm.recall_score(~y, ~predicted))
    assert r["ppv"] == pytest.approx(skm.precision_score(y, predicted))
    assert r["npv"] == pytest.approx(skm.precision_score(~y, ~predicted))
    assert r["f1"] == pytest.approx(skm.f1_score(y, predicted))
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert r["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, predicted))
    assert r["mcc"] == pytest.approx(skm.matthews_corrcoef(y, predicted))


def test_undefined_rates_are_nan_not_errors():
    r = metrics.rates({"tp": 0, "fp": 0, "fn": 5, "tn": 5})
    assert np.isnan(r["ppv"]) and r["sensitivity"] == 0 and r["specificity"] == 1


@pytest.mark.parametrize("y, scores", CASES[:3])
def test_suggested_thresholds(y, scores):
    curve = Curve.from_scores(y, scores)
    fpr, tpr, thresholds = skm.roc_curve(y, scores, drop_intermediate=False)
    j = tpr - fpr
    assert metrics.rates(curve.counts(metrics.youden_threshold(curve)))["youden_j"] == pytest.approx(j.max())
    f1_best = max(skm.f1_score(y, scores >= t) for t in np.unique(scores))
    assert metrics.rates(curve.counts(metrics.best_f1_threshold(curve)))["f1"] == pytest.approx(f1_best)
    t90 = metrics.threshold_for_sensitivity(curve, 0.9)
    assert skm.recall_score(y, scores >= t90) >= 0.9
    above = np.unique(scores)[np.unique(scores) > t90]
    assert all(skm.recall_score(y, scores >= t) < 0.9 for t in above)  # it is the highest such
    t_spec = metrics.threshold_for_specificity(curve, 0.8)
    assert skm.recall_score(~y, scores < t_spec) >= 0.8


def test_least_cost_threshold_moves_down_when_misses_cost_more():
    y, scores = CASES[0]
    curve = Curve.from_scores(y, scores)
    cheap_misses = metrics.least_cost_threshold(curve, cost_fn=1, cost_fp=1, prevalence=0.3)
    dear_misses = metrics.least_cost_threshold(curve, cost_fn=20, cost_fp=1, prevalence=0.3)
    assert dear_misses < cheap_misses
    sens = metrics.rates(curve.counts(dear_misses))["sensitivity"]
    assert sens >= metrics.rates(curve.counts(cheap_misses))["sensitivity"]


def test_intervals_contain_the_estimate_and_shrink_with_n():
    small = {"tp": 40, "fp": 10, "fn": 10, "tn": 40}
    large = {k: v * 100 for k, v in small.items()}
    ci_small, ci_large = metrics.intervals(small), metrics.intervals(large)
    estimate = metrics.rates(small)
    assert set(ci_small) == set(estimate)  # every rate has its interval
    for name, (low, high) in ci_small.items():
        assert low < estimate[name] < high, name
        assert ci_large[name][1] - ci_large[name][0] < (high - low) / 5, name


def test_proportion_intervals_are_scipys_wilson_intervals():
    from scipy.stats import binomtest

    counts = {"tp": 17, "fp": 0, "fn": 3, "tn": 0}  # no negatives: specificity has no trials
    found = metrics.intervals(counts)
    for name, k, n in (("sensitivity", 17, 20), ("ppv", 17, 17), ("npv", 0, 3), ("accuracy", 17, 20)):
        ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert found[name] == pytest.approx((ci.low, ci.high), abs=1e-12), name
    assert "specificity" not in found and "balanced_accuracy" not in found


def test_a_perfect_score_keeps_an_honest_interval():
    """60 of 60 found: the percentile bootstrap says (1, 1); the Wilson interval says how sure 60 make us."""
    found = metrics.intervals({"tp": 60, "fp": 0, "fn": 0, "tn": 40})
    assert 0.93 < found["sensitivity"][0] < 0.95 and found["sensitivity"][1] == pytest.approx(1)
    assert found["f1"][0] < 1 and found["youden_j"][0] < 1


def test_f1_and_mcc_intervals_agree_with_resampling_the_items():
    """The count-based intervals against the textbook bootstrap: resample the items, recount, recompute."""
    rng = np.random.default_rng(1)
    y = rng.random(400) < 0.4
    predicted = np.where(rng.random(400) < 0.8, y, ~y)
    counts = {"tp": int((y & predicted).sum()), "fp": int((~y & predicted).sum()),
              "fn": int((y & ~predicted).sum()), "tn": int((~y & ~predicted).sum())}
    draws = rng.integers(0, 400, (4000, 400))
    f1 = [skm.f1_score(y[d], predicted[d]) for d in draws[:1000]]
    mcc = [skm.matthews_corrcoef(y[d], predicted[d]) for d in draws[:1000]]
    found = metrics.intervals(counts)
    for name, values in (("f1", f1), ("mcc", mcc)):
        assert found[name] == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])), abs=0.015), name


def test_counts_at_one_threshold_does_not_copy_the_scores():
    """A slider move must cost a binary search, not an O(n) pass over a million scores."""
    import tracemalloc

    rng = np.random.default_rng(0)
    n = 1_000_000
    curve = Curve.from_scores(rng.random(n) < 0.3, np.round(rng.random(n), 3))
    curve.counts(0.5)  # the first call may prepare the search array once
    tracemalloc.start()
    for t in (0.1, 0.5, 0.9):
        curve.counts(t)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < n  # a copy of the scores would be 8 * n bytes
