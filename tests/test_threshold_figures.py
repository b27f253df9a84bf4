"""The threshold page's figures, moved in place on a slider move, are the figures built afresh."""
import json

import numpy as np

from core.metrics import Curve, confusion_matrix, rates
from ui import threshold_figures as figs


def _panels_and_marks(threshold):
    rng = np.random.default_rng(0)  # the same scores for every threshold
    is_pos = rng.random(5_000) < 0.3
    scores = np.clip(rng.normal(np.where(is_pos, 0.7, 0.35), 0.2), 0, 1)
    curve = Curve.from_scores(is_pos, scores)
    fpr, tpr, _ = curve.roc()
    precision, recall, _ = curve.pr()
    shapes = {"roc": figs.thin(fpr, tpr), "pr": figs.thin(precision, recall),
              "hist": figs.histograms(is_pos, scores)}
    panels = figs.Panels(shapes, ["benign", "malignant"], "malignant", 0.81, 0.66, float(is_pos.mean()))
    counts = curve.counts(threshold)
    r = rates(counts)
    marks = figs.Marks(confusion_matrix(counts), (1 - float(r["specificity"]), float(r["sensitivity"])),
                       (float(r["sensitivity"]), float(np.nan_to_num(r["ppv"], nan=1.0))), threshold)
    return panels, marks


def test_a_moved_figure_is_the_figure_built_at_the_new_threshold():
    panels, first = _panels_and_marks(0.5)
    _, second = _panels_and_marks(0.62)
    moving = figs.MovingFigures(panels, first)
    before = json.loads(moving.curves.to_json())
    moving.move(second)
    fresh = figs.MovingFigures(panels, second)
    assert json.loads(moving.matrix.to_json()) == json.loads(fresh.matrix.to_json())
    assert json.loads(moving.curves.to_json()) == json.loads(fresh.curves.to_json())
    assert json.loads(moving.curves.to_json()) != before  # the markers and the line did move
    assert moving.curves.layout.shapes[0].x0 == 0.62
