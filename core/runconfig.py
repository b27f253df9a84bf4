"""The run config: every choice that defines a training run, validated before anything starts.

Stored as config.json in the run directory and inside every checkpoint, so a run can be
resumed, repeated or compared without the page that launched it. The pydantic models below are
the one place for each field's type, default, choices and bounds; the trainer, run directories and
checkpoints keep plain dicts (`make_config` returns `model_dump()`).
"""
from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from core.preprocess import MAX_SIZE, MIN_SIZE, FitMode, Normalisation, PadMode
from core.sources import SourceSpec
from core.workspace import PROJECT_ROOT


class ConfigError(ValueError):
    """A config that cannot run; the message names the field and what to change."""


class _Part(BaseModel):
    """A group of fields that refuses unknown keys (a typo must not fall back to a default),
    quoted numbers and bools as numbers (hand-written JSON), and Infinity/NaN (JSON literals
    Python's parser accepts)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Dataset(_Part):
    name: str = ""
    source: dict[str, Any] = Field(default_factory=dict)  # a SourceSpec as a dict, replaced whole


#: The most runs one launch makes (repeats, folds, a study's grid): a slip of a digit must not queue
#: a week of training.
MAX_RUNS = 100


class Split(_Part):
    ratios: list[float] = Field(default_factory=lambda: [0.8, 0.1, 0.1])  # train, val, test shares
    seed: int = Field(default=0, ge=0)
    grouped: bool = True
    # cross-validation: folds > 1 makes one run per fold, whose held-out fold is its test split and
    # whose other folds are split into train and val by the first two ratios
    folds: int = Field(default=1, ge=1, le=20)
    fold: int | None = Field(default=None, ge=0)  # set on each fold's own run; None: every fold
    reseed: bool = False  # each repeat draws its own split (split seed + repeat), not only its own training seed


class Subset(_Part):
    """A smaller run on part of the data (a quick try, a learning curve), drawn before the split."""

    fraction: float | None = Field(default=None, gt=0, le=1)  # share of each class; None: all of it
    per_class: int | None = Field(default=None, ge=1)  # most items kept per class; None: no cap
    seed: int = Field(default=0, ge=0)


class Preprocess(_Part):
    size: int = Field(default=64, ge=MIN_SIZE, le=MAX_SIZE)
    pad_mode: PadMode = "zero"
    fit: FitMode = "pad"
    normalize: Normalisation = "train"  # "train": the training split's statistics


class Augment(_Part):
    hflip: bool = True
    vflip: bool = True
    rotate90: bool = True
    rotation: float = Field(default=0.0, ge=0, le=180)  # degrees either way
    shift: float = Field(default=0.0, ge=0, lt=0.5)  # share of the image size
    color_jitter: float = Field(default=0.0, ge=0, lt=1)  # brightness and contrast, each by up to this share
    saturation: float = Field(default=0.0, ge=0, lt=1)  # saturation by up to this share (torchvision's ColorJitter)
    hue: float = Field(default=0.0, ge=0, le=0.5)  # hue shift by up to this share of the colour circle


class Model(_Part):
    name: str = "simple_cnn"  # checked against core.model_catalogue, which imports this module
    freeze: bool = False
    pretrained: str = "auto"  # "auto", "none" or the path of a .pth state dict
    options: dict[str, Any] = Field(default_factory=dict)  # typed by the model's ModelOptions, replaced whole


class Optimiser(_Part):
    name: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    momentum: float = Field(default=0.9, gt=0, lt=1)  # SGD's; Nesterov momentum needs it above 0
    nesterov: bool = True  # SGD's; False gives plain (heavy-ball) momentum


class Scheduler(_Part):
    name: Literal["none", "step", "cosine", "plateau"] = "cosine"
    step_size: int = Field(default=10, gt=0)
    gamma: float = Field(default=0.1, gt=0, lt=1)  # also the plateau factor, which torch wants below 1
    patience: int = Field(default=3, ge=0)


class EarlyStopping(_Part):
    patience: int = Field(default=8, gt=0)
    metric: Literal["val_loss", "val_auc", "val_accuracy"] = "val_loss"  # AUC saturates early on small val sets


class RunConfig(_Part):
    name: str = ""
    dataset: Dataset = Field(default_factory=Dataset)
    split: Split = Field(default_factory=Split)
    subset: Subset = Field(default_factory=Subset)
    preprocess: Preprocess = Field(default_factory=Preprocess)
    augment: Augment = Field(default_factory=Augment)
    model: Model = Field(default_factory=Model)
    optimiser: Optimiser = Field(default_factory=Optimiser)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    epochs: int = Field(default=20, gt=0)
    batch_size: int = Field(default=32, gt=0)
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    imbalance: Literal["none", "class_weights", "sampler"] = "class_weights"
    seed: int = Field(default=0, ge=0)
    repeats: int = Field(default=1, ge=1, le=MAX_RUNS)  # one run folder per seed
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    amp: bool = True


class ModelOptions(_Part):
    """The options a model's builder takes (core.model_catalogue.ModelEntry.options); torchvision's take none."""


class LogisticOptions(ModelOptions):
    grid: int = Field(default=16, ge=1, le=64)  # side of the downsampled image the linear model sees


class SimpleCnnOptions(ModelOptions):
    blocks: int = Field(default=4, ge=1, le=8)  # each halves the image, so the input needs 2**blocks px
    width: int = Field(default=32, ge=1, le=1024)  # channels of the first block, doubling per block
    dropout: float = Field(default=0.3, ge=0, lt=1)


# ---------------------------------------------------------------- pydantic's errors as plain sentences

_P = TypeVar("_P", bound=BaseModel)
_KINDS = {"bool_type": "true or false", "string_type": "text", "list_type": "a list",
          "dict_type": "a group of fields ({...})", "model_type": "a group of fields ({...})"}
_NUMBER_ERRORS = {"int_type", "int_parsing", "int_from_float", "float_type", "float_parsing", "finite_number",
                  "greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _walk(schema: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[type[BaseModel], FieldInfo | None]:
    """The part holding the last key of `loc`, and that key's field (None for an unknown key);
    list indices (split.ratios[0]) belong to their list's field."""
    part, info = schema, None
    for key in loc:
        if isinstance(key, int):
            continue
        if info is not None:
            part = cast(type[BaseModel], info.annotation)
        info = part.model_fields.get(key)
    return part, info


