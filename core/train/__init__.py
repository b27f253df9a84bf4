"""Training, in the style of torchvision's reference scripts, one concern per module:

    data          scan, split and cache a run's images once (`Data`, `load_data`)
    augment       batched, seeded flips, turns, rotations, shifts and colour jitter
    optim         device, optimiser, schedule, class weights
    loop          one epoch, validation, prediction
    checkpoints   what a checkpoint holds, and resuming from one
    distributed   torchrun: process group, agreement, totals
    runner        one run from start to finish, its status and its log

Only `python -m core train`, the benchmarks and tests import the trainer; analysis code loads a
finished run through `core.runmodel`.
"""
from core.train.runner import run, run_safely

__all__ = ["run", "run_safely"]
