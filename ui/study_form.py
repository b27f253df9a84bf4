"""The study part of the Train page's form: which fields vary over which values, N seeds or K folds,
and how many runs that makes, checked by core.study.plan before anything is launched."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from core import study
from core.models import list_models
from core.runconfig import MAX_RUNS, ConfigError, bounds, choices, run_configs
from ui.run_config_form import SIZES
from ui.text import md


def _models() -> list[str]:
    return [m["name"] for m in list_models()]


def _model_title(name: str) -> str:
    return {m["name"]: m["title"] for m in list_models()}[name]


#: The fields a study can vary: label, the values offered, and how a value is shown.
VARIABLE: dict[str, tuple[str, Callable[[], list[Any]], Callable[[Any], str]]] = {
    "preprocess.pad_mode": ("Pad mode", lambda: list(choices("preprocess.pad_mode")), str),
    "preprocess.size": ("Image size (px)", lambda: list(SIZES), str),
    "preprocess.fit": ("Fit", lambda: list(choices("preprocess.fit")), str),
    "model.name": ("Model", _models, _model_title),
    "model.freeze": ("Frozen backbone", lambda: [False, True], lambda v: "frozen" if v else "fine-tuned"),
    "optimiser.name": ("Optimiser", lambda: list(choices("optimiser.name")), str),
}
SEEDS, FOLDS = "N seeds", "K folds (cross-validation)"


def _grid() -> dict[str, list[Any]]:
    fields = st.multiselect("Fields to vary", list(VARIABLE), format_func=lambda f: VARIABLE[f][0],
                            key="study_fields", placeholder="none: the form's configuration alone",
                            help="Every combination of the values below is one configuration.")
    grid = {}
    for field in fields:
        label, options, shown = VARIABLE[field]
        grid[field] = st.multiselect(f"{label}: values", options(), format_func=shown, key=f"study_values_{field}")
    return grid


def _repeats(base: dict) -> dict:
    """The base config with the study's seeds or folds in place of the form's repeats."""
    cols = st.columns(3)
    how = cols[0].radio("Repeat each configuration over", [SEEDS, FOLDS], key="study_repeat_kind")
    if how == SEEDS:
        low, high = bounds("repeats")
        seeds = int(cols[1].number_input("Seeds", low, high, 3, key="study_seeds"))
        reseed = cols[2].checkbox("Each seed draws its own split", key="study_reseed",
                                  help="Off: every run trains and tests on one split; on: the split seed "
                                       "moves with the seed, so the figures also vary over splits.")
        return {**base, "repeats": seeds, "split": {**base["split"], "folds": 1, "reseed": reseed}}
    _, most = bounds("split.folds")
    folds = int(cols[1].number_input("Folds", 2, most, 5, key="study_folds"))
    cols[2].caption("Stratified and grouped: each slide or patient is held out by exactly one fold.")
    return {**base, "repeats": 1, "split": {**base["split"], "folds": folds}}


def study_form(base: dict, blocked: str | None) -> study.StudySpec | None:
    """Draw the study's fields under the run fields (whose values are every configuration's base);
    return the spec when the user presses Launch study, which only a plan core accepts enables."""
    name = st.text_input("Study name", key="study_name", placeholder="e.g. padding x size")
    spec = study.StudySpec(name=name.strip(), base=_repeats(base), grid=_grid())
    problem = blocked
    try:
        planned = study.plan(spec)
    except ConfigError as exc:
        problem = problem or str(exc)
        st.error(f"This study cannot run: {md(exc)}")
    else:
        total = sum(len(run_configs(config)) for _, config in planned)
        each = total // len(planned)
        st.info(f"{len(planned)} configuration{'s' if len(planned) > 1 else ''} × {each} run"
                f"{'s' if each > 1 else ''} = **{total} runs** (at most {MAX_RUNS}), queued on the device one "
                "after another.")
    launched = st.button("Launch study", type="primary", icon=":material/play_arrow:", key="study_launch",
                         disabled=problem is not None)
    return spec if launched else None
