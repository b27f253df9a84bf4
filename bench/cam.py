"""Grad-CAM over a set of demo images: batched (Lumen's compute_cams) vs one image at a time.

A gallery (say every false negative) needs a map per image; one pass per image pays the Python,
hook and per-call overhead N times. Models: a simple CNN and a ResNet18 with random weights (the
timing does not depend on what they learned), on the first N demo glomeruli at SIZE px.
Each figure is the best of three interleaved timings. Prints images/s for both and, last,
`ratio <batched / one at a time>` over both models.

    python bench/cam.py [N] [SIZE] [BATCH]
"""
from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
import torch

from core import cam
from core.images import load_array
from core.models import build_model
from core.preprocess import Preprocessor
from core.workspace import DEMO_DIR


def demo_inputs(n: int, size: int) -> torch.Tensor:
    """The first n demo glomeruli as model inputs, through the same model_input() pages use."""
    folder = DEMO_DIR / "glomeruli"
    paths = pd.read_csv(folder / "labels.csv")["path"][:n]
    ckpt = {"preprocessor": Preprocessor(size, mean=(0.5,) * 3, std=(0.25,) * 3).to_dict()}
    return torch.cat([cam.model_input(load_array(folder / p), ckpt)[0] for p in paths])


def best_seconds(runs: dict, repeats: int = 3) -> dict:
    """Fastest of `repeats` timings per variant, taken in turn so a busy spell hits both alike."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            best[key] = min(best[key], time.perf_counter() - start)
    return best


def batched_and_single(model: torch.nn.Module, name: str, x: torch.Tensor, batch: int) -> dict:
    """The two ways to map every image of x: Lumen's batched call, and one call per image."""
    return {
        "batched": lambda: cam.compute_cams(model, name, x, "GradCAM", batch_size=batch),
        "single": lambda: [cam.compute_cams(model, name, x[i:i + 1], "GradCAM") for i in range(len(x))],
    }


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    torch.manual_seed(0)
    x = demo_inputs(n, size)
    print(f"{n} demo glomeruli at {size} px, GradCAM, batch {batch}, {torch.get_num_threads()} threads")
    totals = np.zeros(2)
    for name in ("simple_cnn", "resnet18"):
        model, _ = build_model(name, 2, pretrained="none")
        model.eval()
        cam.compute_cams(model, name, x[:2], "GradCAM")  # warm-up: first-call allocations
        best = best_seconds(batched_and_single(model, name, x, batch))
        batched, single = best["batched"], best["single"]
        totals += (batched, single)
        print(f"{name:11s} batched {n / batched:8.1f} images/s   one at a time {n / single:8.1f} images/s"
              f"   ratio {single / batched:.2f}")
    print(f"all models  batched {2 * n / totals[0]:8.1f} images/s   one at a time {2 * n / totals[1]:8.1f} images/s")
    print(f"ratio {totals[1] / totals[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
