"""Studies: a grid of run configs over chosen fields, each cell repeated over seeds or folds, and one
table of test metrics per cell as mean +- sd with the 95% t-interval.

A study is a folder in the workspace; this module is the only place that knows its files::

    studies/<id>/study.json     the spec (base config, grid), the dataset, and every run: its cell,
                                repeat and fold
    studies/<id>/oof.parquet    a cross-validation's out-of-fold probabilities: item_id, cell,
                                repeat, fold, label, prob_<class> per class

The runs themselves are ordinary runs (core.runs), so they queue on the device, show on the Train
page and open in every analysis page.
"""
from __future__ import annotations

import itertools
import json
import math
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy import stats
from sklearn.metrics import accuracy_score, roc_auc_score

from core import rundir, runs, workspace
from core.roles import Identity, require
from core.runconfig import MAX_RUNS, ConfigError, dataset_spec, defaults, make_config, run_configs

CONFIDENCE = 0.95


class StudySpec(BaseModel):
    """What a STUDY.json holds: the base run config (any fields; repeats and split.folds say how each
    cell repeats) and the grid (dotted field -> the values it takes)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)


# ---------------------------------------------------------------- file names


def studies_root() -> Path:
    root = workspace.home() / "studies"
    root.mkdir(parents=True, exist_ok=True)
    return root


def record_path(study_dir: Path) -> Path:
    return Path(study_dir) / "study.json"


def oof_path(study_dir: Path) -> Path:
    return Path(study_dir) / "oof.parquet"


def read_record(study_dir: Path) -> dict[str, Any]:
    record: dict[str, Any] = rundir.read_json(record_path(study_dir), {})
    return record


# ---------------------------------------------------------------- the grid


def parse_spec(data: object) -> StudySpec:
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"Not a study spec: {exc.errors()[0]['msg']} at "
                          f"{'.'.join(str(k) for k in exc.errors()[0]['loc']) or 'the top'}; it takes "
                          "name, base (a run config) and grid (field -> list of values).") from exc


def load_spec(path: str | Path) -> StudySpec:
    try:
        return parse_spec(json.loads(Path(path).read_text()))
    except FileNotFoundError as exc:
        raise ConfigError(f"No study file at {path}.") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc


def with_field(config: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of `config` with the dotted field set ("preprocess.size" -> config["preprocess"]["size"])."""
    head, _, rest = dotted.partition(".")
    if not rest:
        return {**config, head: value}
    inner = config.get(head)
    return {**config, head: with_field(inner if isinstance(inner, dict) else {}, rest, value)}


def _known_field(dotted: str) -> bool:
    part: Any = defaults()
    for key in dotted.split("."):
        if not isinstance(part, dict) or key not in part:
            return False
        part = part[key]
    return True


