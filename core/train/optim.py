"""Device, model, optimiser, learning-rate schedule and class weights, from a run config."""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from core.models import build_model
from core.runconfig import ConfigError

Scheduler = torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau


def select_device(preference: str) -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU. Under torchrun, the process's own GPU."""
    if preference in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if preference == "cuda":
        raise ConfigError("device 'cuda' was asked for, but no CUDA GPU is visible to this process.")
    if preference in ("auto", "mps") and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    if preference == "mps":
        raise ConfigError("device 'mps' was asked for, but Apple's MPS backend is not available.")
    return torch.device("cpu")


def build_for(config: dict[str, Any], n_classes: int, in_channels: int) -> tuple[nn.Module, dict[str, Any]]:
    """The run's model, with its starting weights (ImageNet, a file of the user's, or random)."""
    model_cfg = config["model"]
    return build_model(model_cfg["name"], n_classes, in_channels=in_channels, freeze=model_cfg["freeze"],
                       pretrained=model_cfg.get("pretrained", "auto"), options=model_cfg.get("options") or {})


def make_optimiser(params: Iterable[nn.Parameter], cfg: dict[str, Any]) -> torch.optim.Optimizer:
    trainable = [p for p in params if p.requires_grad]
    if cfg["name"] == "sgd":
        return torch.optim.SGD(trainable, lr=cfg["lr"], momentum=cfg.get("momentum", 0.9),
                               weight_decay=cfg["weight_decay"], nesterov=cfg.get("nesterov", True))
    cls = torch.optim.AdamW if cfg["name"] == "adamw" else torch.optim.Adam
    return cls(trainable, lr=cfg["lr"], weight_decay=cfg["weight_decay"])


def make_scheduler(optimiser: torch.optim.Optimizer, cfg: dict[str, Any], epochs: int,
                   maximise: bool) -> Scheduler | None:
    name = cfg["name"]
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimiser, step_size=cfg["step_size"], gamma=cfg["gamma"])
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, epochs))
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, mode="max" if maximise else "min",
                                                          patience=cfg["patience"], factor=cfg["gamma"])
    return None


def class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights that average 1 over the training items."""
    counts = torch.bincount(labels, minlength=n_classes).float().clamp_min(1)
    return counts.sum() / (n_classes * counts)
