"""Per-move cost of the threshold page at 1e6 predictions, against scikit-learn and a bare search.

Times core.evaluation.summary, the function the page calls for each split on every slider move,
so the bench follows the page. Interleaved rounds, median reported.
"""
from __future__ import annotations

import time

import numpy as np
from sklearn.metrics import confusion_matrix

from core import evaluation, metrics

N, ROUNDS, MOVES = 1_000_000, 5, 20


def _ms(fn, thresholds) -> float:
    start = time.perf_counter()
    for t in thresholds:
        fn(t)
    return 1000 * (time.perf_counter() - start) / len(thresholds)


def main() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(N) < 0.3
    scores = np.round(np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1), 4)
    curve = metrics.Curve.from_scores(y, scores)
    negated = np.sort(-scores)
    sides = {
        "page": lambda t: evaluation.summary(curve, t),
        "sklearn": lambda t: confusion_matrix(y, scores >= t, labels=[False, True]),
        "bare_search": lambda t: np.searchsorted(negated, -t, side="right"),
    }
    sides["page"](0.5)  # the Curve's once-per-run steps, as the page's cached Curve has them
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(ROUNDS):
        thresholds = rng.random(MOVES)
        for name, fn in sides.items():  # interleaved: each round runs every side
            times[name].append(_ms(fn, thresholds))
    med = {name: float(np.median(v)) for name, v in times.items()}
    print(f"predictions {N:,}, rounds {ROUNDS}, moves per round {MOVES}")
    print(f"sklearn_ms_per_move {med['sklearn']:.3f}")
    print(f"bare_search_ms_per_move {med['bare_search']:.4f}")
    print(f"page_ms_per_move {med['page']:.3f}")
    print(f"ratio {med['sklearn'] / med['page']:.1f}")


if __name__ == "__main__":
    main()
