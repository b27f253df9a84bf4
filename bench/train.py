"""Training speed: the naive per-epoch JPEG pipeline vs Lumen's engine, same model and data.

(a) naive, as the original studies did it: a torch Dataset that opens every image with PIL every
    epoch, squares and resizes it (core.preprocess.prepare), flips, ToTensor and Normalize, fed by
    a DataLoader (num_workers 0 and 2, otherwise its defaults), and a plain training loop.
(b) Lumen: core.train.run on a temporary run directory; images/s come from metrics.jsonl (training
    time only). The first ("cold") run also decodes every image into the cached array: one figure
    includes that cost. The second ("warm") run reads the cache.

(c) the ceiling: the same model, optimiser, loss, batch size and image size trained on one
    synthetic batch already in memory (no input pipeline at all), as many images as Lumen's epochs.

Both train the same simple_cnn (same optimiser, loss, class weights, batch size, flips) on the
same training items (Lumen's grouped split). One-time costs both share (building the model,
torch's first-batch warm-up) are left out of every figure. Each round runs everything on a
fresh private workspace, the ceiling right after Lumen's warm run; each figure is the median of
its rounds. The image cache's build is also measured for memory (tracemalloc's peak against the
array's size). Prints images/s, `ratio <Lumen warm / faster naive>`, and last
`ceiling_share <Lumen warm / ceiling>`.

    python -m bench.train [CSV] [--size 64] [--epochs 3] [--rounds 3] [--gpu-ceiling]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from core import rundir, train
from core.datacache import channels_for_rows, prepared_array
from core.models import build_model, set_train_mode
from core.preprocess import Preprocessor, prepare
from core.runconfig import dataset_spec, make_config
from core.scanning import scan, usable
from core.train.augment import augment
from core.train.data import load_data
from core.train.loop import Loop, epoch_order
from core.train.optim import build_for, class_weights, make_optimiser

ROOT = Path(__file__).resolve().parent.parent

DEMO_CSV = ROOT / "assets" / "demo" / "glomeruli" / "labels.csv"


def lumen_config(args) -> dict:
    """The run both pipelines imitate: flips only (what torchvision's two transforms do)."""
    return make_config({
        "name": "bench", "device": "cpu", "epochs": args.epochs, "batch_size": 32,
        "dataset": {"name": "bench", "source": {"path": str(Path(args.csv).resolve()), "kind": "csv",
                                                "label_column": args.label_column,
                                                "group_column": args.group_column}},
        "preprocess": {"size": args.size, "pad_mode": "zero", "fit": "pad"},
        "augment": {"hflip": True, "vflip": True, "rotate90": False},
        "model": {"name": "simple_cnn", "pretrained": "none"},
        "early_stopping": {"patience": args.epochs + 1, "metric": "val_auc"},
    })


# ---------------------------------------------------------------- (a) the naive way


class JpegDataset(Dataset):
    """Decodes, squares and resizes one image per __getitem__, every epoch."""

    def __init__(self, paths: list[str], labels: list[int], size: int, transform):
        self.paths, self.labels, self.size, self.transform = paths, labels, size, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as img:
            arr = np.asarray(img.convert("RGB"))
        return self.transform(Image.fromarray(prepare(arr, self.size))), self.labels[i]


def naive_loader(train_items: pd.DataFrame, classes: list[str], size: int, workers: int) -> DataLoader:
    transform = transforms.Compose([
        transforms.RandomHorizontalFlip(), transforms.RandomVerticalFlip(), transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
    ])
    labels = [classes.index(label) for label in train_items["label"]]
    dataset = JpegDataset(train_items["path"].tolist(), labels, size, transform)
    return DataLoader(dataset, batch_size=32, shuffle=True, num_workers=workers)


def naive_train(config: dict, loader: DataLoader, n_classes: int) -> list[float]:
    """A plain training loop; returns the seconds of each epoch (data loading included)."""
    torch.manual_seed(0)
    model, _ = build_for(config, n_classes, 3)
    optimiser = make_optimiser(model.parameters(), config["optimiser"])
    labels = torch.as_tensor(loader.dataset.labels)
    criterion = torch.nn.CrossEntropyLoss(weight=class_weights(labels, n_classes))
    seconds = []
    for _ in range(config["epochs"]):
        start = time.perf_counter()
        model.train()
        for x, y in loader:
            loss = criterion(model(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            loss.item()
        seconds.append(time.perf_counter() - start)
    return seconds


def naive_input_seconds(loader: DataLoader, epochs: int) -> float:
    """The naive input pipeline alone: every batch decoded and transformed, no model."""
    start = time.perf_counter()
    for _ in range(epochs):
        for _batch in loader:
            pass
    return time.perf_counter() - start


# ---------------------------------------------------------------- (b) Lumen's engine


def lumen_run(config: dict, run_dir: Path) -> dict:
    """core.train.run, timed: preparation until the first batch, then the epochs' wall clock."""
    first_batch = []

    def should_stop() -> bool:  # called before every batch: the first call ends the preparation
        if not first_batch:
            first_batch.append(time.time())
        return False

    start = time.time()
    with contextlib.redirect_stdout(io.StringIO()):  # the engine's per-epoch log lines
        train.run(config, run_dir, should_stop=should_stop)
    metrics = rundir.read_metrics(run_dir)
    return {"prepare_s": first_batch[0] - start, "train_s": metrics["seconds"].tolist(),
            "epochs_wall_s": metrics["time"].iloc[-1] - first_batch[0]}


def lumen_input_seconds(config: dict) -> float:
    """Lumen's input pipeline alone (warm cache): batches cut from the array, augmented, normalised."""
    data = load_data(config)
    train_idx = data.indices("train")
    loop = Loop(torch.nn.Identity(), data, torch.device("cpu"), data.preprocessor.fitted(data.pixels, train_idx),
                config)
    gen, size = torch.Generator().manual_seed(0), config["batch_size"]
    start = time.perf_counter()
    for epoch in range(1, config["epochs"] + 1):
        order = epoch_order(loop, train_idx, epoch)
        for b in range(0, len(order), size):
            loop.normalise(augment(loop.to_input(order[b:b + size]), config["augment"], gen))
    return time.perf_counter() - start


def model_build_seconds(config: dict, n_classes: int) -> float:
    start = time.perf_counter()
    build_for(config, n_classes, 3)
    return time.perf_counter() - start


def warm_up(config: dict) -> None:
    """One untimed forward/backward so no figure pays torch's first-call costs."""
    model, _ = build_for(config, 2, 3)
    size = config["preprocess"]["size"]
    model(torch.rand(config["batch_size"], 3, size, size)).sum().backward()


def train_items(run_dir: Path, csv: Path) -> pd.DataFrame:
    """The run's training items (Lumen's split) with their file paths, for the naive pipeline."""
    predictions = pd.read_parquet(rundir.predictions_path(run_dir))
    items = predictions[predictions["split"] == "train"]
    return items.assign(path=[str(csv.parent / item_id) for item_id in items["item_id"]])


# ---------------------------------------------------------------- (c) the synthetic-data ceiling


def ceiling_seconds(config: dict, n_images: int, n_classes: int) -> float:
    """Lumen's training step (train mode, loss on the device, zero_grad, backward, step) on one
    synthetic batch in memory, channels-last as Lumen feeds it: what no input pipeline can beat."""
    torch.manual_seed(0)
    model, _ = build_for(config, n_classes, 3)
    model = model.to(memory_format=torch.channels_last)
    optimiser = make_optimiser(model.parameters(), config["optimiser"])
    batch, size = config["batch_size"], config["preprocess"]["size"]
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, n_classes, (batch,))
    criterion = torch.nn.CrossEntropyLoss(weight=class_weights(y, n_classes))
    start = time.perf_counter()
    for _ in range(config["epochs"]):
        set_train_mode(model, config["model"]["freeze"])
        total = torch.zeros(())
        for first in range(0, n_images, batch):
            n = min(batch, n_images - first)
            logits = model(x[:n])
            loss = criterion(logits.float(), y[:n])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.detach() * n
        total.item()
    return time.perf_counter() - start


def cache_build_memory(config: dict) -> tuple[int, int, int]:
    """Images, the cached array's bytes, and tracemalloc's peak while building it on a fresh workspace."""
    with tempfile.TemporaryDirectory(prefix="lumen-bench-cache-") as home:
        os.environ["LUMEN_HOME"] = home
        manifest = scan(dataset_spec(config))
        rows = manifest.loc[usable(manifest)].reset_index(drop=True)
        preprocessor = Preprocessor.from_config(config["preprocess"], channels_for_rows(rows))
        tracemalloc.start()
        try:
            array = prepared_array(rows, preprocessor)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return len(rows), array.nbytes, peak


# ---------------------------------------------------------------- GPU ceiling


def gpu_ceiling(batch: int = 256, steps: int = 30) -> str:
    """ResNet18 at 224 px on synthetic data already on the GPU: the speed no input pipeline beats."""
    if not torch.cuda.is_available():
        return "gpu ceiling: skipped (no CUDA device)"
    device = torch.device("cuda")
    model, _ = build_model("resnet18", 2, in_channels=3, pretrained="none")
    model = model.to(device, memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,), device=device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    rate = batch * steps / (time.perf_counter() - start)
    return f"gpu ceiling: ResNet18 224 px, bf16, batch {batch}, {torch.cuda.get_device_name()}: {rate:.0f} images/s"


# ---------------------------------------------------------------- report


FIGURES = {
    "naive0": "(a) naive PIL Dataset + DataLoader(num_workers=0)",
    "naive2": "(a) naive PIL Dataset + DataLoader(num_workers=2)",
    "cold": "(b) Lumen cold: scan + decode + cache build, then training",
    "cold_train": "(b) Lumen cold, training only (metrics.jsonl)",
    "warm": "(b) Lumen warm, training only (metrics.jsonl)",
    "warm_wall": "(b) Lumen warm, epochs wall clock (+ val pass, checkpoints)",
    "naive_input": "(a) input pipeline alone, no model (num_workers=0)",
    "lumen_input": "(b) input pipeline alone, no model (cached array)",
    "ceiling": "(c) ceiling: the same training step on synthetic data in memory",
}


def one_round(args, config: dict, build_s: float) -> tuple[dict, int]:
    """Seconds behind each figure, measured on a fresh workspace (so the cold run is cold)."""
    with tempfile.TemporaryDirectory(prefix="lumen-bench-train-") as home:
        os.environ["LUMEN_HOME"] = home
        cold = lumen_run(config, Path(home) / "runs" / "cold")
        items = train_items(Path(home) / "runs" / "cold", Path(args.csv).resolve())
        classes = json.loads((Path(home) / "runs" / "cold" / "status.json").read_text())["classes"]
        warm = lumen_run(config, Path(home) / "runs" / "warm")
        ceiling = ceiling_seconds(config, len(items), len(classes))
        lumen_input = lumen_input_seconds(config)
    seconds = {f"naive{w}": sum(naive_train(config, naive_loader(items, classes, args.size, w), len(classes)))
               for w in (0, 2)}
    seconds.update(naive_input=naive_input_seconds(naive_loader(items, classes, args.size, 0), args.epochs),
                   lumen_input=lumen_input)
    seconds.update(cold=cold["prepare_s"] - build_s + sum(cold["train_s"]), cold_train=sum(cold["train_s"]),
                   warm=sum(warm["train_s"]), ceiling=ceiling, warm_wall=warm["epochs_wall_s"],
                   prepare_cold=cold["prepare_s"] - build_s, prepare_warm=warm["prepare_s"] - build_s)
    return seconds, len(items) * args.epochs


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", default=str(DEMO_CSV))
    parser.add_argument("--label-column", default="class")
    parser.add_argument("--group-column", default="slide_id")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="repeat everything; report each figure's median round")
    parser.add_argument("--gpu-ceiling", action="store_true", help="also time ResNet18 on synthetic GPU data")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    config = lumen_config(args)
    print(f"data: {args.csv}, simple_cnn at {args.size} px, {args.epochs} epochs, batch 32, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"load average {os.getloadavg()[0]:.2f}")
    images, array_bytes, peak = cache_build_memory(config)
    print(f"image cache build: {images} images, array {array_bytes / 2**20:.1f} MiB, traced peak "
          f"{peak / 2**20:.2f} MiB ({peak / array_bytes:.2f} x the array)")
    warm_up(config)
    build_s = model_build_seconds(config, 2)
    rounds = []
    for i in range(args.rounds):
        seconds, n = one_round(args, config, build_s)
        rounds.append(seconds)
        print(f"round {i + 1}: {n} training images; images/s " +
              ", ".join(f"{key} {n / seconds[key]:.0f}" for key in FIGURES) +
              f"; preparation cold {seconds['prepare_cold']:.2f} s, warm {seconds['prepare_warm']:.2f} s; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(f"median of {args.rounds} round(s), {n} training images each "
          f"(Lumen's first-run scan + decode + cache build: {median['prepare_cold']:.2f} s):")
    for key, label in FIGURES.items():
        print(f"{label:66s} {n / median[key]:8.0f} images/s")
    if args.gpu_ceiling:
        print(gpu_ceiling())
    baseline = min(("naive0", "naive2"), key=median.get)
    shares = [r["ceiling"] / r["warm"] for r in rounds]
    print(f"baseline (a): {FIGURES[baseline][4:]} (the faster); load average now {os.getloadavg()[0]:.2f}")
    print(f"ceiling share per round: {', '.join(f'{share:.2f}' for share in shares)}")
    print(f"ratio {median[baseline] / median['warm']:.2f}")
    print(f"ceiling_share {statistics.median(shares):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
