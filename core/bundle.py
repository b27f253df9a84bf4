"""A run's best model as a folder that predicts without Lumen: the model out of the house.

A collaborator, a hospital server or a course's grader gets a folder that needs only torch,
pillow and numpy::

    model.pt              the best model, TorchScript (traced on the CPU): logits for a (B, C, S, S) input
    preprocessor.json     Preprocessor.to_dict(): size, pad mode, fit, channels, mean and std
    classes.json          the class names, in the model's output order
    operating_point.json  positive class, threshold and temperature of the decision
    MODEL_CARD.md         data, split, model, training, test metrics with 95% intervals, intended use
    predict.py            core/bundle_predict.py, copied verbatim: images in, CSV out

The model card's metrics come from `core.evaluation.evaluate_run`, the numbers `core evaluate`
prints, so the card and the run cannot disagree.
"""
from __future__ import annotations

import datetime
import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import torch
from torch import nn

from core import evaluation, metrics, rundir, workspace
from core.predict import decision
from core.preprocess import Preprocessor
from core.roles import Identity, require
from core.runmodel import load_run_model, preprocessor_of

PREDICT_TEMPLATE = Path(__file__).with_name("bundle_predict.py")
MODEL, PREPROCESSOR, CLASSES, OPERATING_POINT, CARD, SCRIPT = (
    "model.pt", "preprocessor.json", "classes.json", "operating_point.json", "MODEL_CARD.md", "predict.py")
Writer = Callable[[BinaryIO], object]
#: What the card says the model is for; a bundle travels further than the app's own warnings.
INTENDED_USE = ("For research only: exploring how well a classifier separates these images, and where it fails. "
                "It is not a medical device and must not be used for diagnosis or any decision about a patient. "
                "Its figures hold for images like its training data (same stain, scanner, magnification and "
                "cropping); check it on your own labelled images first (`python -m core predict`, then "
                "`python -m core evaluate --set`).")


def traced_model(model: nn.Module, preprocessor: Preprocessor) -> torch.jit.ScriptModule:
    """The model as TorchScript, traced on the CPU at its input size (any batch size runs); it
    loads with torch alone, without Lumen's or torchvision's model code."""
    example = torch.rand(2, preprocessor.channels, preprocessor.size, preprocessor.size)
    with _quiet_torchscript(), torch.no_grad():
        traced: torch.jit.ScriptModule = torch.jit.trace(  # type: ignore[no-untyped-call]
            model.eval().cpu(), preprocessor.normalise(example))
    return traced


