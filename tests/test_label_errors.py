"""Confident learning (core.label_errors) on a constructed probability matrix whose flipped labels are
known: the flips must come first, ahead of items that are merely hard."""
import numpy as np
import pandas as pd
import pytest

from core import label_errors

CLASSES = ["a", "b", "c"]


def _constructed(seed: int = 0):
    """300 items, 100 per class. Probabilities point at the true class (some items hard: their true
    class only just ahead); 15 given labels are flipped to another class."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(3), 100)
    probs = rng.dirichlet([1, 1, 1], size=300) * 0.3
    probs[np.arange(300), truth] += 0.7
    hard = rng.choice(300, 40, replace=False)
    probs[hard] = rng.dirichlet([4, 4, 4], size=40) * 0.2 + 0.8 / 3
    probs[hard, truth[hard]] += 0.1
    probs /= probs.sum(axis=1, keepdims=True)
    flipped = rng.choice(np.setdiff1d(np.arange(300), hard), 15, replace=False)
    given = truth.copy()
    given[flipped] = (truth[flipped] + rng.integers(1, 3, 15)) % 3
    return given, probs, set(flipped.tolist())


def test_confident_joint_rows_sum_to_the_class_counts():
    given, probs, flipped = _constructed()
    joint = label_errors.confident_joint(given, probs)
    np.testing.assert_allclose(joint.sum(axis=1), np.bincount(given, minlength=3))
    assert np.trace(joint) == pytest.approx(300 - len(flipped), abs=3)  # off the diagonal: about the flips


def test_the_flipped_labels_are_found_and_ranked_first():
    given, probs, flipped = _constructed()
    issues = label_errors.find_label_issues(given, probs)
    assert len(set(issues.tolist()) & flipped) >= 14 and len(issues) <= 18
    ranked = label_errors.ranking(_table(given, probs)).sort_values("rank")
    top = {int(item[1:]) for item in ranked["item_id"].head(len(flipped))}
    assert len(top & flipped) / len(flipped) >= 0.9  # random order would find about 5%
    assert ranked["issue"].head(len(issues)).all() and not ranked["issue"].iloc[len(issues):].any()


def _table(given, probs) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"i{i:03d}" for i in range(len(given))], "label": np.array(CLASSES)[given],
                         **{f"prob_{c}": probs[:, k] for k, c in enumerate(CLASSES)}})


def test_repeats_of_an_item_are_averaged():
    given, first, _ = _constructed(1)
    _, second, _ = _constructed(2)
    both = pd.concat([_table(given, first), _table(given, second)], ignore_index=True)
    pd.testing.assert_frame_equal(label_errors.ranking(both), label_errors.ranking(_table(given, (first + second) / 2)))
