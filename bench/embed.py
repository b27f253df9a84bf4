"""Embedding costs at 5k and 20k points: penultimate features, then PCA, UMAP and t-SNE (openTSNE,
which Lumen uses, and scikit-learn's for comparison). Figures only.

Features: a simple CNN and a ResNet18 (random weights; speed does not depend on them) over 64 px
images. Reducers: the demo run's real 256-d features, repeated with small noise to N points, so
the layouts see clustered data like a trained model's. UMAP's one-time numba compile is timed
separately (the app does it in a background thread at start).

    python bench/embed.py [N ...]        # default: 5000 20000
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from core import embeddings, rundir
from core.models import build_model, features

ROOT = Path(__file__).resolve().parent.parent


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def lumen_seconds(data: np.ndarray, method: str) -> float:
    """Lumen's reducer on the points, the float32 conversion included."""
    return timed(lambda: embeddings.reduce(data.astype(np.float32), method))


def sklearn_tsne_seconds(reduced: np.ndarray) -> float:
    return timed(lambda: TSNE(perplexity=30, random_state=0, init="pca").fit_transform(reduced))


def feature_rate(name: str, n: int, size: int = 64, batch: int = 256) -> float:
    model, _ = build_model(name, 2, pretrained="none")
    x = torch.rand(batch, 3, size, size)
    features(model, name, x[:8])  # first-call warm-up
    seconds = timed(lambda: [features(model, name, x) for _ in range(max(1, n // batch))])
    return max(1, n // batch) * batch / seconds


def main() -> int:
    sizes = [int(a) for a in sys.argv[1:]] or [5000, 20000]
    demo = rundir.demo_runs()[0]
    base = embeddings.load_features(demo).attrs["features"]
    rng = np.random.default_rng(0)
    print(f"{torch.get_num_threads()} torch threads; reducer input: demo run features ({base.shape[1]}-d)")
    print(f"UMAP first fit in this process (numba compile): "
          f"{timed(lambda: embeddings.reduce(base[:64], 'umap', {'n_neighbors': 5})):.1f} s")
    for name in ("simple_cnn", "resnet18"):
        print(f"features {name:10s} at 64 px: {feature_rate(name, 2048):8.0f} images/s")
    for n in sizes:
        data = base[rng.integers(0, len(base), n)] + rng.normal(0, 0.05 * base.std(), (n, base.shape[1]))
        for method in ("pca", "umap", "tsne"):
            print(f"{method:5s} on {n:6,} points: {lumen_seconds(data, method):7.1f} s"
                  + (" (openTSNE)" if method == "tsne" else ""), flush=True)
        reduced = PCA(n_components=50, random_state=0).fit_transform(data.astype(np.float32))
        print(f"tsne  on {n:6,} points: {sklearn_tsne_seconds(reduced):7.1f} s (scikit-learn, for comparison)",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
