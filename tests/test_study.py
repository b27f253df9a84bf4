"""Studies, repeats and cross-validation on the demo glomeruli, with tiny models (CPU)."""
import json

import numpy as np
import pandas as pd
import pytest

from core import rundir, study
from core.registry import DEMO_DATASETS
from core.runconfig import MAX_RUNS, ConfigError, make_config, run_configs
from core.scanning import scan, usable
from core.splits import assign_fold

GLOMERULI = next(iter(DEMO_DATASETS.values()))
#: a model that trains an epoch on the 300 demo images in a few seconds on a loaded CPU
TINY = {"dataset": {"name": "demo glomeruli", "source": GLOMERULI.to_dict()},
        "model": {"name": "simple_cnn", "options": {"blocks": 2, "width": 8}},
        "preprocess": {"size": 16}, "epochs": 1, "batch_size": 64}


def test_repeats_and_folds_expand_to_one_config_per_run():
    configs = run_configs({**TINY, "repeats": 2, "split": {"folds": 3, "reseed": True, "seed": 5}})
    assert [(c["seed"], c["split"]["seed"], c["split"]["fold"]) for c in configs] == [
        (0, 5, 0), (0, 5, 1), (0, 5, 2), (1, 6, 0), (1, 6, 1), (1, 6, 2)]
    assert {c["repeats"] for c in configs} == {1}
    assert run_configs(configs[4]) == [configs[4]]  # a fold's own run stands for itself
    plain = run_configs({**TINY, "repeats": 3})
    assert [c["split"]["seed"] for c in plain] == [0, 0, 0] and [c["seed"] for c in plain] == [0, 1, 2]


@pytest.mark.parametrize("override, message", [
    ({"split": {"folds": 3, "fold": 3}}, "split.fold must be below split.folds"),
    ({"repeats": 20, "split": {"folds": 10}}, f"at most {MAX_RUNS}"),
])
def test_impossible_repeats_and_folds_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        make_config({**TINY, **override})


def test_each_item_is_held_out_by_exactly_one_fold_and_slides_stay_whole():
    manifest = scan(GLOMERULI)
    manifest = manifest.loc[usable(manifest)].reset_index(drop=True)
    splits = pd.DataFrame({k: assign_fold(manifest, 5, k, seed=1) for k in range(5)})
    assert ((splits == "test").sum(axis=1) == 1).all()
    for k in range(5):
        fold = manifest.assign(split=splits[k])
        assert (fold.groupby("group")["split"].nunique() == 1).all()
        assert set(fold.loc[fold["split"] == "test", "label"]) == {"GS", "nonGS"}  # stratified
        assert {"train", "val"} <= set(fold["split"])
    with pytest.raises(ValueError, match="groups"):
        assign_fold(manifest, manifest["group"].nunique() + 1, 0)


def test_a_grid_is_validated_cell_by_cell_before_anything_is_created(lumen_home):
    bad = study.parse_spec({"base": TINY, "grid": {"preprocess.size": [16, 2], "preprocess.pad_mode": ["zero"]}})
    with pytest.raises(ConfigError, match="preprocess.size=2"):
        study.create_study(bad, who="admin")
    with pytest.raises(ConfigError, match="not a run config field"):
        study.plan(study.parse_spec({"base": TINY, "grid": {"preprocess.sise": [16]}}))
    too_many = study.parse_spec({"base": {**TINY, "repeats": 30}, "grid": {"preprocess.size": [16, 24, 32, 48]}})
    with pytest.raises(ConfigError, match=f"120 runs .* at most {MAX_RUNS}"):
        study.plan(too_many)
    assert study.list_studies() == [] and not any(rundir.runs_root().iterdir())


def test_interval_is_the_t_interval_of_the_mean():
    mean, sd, low, high = study.interval(pd.Series([0.80, 0.84, 0.88]))
    assert mean == pytest.approx(0.84) and sd == pytest.approx(0.04)
    assert (high - mean) == pytest.approx(4.302653 * 0.04 / np.sqrt(3), rel=1e-5)  # t(0.975, 2)
    assert mean - low == pytest.approx(high - mean)
    assert np.isnan(study.interval(pd.Series([0.8]))[1])


def test_interval_stays_within_what_a_proportion_can_be():
    mean, _, low, high = study.interval(pd.Series([0.40, 0.97, 1.0]))  # the spread of three short runs
    assert 0.0 <= low < mean < high == 1.0


@pytest.mark.slow
def test_a_study_from_the_command_line_gives_one_row_per_cell_with_mean_and_sd(tmp_path, cli):
    spec = tmp_path / "study.json"
    spec.write_text(json.dumps({"name": "pads", "base": {**TINY, "repeats": 2},
                                "grid": {"preprocess.pad_mode": ["zero", "reflect"]}}))
    result = cli("study", "--config", spec, "--timeout", 900)
    assert result.returncode == 0, result.stderr
    (study_dir,) = study.list_studies()
    table = study.summary(study_dir)
    assert table["preprocess.pad_mode"].tolist() == ["zero", "reflect"] and (table["runs"] == "2/2").all()
    runs = study.run_table(study_dir)
    for cell, rows in runs.groupby("cell"):
        assert table.loc[cell, "test AUC mean"] == pytest.approx(rows["test AUC"].mean())
        assert table.loc[cell, "test AUC sd"] == pytest.approx(rows["test AUC"].std(ddof=1))
    assert "test AUC (mean ± sd)" in result.stdout and " ± " in result.stdout and "reflect" in result.stdout
    assert "test split; 2 seed(s)" in result.stdout


@pytest.mark.slow
def test_a_cross_validation_stores_every_items_out_of_fold_probabilities(lumen_home):
    study_dir = study.create_study(study.parse_spec({"base": {**TINY, "split": {"folds": 3}}}), who="admin")
    study.launch_study(study_dir, who="admin")
    assert (study.wait(study_dir, timeout=900) == "finished").all()
    oof = study.out_of_fold(study_dir)
    items = rundir.read_items(study.run_table(study_dir)["path"].iloc[0])
    assert sorted(oof["item_id"]) == sorted(items["item_id"])  # each item once, from the fold that held it out
    assert set(oof["fold"]) == {0, 1, 2}
    assert np.allclose(oof[["prob_GS", "prob_nonGS"]].sum(axis=1), 1, atol=1e-5)
    assert study.oof_path(study_dir).exists()
    assert study.latest_cross_validation(GLOMERULI.path)["item_id"].tolist() == oof["item_id"].tolist()
    assert "held-out fold of 3-fold" in study.summary(study_dir)["from"].iloc[0]


@pytest.mark.slow
def test_train_from_the_command_line_honours_repeats(tmp_path, cli):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**TINY, "repeats": 2}))
    result = cli("train", "--config", config)
    assert result.returncode == 0, result.stderr
    made = sorted(rundir.runs_root().iterdir())
    assert len(made) == 2 and sorted(rundir.read_config(d)["seed"] for d in made) == [0, 1]
    assert all(rundir.read_status(d)["state"] == "finished" for d in made)
    refused = cli("train", "--config", config, "--run-dir", tmp_path / "one")
    assert refused.returncode == 2 and "stands for 2 runs" in refused.stderr
