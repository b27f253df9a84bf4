"""One run from start to finish: data, model, epochs, checkpoints, predictions, status and log.

`run` prepares the data once (decoded, padded and resized into a cached array), then trains
epoch by epoch, writing metrics and a checkpoint after each, and finally the best model's
predictions on every split. A resumed run reloads `last.pt` and carries on with its history
intact. Under torchrun every process trains on its shard of each epoch and the first one writes
the files.
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import rundir
from core.runconfig import dataset_spec
from core.train import checkpoints, distributed
from core.train.data import Data, load_data
from core.train.loop import Cancelled, Loop, epoch_order, evaluate, is_better, predict, train_one_epoch
from core.train.optim import Scheduler, build_for, class_weights, make_optimiser, make_scheduler, select_device

PROGRESS_EVERY_S = 2.0
log = logging.getLogger("lumen.train")

StatusWriter = Callable[..., dict[str, Any] | None]


@dataclass
class Session:
    """Everything one process of a run holds while it trains."""

    config: dict[str, Any]
    run_dir: Path
    status: StatusWriter  # writes status.json on the first process, does nothing on the others
    loop: Loop
    optimiser: torch.optim.Optimizer
    scheduler: Scheduler | None
    criterion: torch.nn.Module
    gen: torch.Generator  # augmentation draws
    progress: checkpoints.Progress

    @property
    def lead(self) -> bool:
        return self.loop.rank == 0


def run(config: dict[str, Any], run_dir: Path, resume: bool = False,
        should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Train one run to the end (or to early stopping, or until cancelled); returns final status."""
    session = _start(config, Path(run_dir), resume)
    stopped_early = _train(session, distributed.stop_poll(should_stop, session.loop.world))
    if session.lead:
        checkpoints.load_best_weights(session.run_dir, session.loop.model)
        session.status(message="writing predictions of the best model")
        _write_predictions(session.loop, session.run_dir)
    patience, metric = config["early_stopping"]["patience"], config["early_stopping"]["metric"]
    epoch = session.progress.epoch
    reason = f"stopped early after epoch {epoch} ({metric} did not improve for {patience} epochs)" \
        if stopped_early else f"finished {epoch} epochs"
    final = session.status(state="finished", finished=time.time(), progress=1.0, message=reason,
                           best_metric=session.progress.best)
    distributed.finish(session.loop.world)
    return final or {}


def _start(config: dict[str, Any], run_dir: Path, resume: bool) -> Session:
    """Device, data, model, optimiser and, when resuming, the state of the last checkpoint."""
    device = select_device(config["device"])
    rank, world = distributed.start(device)

    def status(**fields: Any) -> dict[str, Any] | None:
        return rundir.write_status(run_dir, **fields) if rank == 0 else None

    torch.manual_seed(config["seed"] + rank)
    on_slurm = {"slurm_job_id": os.environ["SLURM_JOB_ID"]} if "SLURM_JOB_ID" in os.environ else {}
    status(state="running", message="decoding and preprocessing images (cached after the first run)", **on_slurm,
           started=time.time(), device=str(device), epochs=config["epochs"], epoch=0, progress=0.0,
           progress_at_start=0.0)
    data = _prepare_data(config, run_dir, rank == 0, world, status)
    loop, model_info = _make_loop(config, data, device, rank, world)
    optimiser = make_optimiser(loop.model.parameters(), config["optimiser"])
    scheduler = make_scheduler(optimiser, config["scheduler"], config["epochs"],
                               maximise=config["early_stopping"]["metric"] != "val_loss")
    weights = class_weights(data.labels[torch.as_tensor(data.indices("train"))], len(data.classes)).to(device) \
        if config["imbalance"] == "class_weights" else None
    gen = torch.Generator().manual_seed(config["seed"] + rank)
    progress = (checkpoints.resume(run_dir, loop.model, optimiser, scheduler, gen) if resume else None) \
        or checkpoints.Progress()
    if progress.epoch:
        # time left is judged on the epochs this process trains, not on those done before the resume
        status(epoch=progress.epoch, progress=progress.epoch / config["epochs"],
               progress_at_start=progress.epoch / config["epochs"])
        if rank == 0:
            rundir.write_metrics(run_dir, progress.history)  # drop any line written after the checkpoint
    loop.model = distributed.wrap(loop.model, device, world)
    counts = {s: int(len(data.indices(s))) for s in ("train", "val", "test")}
    status(message=model_info["message"], pretrained=model_info["pretrained"],
           trainable_params=model_info["trainable_params"], classes=data.classes, counts=counts)
    log.info(model_info["message"])
    log.info("%d train / %d val / %d test images, classes %s, device %s, world %d", counts["train"], counts["val"],
             counts["test"], data.classes, device, world)
    return Session(config, run_dir, status, loop, optimiser, scheduler, torch.nn.CrossEntropyLoss(weight=weights),
                   gen, progress)


