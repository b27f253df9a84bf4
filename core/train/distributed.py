"""torchrun: the process group, and the few things every process must agree on."""
from __future__ import annotations

import itertools
import os
from collections.abc import Callable

import torch
from torch import nn

STOP_POLL_BATCHES = 10  # under torchrun: batches between two agreed stop checks


def start(device: torch.device) -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL's object broadcasts (stop, cancel) use the current GPU
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world


def finish(world: int) -> None:
    if world > 1:
        import torch.distributed as dist
        dist.destroy_process_group()


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist
        dist.barrier()


def agree(flag: bool, world: int) -> bool:
    """True on every process when the first process says so (stop, cancel)."""
    if world == 1:
        return flag
    import torch.distributed as dist
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def stop_poll(should_stop: Callable[[], bool], world: int, every: int = STOP_POLL_BATCHES) -> Callable[[], bool]:
    """The per-batch stop check. Under torchrun the first process's answer is broadcast, which
    costs a round trip and a device sync, so the processes ask together only every `every`-th batch
    (they call in step: every process runs the same number of batches)."""
    if world == 1:
        return should_stop
    calls = itertools.count()
    return lambda: next(calls) % every == 0 and agree(should_stop(), world)


def sum_over_processes(values: list[float], world: int) -> list[float]:
    """Epoch totals over every torchrun process, so the curves describe the whole epoch."""
    if world == 1:
        return values
    import torch.distributed as dist
    box: list[list[float] | None] = [None] * world
    dist.all_gather_object(box, values)
    return [sum(column) for column in zip(*(b for b in box if b is not None))]


def wrap(model: nn.Module, device: torch.device, world: int) -> nn.Module:
    if world == 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", model)
    assert isinstance(inner, nn.Module)
    return inner
