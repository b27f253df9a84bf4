"""The training loop: plain functions in the style of torchvision's reference scripts.

`run` prepares the data once (decoded, padded and resized into a cached array), then trains
epoch by epoch, writing metrics, `last.pt` and `best.pt` after each, and finally the best
model's predictions on every split. A resumed run reloads `last.pt` and carries on with its
history intact. Under torchrun every process trains on its shard of each epoch and the first
one writes the files.
"""
from __future__ import annotations

import itertools
import math
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from core import rundir
from core.datacache import prepared_array
from core.models import build_model, set_train_mode
from core.runconfig import ConfigError, dataset_spec
from core.scanning import scan, usable
from core.splits import assign_splits

PROGRESS_EVERY_S = 2.0
STOP_POLL_BATCHES = 10  # under torchrun: batches between two agreed stop checks


class Cancelled(Exception):
    """Raised inside the loop when the user cancels; the last finished epoch is kept."""


@dataclass
class Data:
    """The whole usable dataset, preprocessed, and its integer labels.

    The pixels stay memory-mapped from the image cache: a batch copies only its own rows, so a
    dataset larger than RAM trains, and the OS page cache keeps a small one in memory anyway."""

    pixels: np.ndarray  # (N, S, S, C) uint8, a memmap when it came from the cache
    labels: torch.Tensor
    items: pd.DataFrame  # id, split, label, group, path, index
    classes: list[str]

    @property
    def channels(self) -> int:
        return self.pixels.shape[3]

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.items["split"].to_numpy() == split)

    def batch(self, idx) -> torch.Tensor:
        """uint8 (B, C, S, S) of the given rows, channels-last in memory (the layout convolutions prefer)."""
        rows = np.asarray(self.pixels[np.asarray(idx, dtype=np.intp)])  # fancy indexing: a fresh copy
        return torch.from_numpy(rows).permute(0, 3, 1, 2)


# ---------------------------------------------------------------- data


def load_data(config: dict, progress: Callable[[int, int], None] | None = None,
              splits: pd.Series | None = None) -> Data:
    """Scan the source, split it, and decode + preprocess every usable image once (cached).

    `splits` (item id -> split, see rundir.read_splits) keeps every item where its run first put
    it; items added to the dataset since are left out of that run."""
    manifest = scan(dataset_spec(config))
    listed = manifest.loc[usable(manifest)].reset_index(drop=True)  # original splits locate npz rows
    rows = listed.copy()
    split_cfg = config["split"]
    if splits is None:
        rows["split"] = assign_splits(rows, ratios=split_cfg["ratios"], seed=split_cfg["seed"],
                                      group_column="group" if split_cfg.get("grouped", True) else None).to_numpy()
    else:
        rows["split"] = rows["id"].map(splits)
        known = rows["split"].notna().to_numpy()
        rows, listed = rows[known].reset_index(drop=True), listed[known].reset_index(drop=True)
    _check_splits(rows, predefined=bool(listed["split"].notna().any()) and splits is None)
    classes = sorted(rows["label"].unique().tolist())
    prep = config["preprocess"]
    array = prepared_array(listed, prep["size"], prep["pad_mode"], prep["fit"], progress)
    labels = torch.as_tensor(rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(), dtype=torch.long)
    items = rows[["id", "split", "label", "group", "path", "index"]].copy()
    return Data(array, labels, items, classes)


def _check_splits(rows: pd.DataFrame, predefined: bool) -> None:
    """Refuse, with the way out, what would train on nothing or make validation meaningless."""
    classes = sorted(rows["label"].unique().tolist())
    if len(classes) < 2:
        raise ConfigError(f"Training needs at least two classes with usable images; found {classes}.")
    for needed in ("train", "val"):
        present = set(rows.loc[rows["split"] == needed, "label"])
        if not present:
            raise ConfigError(f"The dataset's own splits have no {needed} images: add a {needed} folder or "
                              f"split values." if predefined else
                              f"The split leaves no {needed} images: give {needed} a larger share.")
        missing = [c for c in classes if c not in present]
        if missing:
            raise ConfigError(f"No {needed} image of class {', '.join(missing)}: "
                              + ("the dataset's own splits lack it." if predefined else
                                 f"give {needed} a larger share, change the split seed or turn off grouping."))