def _train(session: Session, should_stop: Callable[[], bool]) -> bool:
    """Epochs from where the run stands to the last one; True when early stopping ended them."""
    config, loop = session.config, session.loop
    train_idx, val_idx = loop.data.indices("train"), loop.data.indices("val")
    last_write = [0.0]

    def on_batch(done: int, total: int, epoch: int) -> None:
        now = time.time()
        if now - last_write[0] > PROGRESS_EVERY_S:
            last_write[0] = now
            session.status(progress=((epoch - 1) + done / total) / config["epochs"], batch=done, batches=total)

    for epoch in range(session.progress.epoch + 1, config["epochs"] + 1):
        stats: dict[str, Any] = train_one_epoch(loop, session.optimiser, session.criterion,
                                                epoch_order(loop, train_idx, epoch), session.gen, should_stop,
                                                partial(on_batch, epoch=epoch))
        _refuse_diverged(stats["train_loss"], epoch, config)
        stats.update(evaluate(loop, val_idx, session.criterion))
        stats.update(epoch=epoch, lr=session.optimiser.param_groups[0]["lr"], time=time.time())
        _end_epoch(session, stats)
        if distributed.agree(session.progress.since_best >= config["early_stopping"]["patience"], loop.world):
            return True
    return False


class Diverged(RuntimeError):
    """The training loss stopped being a number: every later epoch would train NaN weights and the
    run would end "finished" with a meaningless best epoch."""


def _refuse_diverged(train_loss: float, epoch: int, config: dict[str, Any]) -> None:
    if not math.isfinite(train_loss):
        optimiser = config["optimiser"]
        raise Diverged(f"the training loss became {train_loss} in epoch {epoch}, so the run stopped: lower the "
                       f"learning rate (optimiser.lr is {optimiser['lr']:g}), or the momentum for SGD, and start a "
                       "new run; epochs before this one are kept")


def _end_epoch(session: Session, stats: dict[str, Any]) -> None:
    """Step the schedule, judge the epoch, and (first process) write its checkpoint, metrics and status."""
    config, progress, scheduler = session.config, session.progress, session.scheduler
    metric = config["early_stopping"]["metric"]
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(stats[metric] if not math.isnan(stats[metric]) else stats["val_loss"])
    elif scheduler is not None:
        scheduler.step()
    improved = is_better(metric, stats[metric], progress.best)
    progress.best, progress.since_best = (stats[metric], 0) if improved else (progress.best, progress.since_best + 1)
    stats["best"] = improved
    progress.history.append(stats)
    progress.epoch = stats["epoch"]
    if not session.lead:
        return
    state = checkpoints.state(session.loop.model, session.optimiser, scheduler, session.gen, progress, config,
                              session.loop.data.classes, session.loop.preprocessor)
    rundir.save_checkpoint(session.run_dir, state, best=improved)
    rundir.write_metrics(session.run_dir, progress.history)
    session.status(epoch=progress.epoch, progress=progress.epoch / config["epochs"],
                   message=f"epoch {progress.epoch} done")
    log.info("epoch %d/%d train loss %.4f acc %.3f | val loss %.4f acc %.3f auc %.4f | %.0f img/s", progress.epoch,
             config["epochs"], stats["train_loss"], stats["train_accuracy"], stats["val_loss"],
             stats["val_accuracy"], stats["val_auc"], stats["images_per_s"])


def _prepare_data(config: dict[str, Any], run_dir: Path, lead: bool, world: int, status: StatusWriter) -> Data:
    """The run's images, split as the run first drew them; the first process fills the image cache
    and writes splits.csv while the others wait, then read the cache."""
    if not lead:
        distributed.barrier(world)
    def preparing(done: int, total: int) -> None:
        status(message=f"preparing images: {done}/{total}")

    data = load_data(config, progress=preparing, splits=rundir.read_splits(run_dir))
    if lead:
        if not rundir.splits_path(run_dir).exists():
            rundir.write_items(run_dir, data.items, rundir.dataset_root(dataset_spec(config).path))
        distributed.barrier(world)
    return data


def _make_loop(config: dict[str, Any], data: Data, device: torch.device, rank: int,
               world: int) -> tuple[Loop, dict[str, Any]]:
    """The model on its device and the preprocessor with the training split's statistics."""
    model, model_info = build_for(config, len(data.classes), data.channels)
    model = model.to(device).to(memory_format=torch.channels_last)
    preprocessor = data.preprocessor.fitted(data.pixels, data.indices("train"))
    return Loop(model, data, device, preprocessor, config, rank, world), model_info


def _write_predictions(loop: Loop, run_dir: Path) -> None:
    items = loop.data.items
    probs = predict(loop, np.arange(len(items)))
    columns = items.rename(columns={"id": "item_id"})[["item_id", "split", "label", "group"]]
    rundir.write_predictions(rundir.predictions_path(run_dir), columns, loop.data.classes, probs)


def failure_message(exc: BaseException) -> str:
    """A short reason for status.json; the full traceback goes to the log."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "out of GPU memory: lower the batch size or the image size, then resume"
    if isinstance(exc, MemoryError):
        return "out of memory: lower the batch size or the image size, then resume"
    if isinstance(exc, Diverged):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def run_safely(config: dict[str, Any], run_dir: Path, resume: bool, should_stop: Callable[[], bool]) -> int:
    """run() with the outcome recorded in status.json; the process exit code says it too."""
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun workers: the first process reports
        run(config, run_dir, resume=resume, should_stop=should_stop)
        return 0
    try:
        run(config, run_dir, resume=resume, should_stop=should_stop)
        return 0
    except Cancelled:
        rundir.write_status(run_dir, state="cancelled", finished=time.time(),
                            message="cancelled; resume continues from the last finished epoch")
        log.info("cancelled")
        return 0
    except Exception as exc:
        log.exception("the run failed")
        rundir.write_status(run_dir, state="failed", finished=time.time(), message=failure_message(exc))
        return 1