def _place(loc: tuple[int | str, ...]) -> str:
    """("split", "ratios", 0) -> "split.ratios[0]"."""
    text = ""
    for key in loc:
        text += f"[{key}]" if isinstance(key, int) else f".{key}" if text else key
    return text


def _limits(info: FieldInfo) -> dict[str, float]:
    """The field's gt/ge/lt/le constraints."""
    return {name: getattr(rule, name) for rule in info.metadata for name in ("gt", "ge", "lt", "le")
            if getattr(rule, name, None) is not None}


def _is_whole(info: FieldInfo) -> bool:
    """An int field, optional (`int | None`) or not."""
    return info.annotation is int or int in get_args(info.annotation)


def _range(limits: Mapping[str, float]) -> str:
    """The words after "a number": " above 0", " from 1 to 100", ", 0 or more"."""
    ge, gt, le, lt = (limits.get(name) for name in ("ge", "gt", "le", "lt"))
    if ge is not None and le is not None:
        return f" from {ge} to {le}"
    if ge is not None and lt is not None:
        return f" from {ge} up to (not including) {lt}"
    if ge is not None:
        return f", {ge} or more"
    low = f"above {gt}" if gt is not None else ""
    high = f"at most {le}" if le is not None else f"below {lt}" if lt is not None else ""
    text = " and ".join(word for word in (low, high) if word)
    return f" {text}" if text else ""


def _sentence(schema: type[BaseModel], error: ErrorDetails, prefix: tuple[str, ...]) -> str:
    """One pydantic error as a sentence that names the field's place and what it must be."""
    loc, kind, value = error["loc"], error["type"], error.get("input")
    place = _place(prefix + loc) or "The config"
    part, info = _walk(schema, loc)
    if kind == "extra_forbidden":
        names = list(part.model_fields)
        close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.5)
        hint = (f"did you mean `{close[0]}`?" if close else
                f"use one of {', '.join(f'`{n}`' for n in names)}." if names else "nothing is accepted here.")
        return f"Unknown field {place}: {hint}"
    if kind == "literal_error":
        return f"{place} must be one of {error.get('ctx', {}).get('expected')}, not {value!r}."
    if kind in _NUMBER_ERRORS and info is not None:
        noun = ("a whole number" if _is_whole(info) else
                "a finite number" if kind == "finite_number" else "a number")
        return f"{place} must be {noun}{_range(_limits(info))}, not {value!r}."
    if kind in _KINDS:
        return f"{place} must be {_KINDS[kind]}, not {value!r}."
    return f"{place}: {error['msg']}."


def _parse(schema: type[_P], data: object, prefix: tuple[str, ...] = ()) -> _P:
    """`schema.model_validate`, with every error in the ConfigError's plain sentences."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(" ".join(_sentence(schema, e, prefix) for e in exc.errors())) from exc


def model_options(schema: type[ModelOptions], options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A model's options with its defaults filled in; ConfigError names model.options.<key>."""
    return _parse(schema, options or {}, ("model", "options")).model_dump()


# ---------------------------------------------------------------- for the form: one place for each default

def _field(dotted: str) -> FieldInfo:
    _, info = _walk(RunConfig, tuple(dotted.split(".")))
    if info is None:
        raise KeyError(f"The run config has no field {dotted}.")
    return info


