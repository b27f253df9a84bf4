"""Epochs: the training pass, validation and prediction, for one process of a run."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from core.models import set_train_mode
from core.preprocess import Preprocessor
from core.train.augment import augment
from core.train.data import Data
from core.train.distributed import sum_over_processes
from core.train.optim import class_weights


class Cancelled(Exception):
    """Raised inside the loop when the user cancels; the last finished epoch is kept."""


@dataclass
class Loop:
    """What one process needs to run epochs: model, data, device, preprocessor and settings."""

    model: torch.nn.Module
    data: Data
    device: torch.device
    preprocessor: Preprocessor  # with the run's statistics
    config: dict[str, Any]
    rank: int = 0
    world: int = 1

    def to_input(self, idx: np.ndarray) -> torch.Tensor:
        # uint8 crosses to the device (a quarter of float32's bytes); augmentation runs faster on the
        # plain layout (measured), and normalise() turns the result channels-last for the model.
        x = self.data.batch(idx).to(self.device, non_blocking=True)
        return x.to(torch.float32, memory_format=torch.contiguous_format).div_(255)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocessor.normalise(x)
        return x.contiguous(memory_format=torch.channels_last)  # faster convolutions on CUDA and CPU alike

    def autocast(self) -> AbstractContextManager[Any]:
        enabled = self.device.type == "cuda" and self.config.get("amp", True)
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)


def epoch_order(loop: Loop, train_idx: np.ndarray, epoch: int) -> np.ndarray:
    """This process's training indices for one epoch: shuffled, or drawn by class weight.

    The order depends only on seed and epoch, so every torchrun process cuts the same order
    into equal shards (unequal shards would leave DistributedDataParallel waiting).
    """
    gen = torch.Generator().manual_seed(loop.config["seed"] * 100_003 + epoch)
    if loop.config["imbalance"] == "sampler":
        labels = loop.data.labels[torch.as_tensor(train_idx)]
        weights = class_weights(labels, len(loop.data.classes))[labels]
        order = train_idx[torch.multinomial(weights, len(train_idx), replacement=True, generator=gen).numpy()]
    else:
        order = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
    order = order[: len(order) - len(order) % loop.world] if loop.world > 1 else order
    shard: np.ndarray = order[loop.rank::loop.world]
    return shard


def train_one_epoch(loop: Loop, optimiser: torch.optim.Optimizer, criterion: torch.nn.Module, order: np.ndarray,
                    gen: torch.Generator, should_stop: Callable[[], bool],
                    on_batch: Callable[[int, int], None]) -> dict[str, float]:
    set_train_mode(loop.model, loop.config["model"]["freeze"])
    batch_size = loop.config["batch_size"]
    n_batches = max(1, math.ceil(len(order) / batch_size))
    # Running sums stay on the device: a .item() per batch would wait for the GPU every batch.
    total_loss = torch.zeros((), device=loop.device)
    correct = torch.zeros((), device=loop.device, dtype=torch.long)
    seen, start = 0, time.perf_counter()
    for b in range(n_batches):
        if should_stop():
            raise Cancelled()
        idx = order[b * batch_size:(b + 1) * batch_size]
        if len(idx) == 0:
            continue
        x = loop.normalise(augment(loop.to_input(idx), loop.config["augment"], gen))
        y = loop.data.labels[torch.as_tensor(idx)].to(loop.device)
        with loop.autocast():
            logits = loop.model(x)
            loss = criterion(logits.float(), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        total_loss += loss.detach() * len(idx)
        correct += (logits.argmax(1) == y).sum()
        seen += len(idx)
        on_batch(b + 1, n_batches)
    seconds = time.perf_counter() - start
    loss_sum, n_correct, n_seen = sum_over_processes([total_loss.item(), correct.item(), seen], loop.world)
    return {"train_loss": loss_sum / max(n_seen, 1), "train_accuracy": n_correct / max(n_seen, 1),
            "seconds": seconds, "images_per_s": n_seen / max(seconds, 1e-9)}


@torch.no_grad()
def predict(loop: Loop, idx: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities for the given items (no augmentation)."""
    loop.model.eval()
    out = []
    for start in range(0, len(idx), batch_size):
        x = loop.normalise(loop.to_input(idx[start:start + batch_size]))
        with loop.autocast():
            out.append(torch.softmax(loop.model(x).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, len(loop.data.classes)))


def auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC: binary on the second class, macro one-vs-rest for several; NaN when undefined."""
    try:
        if probs.shape[1] == 2:
            return float(roc_auc_score(labels, probs[:, 1]))
        return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro",
                                   labels=np.arange(probs.shape[1])))
    except ValueError:
        return float("nan")


def evaluate(loop: Loop, idx: np.ndarray, criterion: torch.nn.Module) -> dict[str, float]:
    probs = predict(loop, idx)
    labels = loop.data.labels[torch.as_tensor(idx)].numpy()
    if not len(idx):
        return {"val_loss": float("nan"), "val_accuracy": float("nan"), "val_auc": float("nan")}
    loss = criterion(torch.log(torch.as_tensor(probs).clamp_min(1e-12)), torch.as_tensor(labels)).item()
    return {"val_loss": loss, "val_accuracy": float((probs.argmax(1) == labels).mean()),
            "val_auc": auc(labels, probs)}


def is_better(metric: str, value: float | None, best: float | None) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return best is None
    if best is None or (isinstance(best, float) and math.isnan(best)):
        return True
    return value < best if metric == "val_loss" else value > best
