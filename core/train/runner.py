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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import rundir
from core.runconfig import dataset_spec
from core.train import checkpoints, distributed
from core.train.data import Data, load_data
from core.train.loop import Cancelled, Loop, evaluate, epoch_order, is_better, predict, train_one_epoch
from core.train.optim import build_for, class_weights, make_optimiser, make_scheduler, select_device

PROGRESS_EVERY_S = 2.0
log = logging.getLogger("lumen.train")

StatusWriter = Callable[..., dict[str, Any] | None]


def run(config: dict[str, Any], run_dir: Path, resume: bool = False,
        should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Train one run to the end (or to early stopping, or until cancelled); returns final status."""
    run_dir = Path(run_dir)
    device = select_device(config["device"])
    rank, world = distributed.start(device)
    lead = rank == 0

    def status(**fields: Any) -> dict[str, Any] | None:
        return rundir.write_status(run_dir, **fields) if lead else None

    torch.manual_seed(config["seed"] + rank)
    on_slurm = {"slurm_job_id": os.environ["SLURM_JOB_ID"]} if "SLURM_JOB_ID" in os.environ else {}
    status(state="running", message="decoding and preprocessing images (cached after the first run)", **on_slurm,
           started=time.time(), device=str(device), epochs=config["epochs"], epoch=0, progress=0.0,
           progress_at_start=0.0)
    data = _prepare_data(config, run_dir, lead, world, status)
    loop, model_info = _make_loop(config, data, device, rank, world)
    optimiser = make_optimiser(loop.model.parameters(), config["optimiser"])
    stop_metric = config["early_stopping"]["metric"]
    scheduler = make_scheduler(optimiser, config["scheduler"], config["epochs"], stop_metric != "val_loss")
    train_idx, val_idx = data.indices("train"), data.indices("val")
    weights = class_weights(data.labels[torch.as_tensor(train_idx)], len(data.classes)).to(device) \
        if config["imbalance"] == "class_weights" else None
    criterion = torch.nn.CrossEntropyLoss(weight=weights)
    gen = torch.Generator().manual_seed(config["seed"] + rank)  # augmentation draws
    progress = (checkpoints.resume(run_dir, loop.model, optimiser, scheduler, gen) if resume else None) \
        or checkpoints.Progress()
    if progress.epoch:
        # time left is judged on the epochs this process trains, not on those done before the resume
        status(epoch=progress.epoch, progress=progress.epoch / config["epochs"],
               progress_at_start=progress.epoch / config["epochs"])
        if lead:
            rundir.write_metrics(run_dir, progress.history)  # drop any line written after the checkpoint
    loop.model = distributed.wrap(loop.model, device, world)
    status(message=model_info["message"], pretrained=model_info["pretrained"],
           trainable_params=model_info["trainable_params"], classes=data.classes,
           counts={s: int(len(data.indices(s))) for s in ("train", "val", "test")})
    log.info(model_info["message"])
    log.info("%d train / %d val / %d test images, classes %s, device %s, world %d", len(train_idx), len(val_idx),
             len(data.indices("test")), data.classes, device, world)

    last_write = [0.0]

    def on_batch(done: int, total: int, epoch: int) -> None:
        now = time.time()
        if now - last_write[0] > PROGRESS_EVERY_S:
            last_write[0] = now
            status(progress=((epoch - 1) + done / total) / config["epochs"], batch=done, batches=total)

    stopped_early = False
    stop_now = distributed.stop_poll(should_stop, world)
    epoch = progress.epoch
    for epoch in range(progress.epoch + 1, config["epochs"] + 1):
        order = epoch_order(loop, train_idx, epoch)
        stats: dict[str, Any] = train_one_epoch(loop, optimiser, criterion, order, gen, stop_now,
                                                lambda d, t, e=epoch: on_batch(d, t, e))
        stats.update(evaluate(loop, val_idx, criterion))
        stats.update(epoch=epoch, lr=optimiser.param_groups[0]["lr"], time=time.time())
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(stats[stop_metric] if not math.isnan(stats[stop_metric]) else stats["val_loss"])
        elif scheduler is not None:
            scheduler.step()
        improved = is_better(stop_metric, stats[stop_metric], progress.best)
        progress.best, progress.since_best = (stats[stop_metric], 0) if improved else \
            (progress.best, progress.since_best + 1)
        stats["best"] = improved
        progress.history.append(stats)
        progress.epoch = epoch
        if lead:
            rundir.save_checkpoint(run_dir, checkpoints.state(loop.model, optimiser, scheduler, gen, progress, config,
                                                              data.classes, loop.preprocessor), best=improved)
            rundir.write_metrics(run_dir, progress.history)
            status(epoch=epoch, progress=epoch / config["epochs"], message=f"epoch {epoch} done")
            log.info("epoch %d/%d train loss %.4f acc %.3f | val loss %.4f acc %.3f auc %.4f | %.0f img/s", epoch,
                     config["epochs"], stats["train_loss"], stats["train_accuracy"], stats["val_loss"],
                     stats["val_accuracy"], stats["val_auc"], stats["images_per_s"])
        if distributed.agree(progress.since_best >= config["early_stopping"]["patience"], world):
            stopped_early = True
            break
    if lead:
        checkpoints.load_best_weights(run_dir, loop.model)
        status(message="writing predictions of the best model")
        _write_predictions(loop, run_dir)
    reason = f"stopped early after epoch {epoch} ({stop_metric} did not improve for " \
             f"{config['early_stopping']['patience']} epochs)" if stopped_early else f"finished {epoch} epochs"
    final = status(state="finished", finished=time.time(), progress=1.0, message=reason, best_metric=progress.best)
    distributed.finish(world)
    return final or {}


def _prepare_data(config: dict[str, Any], run_dir: Path, lead: bool, world: int, status: StatusWriter) -> Data:
    """The run's images, split as the run first drew them; the first process fills the image cache
    and writes splits.csv while the others wait, then read the cache."""
    if not lead:
        distributed.barrier(world)
    data = load_data(config, progress=lambda d, t: status(message=f"preparing images: {d}/{t}"),
                     splits=rundir.read_splits(run_dir))
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