@contextmanager
def _quiet_torchscript() -> Iterator[None]:
    """torch marks TorchScript deprecated (for torch.export); its files still load with torch alone,
    in any recent version and from C++, which is what a bundle is for."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _save_traced(traced: torch.jit.ScriptModule, handle: BinaryIO) -> None:
    with _quiet_torchscript():
        torch.jit.save(traced, handle)


def write_bundle(run_dir: Path, out: Path, *, who: Identity | str) -> list[Path]:
    """Write the bundle of a finished run into `out` (created; earlier bundle files replaced)."""
    require(who, "export data")
    run_dir, out = Path(run_dir), Path(out)
    predictions = rundir.read_predictions(run_dir)  # a finished run, with its own labels and splits
    model, ckpt = load_run_model(run_dir)
    preprocessor = preprocessor_of(ckpt)
    rule, saved = decision(run_dir), evaluation.load_operating_point(run_dir) or {}
    point: dict[str, Any] = {"positive_class": rule.positive, "threshold": rule.threshold,
                             "temperature": rule.temperature, "saved": rule.source == "saved",
                             **{k: saved[k] for k in ("tuned_on", "method") if k in saved}}
    traced = traced_model(model, preprocessor)
    files: dict[str, Writer] = {
        MODEL: lambda handle: _save_traced(traced, handle),
        PREPROCESSOR: _json(preprocessor.to_dict()),
        CLASSES: _json(list(ckpt["classes"])),
        OPERATING_POINT: _json(point),
        CARD: _text(model_card(run_dir, predictions, ckpt, point)),
        SCRIPT: _bytes(PREDICT_TEMPLATE.read_bytes()),
    }
    for name, write in files.items():
        workspace.atomic_write(out / name, write)
    return [out / name for name in files]


def _json(value: Any) -> Writer:
    return _text(json.dumps(value, indent=2) + "\n")


def _text(text: str) -> Writer:
    return _bytes(text.encode())


def _bytes(data: bytes) -> Writer:
    return lambda handle: handle.write(data)


# ---------------------------------------------------------------- the model card


def model_card(run_dir: Path, predictions: pd.DataFrame, ckpt: dict[str, Any], point: dict[str, Any]) -> str:
    """MODEL_CARD.md: what the model was trained on, how, how well it did on test, and what for."""
    config = rundir.read_config(run_dir)
    made = (f"Made by Lumen on {datetime.date.today().isoformat()} from the run `{Path(run_dir).name}` (the best "
            f"model, of epoch {rundir.best_epoch(run_dir)} of {len(rundir.read_metrics(run_dir))} trained).")
    files = ("`model.pt` is TorchScript: `torch.jit.load(\"model.pt\")` takes a (B, C, S, S) float tensor prepared "
             "as `preprocessor.json` says and returns one logit per class of `classes.json`. "
             "`python predict.py IMAGES... --out predictions.csv` does all of that (torch, pillow and numpy only).")
    sections = [
        [f"# Model card: {config.get('name') or Path(run_dir).name}", made],
        ["## Intended use", INTENDED_USE],
        _data_section(config, predictions),
        _model_section(config, preprocessor_of(ckpt), bool(rundir.read_status(run_dir).get("pretrained"))),
        _metrics_section(run_dir, point),
        ["## Files", files],
    ]
    return "\n\n".join("\n\n".join(section) for section in sections) + "\n"


def _data_section(config: dict[str, Any], predictions: pd.DataFrame) -> list[str]:
    dataset, split = config.get("dataset", {}), config.get("split", {})
    source = dataset.get("source", {})
    counts = pd.crosstab(predictions["split"], predictions["label"])
    counts = counts.reindex([s for s in rundir.RUN_SPLITS if s in counts.index])
    classes = [str(c) for c in counts.columns]
    table = [f"| split | {' | '.join(classes)} | total |", "|---" * (len(classes) + 2) + "|"]
    table += [f"| {s} | {' | '.join(str(int(n)) for n in row)} | {int(row.sum())} |" for s, row in counts.iterrows()]
    ratios = "/".join(f"{r:g}" for r in split.get("ratios", []))
    grouped = (f"grouped by `{source['group_column']}`, so no group sits in two splits"
               if split.get("grouped", True) and source.get("group_column") else "not grouped")
    label = source.get("label_column") or "the class folders"
    return ["## Data",
            f"Dataset: {dataset.get('name') or 'unnamed'} (`{source.get('path')}`, labels from {label}).",
            "\n".join(table),
            (f"Split: train/val/test ratios {ratios}, seed {split.get('seed')}, {grouped}; a source's own "
             "splits are kept where it has them.")]


def _model_section(config: dict[str, Any], prep: Preprocessor, pretrained: bool) -> list[str]:
    model, opt, sched = config.get("model", {}), config.get("optimiser", {}), config.get("scheduler", {})
    options = ", ".join(f"{k} {v}" for k, v in (model.get("options") or {}).items())
    augment = ", ".join(k for k, v in config.get("augment", {}).items() if v) or "none"
    fit = f"pad ({prep.pad_mode})" if prep.fit == "pad" else prep.fit
    start = f"pretrained weights ({model.get('pretrained')})" if pretrained else "random initialisation"
    trained = "frozen backbone, head trained" if model.get("freeze") else "all layers trained"
    lines = [
        f"- model: {model.get('name')}{f' ({options})' if options else ''}, from {start}, {trained}",
        (f"- input: {prep.size} x {prep.size} px, fit {fit}, {prep.channels} channel(s), normalisation "
         f"{prep.normalize} (mean {_numbers(prep.mean)}, std {_numbers(prep.std)})"),
        (f"- training: {config.get('epochs')} epochs, batch {config.get('batch_size')}, {opt.get('name')} "
         f"(lr {opt.get('lr')}, weight decay {opt.get('weight_decay')}), schedule {sched.get('name')}, early "
         f"stopping on {config.get('early_stopping', {}).get('metric')}, imbalance {config.get('imbalance')}, "
         f"augmentation {augment}, seed {config.get('seed')}"),
    ]
    return ["## Model and training", "\n".join(lines)]


def _numbers(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def _metrics_section(run_dir: Path, point: dict[str, Any]) -> list[str]:
    """The test split at the bundle's operating point, with 95% intervals (core.metrics.intervals)."""
    scale = f", temperature {point['temperature']:g}" if point["temperature"] != 1.0 else ""
    how = (f"saved (tuned on {point.get('tuned_on')}, {point.get('method')})" if point["saved"]
           else "no saved operating point, so 0.5")
    head = ["## Test metrics", (f"Positive class {point['positive_class']} (one against the rest), threshold "
                                f"{point['threshold']:.4f}{scale}: {how}.")]
    try:
        report = evaluation.evaluate_run(run_dir, "test")
    except ValueError as exc:
        return [*head, f"No test figures: {exc}"]
    intervals = report["intervals_95"]
    table = ["| metric | value | 95% interval |", "|---|---|---|"]
    for name, value in report["metrics"].items():
        interval = f"{intervals[name][0]:.3f} to {intervals[name][1]:.3f}" if name in intervals else ""
        table.append(f"| {name} | {_fmt(value)} | {interval} |")
    table += [f"| ROC AUC | {_fmt(report['roc_auc'])} | |",
              f"| average precision | {_fmt(report['average_precision'])} | |"]
    (tn, fp), (fn, tp) = report["confusion_matrix"]
    counts = (f"{report['n']} test images, {report['positives']} of them positive: TP {tp}, FP {fp}, FN {fn}, "
              f"TN {tn}.")
    return [*head, counts, "\n".join(table),
            f"{metrics.INTERVALS_NOTE} A small test split gives wide intervals."]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
