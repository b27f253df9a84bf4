"""Augmentation on whole batches, on the training device, every draw from one seeded generator."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF


def augment(x: torch.Tensor, cfg: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    """Random flips, quarter turns, small rotations/shifts and colour jitter (brightness, contrast,
    saturation, hue), per image, batched.

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
        bright, contrast = _factors(b, jitter, gen, x.device), _factors(b, jitter, gen, x.device)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (((x - mean) * contrast + mean) * bright).clamp_(0, 1)  # the only step that leaves [0, 1]
    return _colour(x, float(cfg.get("saturation", 0)), float(cfg.get("hue", 0)), gen)


def _factors(b: int, strength: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """One factor per image, uniform in [1 - strength, 1 + strength], shaped to scale (B, C, S, S)."""
    return (1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * strength).to(device)


def _colour(x: torch.Tensor, saturation: float, hue: float, gen: torch.Generator) -> torch.Tensor:
    """torchvision ColorJitter's saturation and hue, with a factor of its own for each image.

    Saturation blends each image with its own grey version (torchvision's adjust_saturation, done for
    the whole batch at once); the hue shift goes through torchvision's adjust_hue image by image, as it
    takes one factor per call. Grey images (one channel) have neither and pass unchanged."""
    if x.shape[1] != 3:
        return x
    b = x.shape[0]
    if saturation:
        grey = TF.rgb_to_grayscale(x)
        x = (grey + (x - grey) * _factors(b, saturation, gen, x.device)).clamp_(0, 1)
    if hue:
        shifts = ((torch.rand(b, generator=gen) * 2 - 1) * hue).tolist()
        x = torch.stack([TF.adjust_hue(image, shift) for image, shift in zip(x, shifts)])
    return x