def plan(spec: StudySpec) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(cell, validated config) for every cell of the grid, before anything is created: a field the
    run config lacks, an empty value list, a cell make_config refuses or more than MAX_RUNS runs in
    all raise ConfigError naming it."""
    for field, values in spec.grid.items():
        if not _known_field(field):
            raise ConfigError(f"The grid names {field}, which is not a run config field (e.g. preprocess.size).")
        if not values:
            raise ConfigError(f"The grid gives {field} no values.")
    cells = [dict(zip(spec.grid, combo)) for combo in itertools.product(*spec.grid.values())]
    planned, total = [], 0
    for cell in cells:
        config = dict(spec.base)
        for field, value in cell.items():
            config = with_field(config, field, value)
        try:
            config = make_config(config)
        except ConfigError as exc:
            raise ConfigError(f"The cell {_cell_words(cell)} cannot run: {exc}") from exc
        total += len(run_configs(config))
        planned.append((cell, config))
    if total > MAX_RUNS:
        raise ConfigError(f"The study makes {total} runs ({len(cells)} cells); at most {MAX_RUNS} are allowed.")
    return planned


def _cell_words(cell: dict[str, Any]) -> str:
    return ", ".join(f"{field}={value}" for field, value in cell.items()) or "(the base config)"


def create_study(spec: StudySpec, *, who: Identity | str) -> Path:
    """The study folder and every run of every cell (queued, not started), after plan() accepted all."""
    require(who, "launch runs")
    planned = plan(spec)
    study_dir = studies_root() / f"{time.strftime('%Y%m%d-%H%M%S')}-study-{secrets.token_hex(2)}"
    study_dir.mkdir(parents=True)
    rows = []
    for index, (_, config) in enumerate(planned):
        for run_dir in runs.create_runs(config, who=who):
            one = rundir.read_config(run_dir)
            rows.append({"run": run_dir.name, "path": str(run_dir), "cell": index,
                         "repeat": one["seed"] - config["seed"], "fold": one["split"]["fold"]})
    first = planned[0][1]
    record = {"name": spec.name, "created": time.time(), "spec": spec.model_dump(),
              "cells": [cell for cell, _ in planned], "dataset": dataset_spec(first).path,
              "folds": first["split"]["folds"], "repeats": first["repeats"], "reseed": first["split"]["reseed"],
              "runs": rows}
    workspace.atomic_write_json(record_path(study_dir), record)
    return study_dir


def launch_study(study_dir: Path, *, who: Identity | str) -> list[int]:
    """Start every run of the study; they queue on the device lock (core.runs.device_slot)."""
    require(who, "launch runs")
    return [runs.launch(Path(row["path"]), who=who) for row in read_record(study_dir)["runs"]]


def states(study_dir: Path) -> pd.Series:
    """Run name -> its state."""
    return pd.Series({row["run"]: runs.status(Path(row["path"])).get("state")
                      for row in read_record(study_dir)["runs"]}, dtype=object)


def wait(study_dir: Path, timeout: float = 3600, poll: float = 2.0,
         on_poll: Callable[[pd.Series], object] = lambda _: None) -> pd.Series:
    """Block until no run of the study is queued or running; returns the final states."""
    deadline = time.monotonic() + timeout
    while True:
        current = states(study_dir)
        on_poll(current)
        if not current.isin(rundir.ACTIVE).any():
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"study {Path(study_dir).name}: runs still active after {timeout:.0f} s")
        time.sleep(poll)


def list_studies() -> list[Path]:
    """Study folders, newest first."""
    return sorted((d for d in studies_root().iterdir() if record_path(d).exists()), reverse=True)


# ---------------------------------------------------------------- the table


def test_metrics(predictions: pd.DataFrame) -> dict[str, float]:
    """ROC AUC (one-vs-rest macro for several classes) and accuracy (largest probability) on the test
    split; NaN where the split cannot give one (a class missing from a small fold)."""
    rows = predictions[predictions["split"] == "test"]
    classes = rundir.classes_of(predictions)
    probs = rows[rundir.prob_columns(classes)].to_numpy()
    labels = rows["label"].to_numpy()
    auc = float("nan")
    if len(set(labels)) == len(classes) > 1:
        auc = float(roc_auc_score(labels == classes[1], probs[:, 1]) if len(classes) == 2 else
                    roc_auc_score(labels, probs, multi_class="ovr", labels=classes))
    accuracy = float(accuracy_score(labels, np.array(classes)[probs.argmax(axis=1)])) if len(rows) else float("nan")
    return {"test AUC": auc, "test accuracy": accuracy, "test n": float(len(rows))}


def run_table(study_dir: Path) -> pd.DataFrame:
    """One row per run: cell, repeat, fold, state and its test metrics (NaN until it finished)."""
    rows = []
    for row in read_record(study_dir)["runs"]:
        run_dir = Path(row["path"])
        state = runs.status(run_dir).get("state")
        figures = test_metrics(rundir.read_predictions(run_dir)) if state == "finished" else {}
        rows.append({**row, "state": state, **figures})
    return pd.DataFrame(rows, columns=["run", "path", "cell", "repeat", "fold", "state", "test AUC", "test accuracy",
                                       "test n"])


def interval(values: pd.Series) -> tuple[float, float, float, float]:
    """(mean, sd, low, high): the sample sd and the 95% t-interval of the mean (NaN below two values),
    clipped to [0, 1], where AUC and accuracy live: few seeds with a wide spread would otherwise read as
    an accuracy above 1."""
    values = values.dropna()
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    if n < 2:
        return mean, float("nan"), float("nan"), float("nan")
    sd = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)
    return mean, sd, max(mean - half, 0.0), min(mean + half, 1.0)


def source_words(record: dict[str, Any]) -> str:
    """Which split each figure comes from, in words."""
    if record["folds"] > 1:
        repeated = f", {record['repeats']} repeats" if record["repeats"] > 1 else ""
        return f"held-out fold of {record['folds']}-fold cross-validation{repeated}"
    split = "its own split seed" if record["reseed"] else "one split shared by all"
    return f"test split; {record['repeats']} seed(s), {split}"


def summary(study_dir: Path) -> pd.DataFrame:
    """One row per cell: its grid values, runs finished, and per metric mean, sd and 95% interval over
    the finished runs, with the split the figures come from."""
    record, table = read_record(study_dir), run_table(study_dir)
    rows = []
    for index, cell in enumerate(record["cells"]):
        mine = table[table["cell"] == index]
        done = mine[mine["state"] == "finished"]
        row: dict[str, Any] = {**cell, "runs": f"{len(done)}/{len(mine)}"}
        for metric in ("test AUC", "test accuracy"):
            mean, sd, low, high = interval(done[metric]) if len(done) else (float("nan"),) * 4
            row.update({f"{metric} mean": mean, f"{metric} sd": sd, f"{metric} 95% low": low,
                        f"{metric} 95% high": high})
        row["from"] = source_words(record)
        rows.append(row)
    return pd.DataFrame(rows)


def formatted(table: pd.DataFrame) -> pd.DataFrame:
    """summary() as text: "0.912 ± 0.013" and "0.880 to 0.944" per metric, for the page and the terminal."""
    out = table.drop(columns=[c for c in table.columns if c.startswith("test ")])
    for metric in ("test AUC", "test accuracy"):
        mean, sd = table[f"{metric} mean"], table[f"{metric} sd"]
        low, high = table[f"{metric} 95% low"], table[f"{metric} 95% high"]
        out.insert(len(out.columns) - 1, f"{metric} (mean ± sd)",
                   [_number(m) + ("" if math.isnan(s) else f" ± {s:.3f}") for m, s in zip(mean, sd)])
        out.insert(len(out.columns) - 1, f"{metric} 95% interval",
                   ["" if math.isnan(lo) else f"{lo:.3f} to {hi:.3f}" for lo, hi in zip(low, high)])
    return out


def _number(value: float) -> str:
    return "no finished run" if math.isnan(value) else f"{value:.3f}"


# ---------------------------------------------------------------- out of fold


def out_of_fold(study_dir: Path) -> pd.DataFrame | None:
    """Every item's probabilities from the fold run that held it out (item_id, cell, repeat, fold,
    label, prob_<class>), written to oof.parquet once every run of a cross-validation has finished;
    None for a study without folds or with runs not finished."""
    record = read_record(study_dir)
    if record.get("folds", 1) < 2:
        return None
    if oof_path(study_dir).exists():
        return pd.read_parquet(oof_path(study_dir))
    if (states(study_dir) != "finished").any():
        return None
    parts = []
    for row in record["runs"]:
        predictions = rundir.read_predictions(Path(row["path"]))
        held_out = predictions.loc[predictions["split"] == "test"]
        classes = rundir.classes_of(predictions)
        parts.append(held_out[["item_id", "label", *rundir.prob_columns(classes)]]
                     .assign(cell=row["cell"], repeat=row["repeat"], fold=row["fold"]))
    table = pd.concat(parts, ignore_index=True)
    table = table[["item_id", "cell", "repeat", "fold", "label",
                   *[c for c in table.columns if c.startswith(rundir.PROB_PREFIX)]]]
    workspace.atomic_write(oof_path(study_dir), lambda handle: table.to_parquet(handle, index=False))
    return table


def latest_cross_validation(dataset_path: str) -> pd.DataFrame | None:
    """The out-of-fold probabilities of the newest finished cross-validation of a dataset, or None."""
    for study_dir in list_studies():
        record = read_record(study_dir)
        if record.get("dataset") == dataset_path and record.get("folds", 1) > 1:
            table = out_of_fold(study_dir)
            if table is not None:
                return table
    return None
