"""A click's nearest neighbours on the Embeddings and Review pages, at 100k points: Lumen's
NeighbourIndex (unit vectors and id lookup prepared once, then one product and a partial sort per
click) against the way it was done before, per click: normalise every vector, find the row by
comparing every id, sort every distance. Same process, same thread count, interleaved, the median
of the rounds. Prints `ratio <naive per click / index per click>` last.

    python -m bench.neighbours [N] [DIM]        # default: 100000 points of 256 dimensions
"""
from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import pandas as pd

from core.embeddings import NeighbourIndex

ROUNDS = 7
CLICKS = 20


def naive_nearest(frame: pd.DataFrame, item_id: str, k: int = 8) -> pd.DataFrame:
    """The previous per-click computation, kept here as the reference."""
    feats = frame.attrs["features"]
    unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    index = int(np.flatnonzero(frame["item_id"].to_numpy() == item_id)[0])
    distance = 1 - unit @ unit[index]
    order = [i for i in np.argsort(distance, kind="stable") if i != index][:k]
    return frame.iloc[order].assign(distance=distance[order]).reset_index(drop=True)


def per_click_ms(nearest, ids: list[str]) -> float:
    start = time.perf_counter()
    for item_id in ids:
        nearest(item_id)
    return (time.perf_counter() - start) / len(ids) * 1e3


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    dim = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"item_id": [f"item-{i:06d}" for i in range(n)], "split": "train"})
    frame.attrs["features"] = rng.normal(size=(n, dim)).astype(np.float32)
    start = time.perf_counter()
    index = NeighbourIndex(frame)
    print(f"{n:,} points x {dim}: index built once in {(time.perf_counter() - start) * 1e3:.0f} ms")
    ids = list(rng.choice(frame["item_id"].to_numpy(), CLICKS))
    same = index.nearest(ids[0])["item_id"].tolist() == naive_nearest(frame, ids[0])["item_id"].tolist()
    print(f"same neighbours as the reference: {same}")
    lumen, naive = [], []
    for _ in range(ROUNDS):
        lumen.append(per_click_ms(index.nearest, ids))
        naive.append(per_click_ms(lambda i: naive_nearest(frame, i), ids))
    lumen_ms, naive_ms = statistics.median(lumen), statistics.median(naive)
    print(f"index_ms_per_click {lumen_ms:.2f}")
    print(f"naive_ms_per_click {naive_ms:.2f}")
    print(f"ratio {naive_ms / lumen_ms:.1f}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
