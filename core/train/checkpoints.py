"""What a checkpoint holds, and picking a run up from one.

A checkpoint is self-contained: besides the weights and the training state it carries the run
config, the class names and the Preprocessor, so `core.runmodel` rebuilds the model and its exact
input from the file alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core import rundir
from core.preprocess import Preprocessor
from core.train.distributed import unwrap
from core.train.optim import Scheduler


@dataclass
class Progress:
    """The training state that a resume must carry on from."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best: float | None = None
    since_best: int = 0
    epoch: int = 0


def state(model: torch.nn.Module, optimiser: torch.optim.Optimizer, scheduler: Scheduler | None,
          gen: torch.Generator, progress: Progress, config: dict[str, Any], classes: list[str],
          preprocessor: Preprocessor) -> dict[str, Any]:
    return {"model": unwrap(model).state_dict(), "optimiser": optimiser.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "epoch": progress.epoch, "config": config, "classes": classes,
            "in_channels": preprocessor.channels, "preprocessor": preprocessor.to_dict(),
            "history": progress.history, "best": progress.best, "since_best": progress.since_best,
            "generator": gen.get_state()}


def resume(run_dir: Path, model: torch.nn.Module, optimiser: torch.optim.Optimizer,
           scheduler: Scheduler | None, gen: torch.Generator) -> Progress | None:
    """Load last.pt into the model, optimiser, scheduler and generator; None when there is none."""
    rundir.clear_stale_temps(run_dir)  # a half-written checkpoint of the killed job
    if not rundir.checkpoint_path(run_dir, "last").exists():
        return None
    ckpt = rundir.load_checkpoint(run_dir, "last")
    model.load_state_dict(ckpt["model"])
    optimiser.load_state_dict(ckpt["optimiser"])
    if scheduler is not None and ckpt.get("scheduler"):
        scheduler.load_state_dict(ckpt["scheduler"])
    gen.set_state(ckpt["generator"])
    return Progress(ckpt["history"], ckpt["best"], ckpt["since_best"], ckpt["epoch"])


def load_best_weights(run_dir: Path, model: torch.nn.Module) -> None:
    unwrap(model).load_state_dict(rundir.load_checkpoint(run_dir, "best")["model"])
