"""Augmentation on whole batches, on the training device, every draw from one seeded generator."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F


def augment(x: torch.Tensor, cfg: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    """Random flips, quarter turns, small rotations/shifts and colour jitter, per image, batched.

    x is (B, C, S, S) in [0, 1]; all randomness comes from ``gen`` so a seed repeats a run.
    """
    b = x.shape[0]

    def coin() -> torch.Tensor:
        return (torch.rand(b, generator=gen) < 0.5).view(b, 1, 1, 1).to(x.device)

    if cfg.get("hflip"):
        x = torch.where(coin(), x.flip(-1), x)
    if cfg.get("vflip"):
        x = torch.where(coin(), x.flip(-2), x)
    if cfg.get("rotate90"):
        k = torch.randint(0, 4, (b,), generator=gen).to(x.device)
        for turns in (1, 2, 3):
            sel = k == turns
            if sel.any():
                x[sel] = torch.rot90(x[sel], turns, dims=(-2, -1))
    rotation, shift = float(cfg.get("rotation", 0)), float(cfg.get("shift", 0))
    if rotation or shift:
        angle = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(rotation)
        offset = (torch.rand(b, 2, generator=gen) * 2 - 1) * shift * 2
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([cos, -sin, offset[:, 0]], 1), torch.stack([sin, cos, offset[:, 1]], 1)], 1)
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    jitter = float(cfg.get("color_jitter", 0))
    if jitter:
        bright = (1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * jitter).to(x.device)
        contrast = (1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * jitter).to(x.device)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * contrast + mean) * bright
    return x.clamp_(0, 1)
