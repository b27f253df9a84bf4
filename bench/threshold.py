"""Per slider move at N = 10^6 scores: Lumen's threshold engine vs recomputing with scikit-learn.

Lumen sorts once (reported separately) and then answers each threshold by binary search
(confusion counts, every rate, bootstrap intervals). The reference recomputes what a notebook
does on every move: roc_curve + confusion_matrix. Prints both and, last, `ratio <sklearn / Lumen>`.

    python bench/threshold.py [N] [MOVES]
"""
from __future__ import annotations

import sys
import time

import numpy as np
from sklearn.metrics import confusion_matrix, roc_curve

from core import metrics


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    moves = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    rng = np.random.default_rng(0)
    labels = rng.random(n) < 0.2
    scores = np.round(np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1), 4)  # ties, as real outputs have
    thresholds = rng.random(moves)

    start = time.perf_counter()
    curve = metrics.Curve.from_scores(labels, scores)
    build = time.perf_counter() - start

    start = time.perf_counter()
    for t in thresholds:
        counts = curve.counts(t)
        metrics.rates(counts)
        metrics.bootstrap_intervals(counts, n_boot=2000)
    lumen = (time.perf_counter() - start) / moves

    start = time.perf_counter()
    for t in thresholds[: max(3, moves // 5)]:
        roc_curve(labels, scores)
        confusion_matrix(labels, scores >= t)
    sklearn = (time.perf_counter() - start) / max(3, moves // 5)

    print(f"N = {n:,} scores, {moves} slider moves")
    print(f"Lumen: sort once                 {build * 1000:10.1f} ms")
    print(f"Lumen: per move (incl. 2000 bootstrap draws) {lumen * 1000:8.3f} ms")
    print(f"scikit-learn: per move (roc_curve + confusion_matrix) {sklearn * 1000:8.1f} ms")
    print(f"ratio {sklearn / lumen:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
