"""The run config: every choice that defines a training run, validated before anything starts.

Stored as config.json in the run directory and inside every checkpoint, so a run can be
resumed, repeated or compared without the page that launched it.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from core.preprocess import check_options
from core.sources import SourceSpec
from core.workspace import PROJECT_ROOT

OPTIMISERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "step", "cosine", "plateau")
IMBALANCE = ("none", "class_weights", "sampler")
STOP_METRICS = ("val_loss", "val_auc", "val_accuracy")
DEVICES = ("auto", "cpu", "cuda", "mps")

DEFAULTS: dict = {
    "name": "",
    "dataset": {"name": "", "source": {}},
    "split": {"ratios": [0.8, 0.1, 0.1], "seed": 0, "grouped": True},
    "preprocess": {"size": 64, "pad_mode": "zero", "fit": "pad"},
    "augment": {"hflip": True, "vflip": True, "rotate90": True, "rotation": 0.0, "shift": 0.0,
                "color_jitter": 0.0},
    "model": {"name": "simple_cnn", "freeze": False, "pretrained": "auto", "options": {}},
    "optimiser": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "momentum": 0.9},
    "scheduler": {"name": "cosine", "step_size": 10, "gamma": 0.1, "patience": 3},
    "epochs": 20,
    "batch_size": 32,
    "early_stopping": {"patience": 8, "metric": "val_loss"},  # AUC saturates early on small val sets
    "imbalance": "class_weights",
    "seed": 0,
    "repeats": 1,
    "device": "auto",
    "amp": True,
}


class ConfigError(ValueError):
    """A config that cannot run; the message names the field and what to change."""


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("source", "options"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def make_config(overrides: dict | None = None) -> dict:
    """DEFAULTS with the given fields replaced (nested dicts merge), validated."""
    config = _merge(DEFAULTS, overrides or {})
    validate(config)
    return config


def load_config(path: str | Path) -> dict:
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"No config file at {path}.") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    return make_config(raw)


def dataset_spec(config: dict) -> SourceSpec:
    """The run's dataset; a relative path is relative to the repository, so committed configs
    (the demo run, configs/) work wherever the repository is cloned."""
    source = dict(config["dataset"].get("source") or {})
    if source.get("path") and not Path(source["path"]).is_absolute():
        source["path"] = str((PROJECT_ROOT / source["path"]).resolve())
    return SourceSpec.from_dict(source)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _positive_int(value, field: str) -> None:
    _require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
             f"{field} must be a whole number above 0, not {value!r}.")


def _whole(value, field: str) -> None:
    _require(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
             f"{field} must be a whole number, 0 or more, not {value!r}.")


def _numbers(fields: dict) -> None:
    """Every value a number (JSON written by hand often quotes one), before any comparison."""
    for field, value in fields.items():
        _require(isinstance(value, (int, float)) and not isinstance(value, bool),
                 f"{field} must be a number, not {value!r}.")


def validate(config: dict) -> None:
    """Raise ConfigError for the first thing that would make the run fail."""
    from core.models import MODELS, min_input_size  # models import torch; config checks import alone

    _require(bool((config["dataset"].get("source") or {}).get("path")),
             "dataset.source.path is missing: choose a dataset.")
    path = dataset_spec(config).path
    _require(Path(path).exists(), f"The dataset path {path} does not exist.")
    model = config["model"]["name"]
    _require(model in MODELS, f"Unknown model '{model}': use one of {', '.join(MODELS)}.")
    _positive_int(config["epochs"], "epochs")
    _positive_int(config["batch_size"], "batch_size")
    _positive_int(config["repeats"], "repeats")
    _positive_int(config["early_stopping"]["patience"], "early_stopping.patience")
    _whole(config["seed"], "seed")
    _whole(config["split"]["seed"], "split.seed")
    opt, aug = config["optimiser"], config["augment"]
    _numbers({"optimiser.lr": opt["lr"], "optimiser.weight_decay": opt["weight_decay"],
              "optimiser.momentum": opt["momentum"], "augment.shift": aug["shift"],
              "augment.rotation": aug["rotation"], "augment.color_jitter": aug["color_jitter"],
              **{f"split.ratios[{i}]": r for i, r in enumerate(config["split"]["ratios"])}})
    ratios = config["split"]["ratios"]
    _require(len(ratios) == 3 and all(r >= 0 for r in ratios) and ratios[0] > 0,
             "split.ratios must be three non-negative shares (train, val, test) with train above 0.")
    prep = config["preprocess"]
    try:
        check_options(prep["size"], prep["pad_mode"], prep["fit"])
        smallest = min_input_size(model, config["model"].get("options"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    _require(prep["size"] >= smallest, f"{model} needs images of at least {smallest} px; "
                                       f"preprocess.size is {prep['size']}.")
    _require(opt["name"] in OPTIMISERS, f"Unknown optimiser '{opt['name']}': use one of {', '.join(OPTIMISERS)}.")
    _require(opt["lr"] > 0, f"The learning rate must be above 0, not {opt['lr']}.")
    _require(opt["weight_decay"] >= 0, "weight_decay must not be negative.")
    _require(config["scheduler"]["name"] in SCHEDULERS,
             f"Unknown scheduler '{config['scheduler']['name']}': use one of {', '.join(SCHEDULERS)}.")
    _require(config["imbalance"] in IMBALANCE,
             f"Unknown imbalance handling '{config['imbalance']}': use one of {', '.join(IMBALANCE)}.")
    _require(config["early_stopping"]["metric"] in STOP_METRICS,
             f"Unknown early-stopping metric: use one of {', '.join(STOP_METRICS)}.")
    _require(config["device"] in DEVICES, f"Unknown device '{config['device']}': use one of {', '.join(DEVICES)}.")
    _require(0 <= aug["shift"] < 0.5, "augment.shift is a fraction of the image size between 0 and 0.5.")
    _require(0 <= aug["rotation"] <= 180, "augment.rotation is in degrees, between 0 and 180.")
    _require(0 <= aug["color_jitter"] < 1, "augment.color_jitter is a strength between 0 and 1.")