def channel_stats(data: Data, idx: np.ndarray, sample: int = 2048) -> tuple[list, list]:
    """Per-channel mean and std of training images (on a sample), for normalisation."""
    pick = idx[np.linspace(0, len(idx) - 1, min(sample, len(idx))).astype(int)]
    x = data.batch(pick).float() / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return mean.tolist(), std.tolist()


# ---------------------------------------------------------------- augmentation


def augment(x: torch.Tensor, cfg: dict, gen: torch.Generator) -> torch.Tensor:
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


# ---------------------------------------------------------------- model, optimiser, schedule


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


def make_optimiser(params, cfg: dict) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg["name"] == "sgd":
        return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg.get("momentum", 0.9),
                               weight_decay=cfg["weight_decay"], nesterov=True)
    cls = torch.optim.AdamW if cfg["name"] == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])


def make_scheduler(optimiser, cfg: dict, epochs: int, maximise: bool):
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
    weights = counts.sum() / (n_classes * counts)
    return weights


# ---------------------------------------------------------------- epochs


@dataclass
class Loop:
    """What one process needs to run epochs: model, data, device and settings."""

    model: torch.nn.Module
    data: Data
    device: torch.device
    mean: torch.Tensor
    std: torch.Tensor
    config: dict
    rank: int = 0
    world: int = 1

    def to_input(self, idx) -> torch.Tensor:
        # uint8 crosses to the device (a quarter of float32's bytes); augmentation runs faster on the
        # plain layout (measured), and normalise() turns the result channels-last for the model.
        x = self.data.batch(idx).to(self.device, non_blocking=True)
        return x.to(torch.float32, memory_format=torch.contiguous_format).div_(255)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last)  # faster convolutions on CUDA and CPU alike

    def autocast(self):
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
    return order[loop.rank::loop.world]


def train_one_epoch(loop: Loop, optimiser, criterion, order: np.ndarray, gen: torch.Generator,
                    should_stop: Callable[[], bool], on_batch: Callable[[int, int], None]) -> dict:
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
    total_loss, correct = total_loss.item(), correct.item()
    seconds = time.perf_counter() - start
    total_loss, correct, seen = _sum_over_processes([total_loss, correct, seen], loop.world)
    return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1),
            "seconds": seconds, "images_per_s": seen / max(seconds, 1e-9)}


def _sum_over_processes(values: list[float], world: int) -> list[float]:
    """Epoch totals over every torchrun process, so the curves describe the whole epoch."""
    if world == 1:
        return values
    import torch.distributed as dist
    box = [None] * world
    dist.all_gather_object(box, values)
    return [sum(column) for column in zip(*box)]


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


def evaluate(loop: Loop, idx: np.ndarray, criterion) -> dict:
    probs = predict(loop, idx)
    labels = loop.data.labels[torch.as_tensor(idx)].numpy()
    loss = criterion(torch.log(torch.as_tensor(probs).clamp_min(1e-12)), torch.as_tensor(labels)).item() \
        if len(idx) else float("nan")
    return {"val_loss": loss, "val_accuracy": float((probs.argmax(1) == labels).mean()) if len(idx) else float("nan"),
            "val_auc": auc(labels, probs)}


def is_better(metric: str, value: float, best: float | None) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return best is None
    if best is None or (isinstance(best, float) and math.isnan(best)):
        return True
    return value < best if metric == "val_loss" else value > best


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temporary file, then rename: a kill never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def build_for(config: dict, n_classes: int, in_channels: int):
    model_cfg = config["model"]
    return build_model(model_cfg["name"], n_classes, in_channels=in_channels, freeze=model_cfg["freeze"],
                       pretrained=model_cfg.get("pretrained", "auto"), options=model_cfg.get("options") or {})


def load_run_model(run_dir: Path, which: str = "best") -> tuple[torch.nn.Module, dict]:
    """A run's trained model (eval mode, CPU) and its checkpoint, for every analysis page."""
    ckpt = load_checkpoint(rundir.checkpoint_path(run_dir, which))
    config = ckpt["config"]
    model, _ = build_model(config["model"]["name"], len(ckpt["classes"]), in_channels=ckpt["in_channels"],
                           freeze=False, pretrained="none", options=config["model"].get("options") or {})
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