def defaults() -> dict[str, Any]:
    """The whole config with every default, as make_config would store it."""
    return RunConfig().model_dump()


def choices(field: str) -> tuple[str, ...]:
    """The values a choice field takes, e.g. choices("optimiser.name")."""
    return get_args(_field(field).annotation)


def bounds(field: str) -> tuple[float | None, float | None]:
    """The smallest and largest value of a number field (None: no limit), for a widget's range.

    A whole number's exclusive limit moves one step in (gt=0 -> 1); a float's is returned as it is.
    """
    info = _field(field)
    limits, step = _limits(info), 1 if _is_whole(info) else 0
    low = limits.get("ge", limits["gt"] + step if "gt" in limits else None)
    high = limits.get("le", limits["lt"] - step if "lt" in limits else None)
    return low, high


# ---------------------------------------------------------------- the public interface

def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _source_spec(source: Mapping[str, Any]) -> SourceSpec:
    """A relative path is relative to the repository, so committed configs (the demo run,
    configs/) work wherever the repository is cloned."""
    source = dict(source)
    if source.get("path") and not Path(source["path"]).is_absolute():
        source["path"] = str((PROJECT_ROOT / source["path"]).resolve())
    return SourceSpec.from_dict(source)


def dataset_spec(config: Mapping[str, Any]) -> SourceSpec:
    """The run's dataset."""
    return _source_spec(config["dataset"].get("source") or {})


def _check(run: RunConfig) -> None:
    """What no single field can say: the dataset is there, the model exists, takes its options
    and fits the image size, and the ratios make a split."""
    from core.model_catalogue import CATALOGUE, min_input_size  # it imports the options classes here

    _require(bool(run.dataset.source.get("path")), "dataset.source.path is missing: choose a dataset.")
    path = _source_spec(run.dataset.source).path
    _require(Path(path).exists(), f"The dataset path {path} does not exist.")
    ratios = run.split.ratios
    _require(len(ratios) == 3 and min(ratios) >= 0 and ratios[0] > 0,
             "split.ratios must be three non-negative shares (train, val, test) with train above 0.")
    model = run.model.name
    _require(model in CATALOGUE, f"Unknown model '{model}': use one of {', '.join(CATALOGUE)}.")
    folds, fold = run.split.folds, run.split.fold
    _require(fold is None or fold < folds, f"split.fold must be below split.folds ({folds}), not {fold}.")
    _require(run.repeats * (folds if fold is None else 1) <= MAX_RUNS,
             f"repeats x split.folds makes {run.repeats * folds} runs; at most {MAX_RUNS} are allowed.")
    smallest = min_input_size(model, run.model.options)
    _require(run.preprocess.size >= smallest,
             f"{model} needs images of at least {smallest} px; preprocess.size is {run.preprocess.size}.")


def _validated(config: Mapping[str, Any]) -> RunConfig:
    run = _parse(RunConfig, config)
    _check(run)
    return run


def make_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The defaults with the given fields replaced, validated, as a plain nested dict.

    Groups merge field by field ({"optimiser": {"lr": 0.1}} keeps the other optimiser defaults);
    dataset.source and model.options are replaced whole.
    """
    return _validated(overrides or {}).model_dump()


def run_configs(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The configs of the runs a config stands for: one per repeat (seed + repeat, and split seed +
    repeat when split.reseed) and, for a cross-validation, one per fold; each with repeats 1 and its
    fold set, so it stands for itself."""
    base = make_config(config)
    folds = [base["split"]["fold"]] if base["split"]["fold"] is not None or base["split"]["folds"] == 1 \
        else list(range(base["split"]["folds"]))
    reseed = base["split"]["reseed"]
    return [{**base, "seed": base["seed"] + repeat, "repeats": 1,
             "split": {**base["split"], "seed": base["split"]["seed"] + (repeat if reseed else 0),
                       "fold": None if base["split"]["folds"] == 1 else fold}}
            for repeat in range(base["repeats"]) for fold in folds]


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted names of the fields whose values differ ("optimiser.lr"); dataset.source and
    model.options count as one field each, as they are replaced whole."""
    changed = []
    for key in sorted(set(old) | set(new)):
        name, before, after = f"{prefix}{key}", old.get(key), new.get(key)
        whole = name in ("dataset.source", "model.options")
        if isinstance(before, Mapping) and isinstance(after, Mapping) and not whole:
            changed += changed_fields(before, after, f"{name}.")
        elif before != after:
            changed.append(name)
    return changed


def load_config(path: str | Path) -> dict[str, Any]:
    """make_config of a JSON file; fields added since the file was written get their defaults."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"No config file at {path}.") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    return make_config(raw)


def validate(config: Mapping[str, Any]) -> None:
    """Raise ConfigError, naming every field at fault, for what would make the run fail."""
    _validated(config)