# ---------------------------------------------------------------- the run


def _distributed(device: torch.device) -> tuple[int, int]:
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


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist
        dist.barrier()


def _agree(flag: bool, world: int) -> bool:
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
    return lambda: next(calls) % every == 0 and _agree(should_stop(), world)


def write_predictions(loop: Loop, run_dir: Path) -> None:
    items = loop.data.items
    probs = predict(loop, np.arange(len(items)))
    table = pd.DataFrame({"item_id": items["id"].to_numpy(), "split": items["split"].to_numpy(),
                          "label": items["label"].to_numpy(), "group": items["group"].to_numpy()})
    for i, cls in enumerate(loop.data.classes):
        table[f"prob_{cls}"] = probs[:, i]
    tmp = rundir.predictions_path(run_dir).with_suffix(".tmp")
    table.to_parquet(tmp, index=False)
    os.replace(tmp, rundir.predictions_path(run_dir))


def run(config: dict, run_dir: Path, resume: bool = False,
        should_stop: Callable[[], bool] = lambda: False) -> dict:
    """Train one run to the end (or to early stopping, or until cancelled); returns final status."""
    run_dir = Path(run_dir)
    device = select_device(config["device"])
    rank, world = _distributed(device)
    lead = rank == 0
    status = (lambda **f: rundir.write_status(run_dir, **f)) if lead else (lambda **f: None)
    torch.manual_seed(config["seed"] + rank)
    on_slurm = {"slurm_job_id": os.environ["SLURM_JOB_ID"]} if "SLURM_JOB_ID" in os.environ else {}
    status(state="running", message="decoding and preprocessing images (cached after the first run)", **on_slurm,
           started=time.time(), device=str(device), epochs=config["epochs"], epoch=0, progress=0.0,
           progress_at_start=0.0)
    if not lead:
        _barrier(world)  # the first process fills the image cache; the others then read it
    data = load_data(config, progress=lambda d, t: status(message=f"preparing images: {d}/{t}"),
                     splits=rundir.read_splits(run_dir))
    if lead:
        if not rundir.splits_path(run_dir).exists():
            rundir.write_splits(run_dir, data.items)
        _barrier(world)
    train_idx, val_idx = data.indices("train"), data.indices("val")
    in_channels = data.channels
    model, model_info = build_for(config, len(data.classes), in_channels)
    model.to(device)
    model = model.to(memory_format=torch.channels_last)
    mean, std = channel_stats(data, train_idx)
    loop = Loop(model, data, device, torch.tensor(mean, device=device).view(1, -1, 1, 1),
                torch.tensor(std, device=device).view(1, -1, 1, 1), config, rank, world)
    optimiser = make_optimiser(model.parameters(), config["optimiser"])
    stop_metric = config["early_stopping"]["metric"]
    scheduler = make_scheduler(optimiser, config["scheduler"], config["epochs"], stop_metric != "val_loss")
    weights = class_weights(data.labels[torch.as_tensor(train_idx)], len(data.classes)).to(device) \
        if config["imbalance"] == "class_weights" else None
    criterion = torch.nn.CrossEntropyLoss(weight=weights)
    history, best, since_best, start_epoch = [], None, 0, 1
    gen = torch.Generator().manual_seed(config["seed"] + rank)  # augmentation draws
    last = rundir.checkpoint_path(run_dir, "last")
    if resume and last.exists():
        ckpt = load_checkpoint(last)
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimiser"])
        if scheduler is not None and ckpt.get("scheduler"):
            scheduler.load_state_dict(ckpt["scheduler"])
        history, best, since_best = ckpt["history"], ckpt["best"], ckpt["since_best"]
        gen.set_state(ckpt["generator"])
        start_epoch = ckpt["epoch"] + 1
        # time left is judged on the epochs this process trains, not on those done before the resume
        status(epoch=ckpt["epoch"], progress=ckpt["epoch"] / config["epochs"],
               progress_at_start=ckpt["epoch"] / config["epochs"])
        if lead:
            rundir.write_metrics(run_dir, history)  # drop any line written after the checkpoint
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        loop.model = model
    status(message=model_info["message"], pretrained=model_info["pretrained"],
           trainable_params=model_info["trainable_params"], classes=data.classes,
           counts={s: int(len(data.indices(s))) for s in ("train", "val", "test")})
    print(f"[lumen] {model_info['message']}", flush=True)
    print(f"[lumen] {len(train_idx)} train / {len(val_idx)} val / {len(data.indices('test'))} test images, "
          f"classes {data.classes}, device {device}, world {world}", flush=True)

    last_write = [0.0]

    def on_batch(done: int, total: int, epoch: int) -> None:
        now = time.time()
        if now - last_write[0] > PROGRESS_EVERY_S:
            last_write[0] = now
            status(progress=((epoch - 1) + done / total) / config["epochs"], batch=done, batches=total)

    epoch = start_epoch - 1
    stopped_early = False
    stop_now = stop_poll(should_stop, world)
    for epoch in range(start_epoch, config["epochs"] + 1):
        order = epoch_order(loop, train_idx, epoch)
        stats = train_one_epoch(loop, optimiser, criterion, order, gen, stop_now,
                                lambda d, t, e=epoch: on_batch(d, t, e))
        stats.update(evaluate(loop, val_idx, criterion))
        stats.update(epoch=epoch, lr=optimiser.param_groups[0]["lr"], time=time.time())
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(stats[stop_metric] if not math.isnan(stats[stop_metric]) else stats["val_loss"])
        elif scheduler is not None:
            scheduler.step()
        improved = is_better(stop_metric, stats[stop_metric], best)
        best, since_best = (stats[stop_metric], 0) if improved else (best, since_best + 1)
        stats["best"] = improved
        history.append(stats)
        if lead:
            state = {"model": _unwrap(model).state_dict(), "optimiser": optimiser.state_dict(),
                     "scheduler": scheduler.state_dict() if scheduler is not None else None,
                     "epoch": epoch, "config": config, "classes": data.classes, "in_channels": in_channels,
                     "norm": {"mean": mean, "std": std}, "history": history, "best": best,
                     "since_best": since_best, "generator": gen.get_state()}
            # best.pt first: last.pt records this epoch as the best, so a kill between the two writes
            # must not leave a last.pt that points at a best.pt never written (resume would not redo it)
            if improved:
                save_checkpoint(rundir.checkpoint_path(run_dir, "best"), state)
            save_checkpoint(last, state)
            rundir.write_metrics(run_dir, history)
            status(epoch=epoch, progress=epoch / config["epochs"], message=f"epoch {epoch} done")
            print(f"[lumen] epoch {epoch}/{config['epochs']} train loss {stats['train_loss']:.4f} "
                  f"acc {stats['train_accuracy']:.3f} | val loss {stats['val_loss']:.4f} acc {stats['val_accuracy']:.3f} "
                  f"auc {stats['val_auc']:.4f} | {stats['images_per_s']:.0f} img/s", flush=True)
        if _agree(since_best >= config["early_stopping"]["patience"], world):
            stopped_early = True
            break
    if lead:
        best_state = load_checkpoint(rundir.checkpoint_path(run_dir, "best"))
        _unwrap(model).load_state_dict(best_state["model"])
        status(message="writing predictions of the best model")
        write_predictions(loop, run_dir)
    reason = f"stopped early after epoch {epoch} ({stop_metric} did not improve for " \
             f"{config['early_stopping']['patience']} epochs)" if stopped_early else f"finished {epoch} epochs"
    final = status(state="finished", finished=time.time(), progress=1.0, message=reason, best_metric=best)
    if world > 1:
        import torch.distributed as dist
        dist.destroy_process_group()
    return final or {}


def failure_message(exc: BaseException) -> str:
    """A short reason for status.json; the full traceback goes to the log."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "out of GPU memory: lower the batch size or the image size, then resume"
    if isinstance(exc, MemoryError):
        return "out of memory: lower the batch size or the image size, then resume"
    return f"{type(exc).__name__}: {exc}"


def run_safely(config: dict, run_dir: Path, resume: bool, should_stop: Callable[[], bool]) -> int:
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
        print("[lumen] cancelled", flush=True)
        return 0
    except Exception as exc:
        traceback.print_exc()
        rundir.write_status(run_dir, state="failed", finished=time.time(), message=failure_message(exc))
        return 1
