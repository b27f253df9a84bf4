"""The typed run config: what it refuses, what it says, and that old configs still load."""
import json
import math

import pytest

from core import rundir, study
from core.__main__ import main
from core.preprocess import PAD_MODES
from core.registry import DEMO_DATASETS
from core.runconfig import ConfigError, bounds, choices, defaults, load_config, make_config
from tests.conftest import ROOT

SOURCE = next(iter(DEMO_DATASETS.values())).to_dict()
DEMO_RUN_CONFIG = ROOT / "assets" / "demo" / "runs" / "glomeruli-simple-cnn" / "config.json"


def config(**fields) -> dict:
    return make_config({"dataset": {"name": "g", "source": SOURCE}, **fields})


@pytest.mark.parametrize("fields, message", [
    ({"epoch": 5}, "Unknown field epoch: did you mean `epochs`?"),
    ({"optimiser": {"lrate": 0.1}}, "Unknown field optimiser.lrate: did you mean `lr`?"),
    ({"augment": {"hflips": False}}, "Unknown field augment.hflips: did you mean `hflip`?"),
    ({"scheduler": {"xyz": 1}}, "Unknown field scheduler.xyz: use one of `name`, `step_size`, `gamma`, `patience`."),
])
def test_unknown_keys_are_refused_with_their_place_and_a_suggestion(fields, message):
    with pytest.raises(ConfigError) as error:
        config(**fields)
    assert message in str(error.value)


def test_every_unknown_key_is_named_at_once():
    with pytest.raises(ConfigError) as error:
        config(epoch=5, optimiser={"lrate": 0.1})
    assert "epoch:" in str(error.value) and "optimiser.lrate" in str(error.value)


@pytest.mark.parametrize("fields, message", [
    ({"optimiser": {"lr": float("inf")}}, "optimiser.lr must be a finite number above 0, not inf."),
    ({"optimiser": {"momentum": float("nan")}}, "optimiser.momentum must be a finite number"),
    ({"optimiser": {"momentum": -3}}, "optimiser.momentum must be a number above 0 and below 1, not -3."),
    ({"split": {"ratios": [float("inf"), 0.1, 0.1]}}, "split.ratios[0] must be a finite number, not inf."),
    ({"split": {"ratios": [0.8, -0.1, 0.3]}}, "split.ratios must be three non-negative shares"),
    ({"split": {"ratios": [0.8, 0.2]}}, "split.ratios must be three non-negative shares"),
    ({"augment": {"shift": 0.5}}, "augment.shift must be a number from 0 up to (not including) 0.5, not 0.5."),
    ({"repeats": 1000}, "repeats must be a whole number from 1 to 100, not 1000."),
    ({"repeats": 0}, "repeats must be a whole number from 1 to 100, not 0."),
    ({"epochs": "4"}, "epochs must be a whole number above 0, not '4'."),
    ({"batch_size": True}, "batch_size must be a whole number above 0, not True."),
    ({"optimiser": {"lr": True}}, "optimiser.lr must be a number above 0, not True."),
    ({"amp": 1}, "amp must be true or false, not 1."),
    ({"optimiser": {"name": "adam2"}}, "optimiser.name must be one of 'adam', 'adamw' or 'sgd', not 'adam2'."),
    ({"preprocess": {"normalize": "z-score"}}, "preprocess.normalize must be one of"),
    ({"preprocess": {"size": 5000}}, "preprocess.size must be a whole number from 8 to 4096"),
    ({"optimiser": 0.1}, "optimiser must be a group of fields"),
    ({"subset": {"fraction": 0}}, "subset.fraction must be a number above 0 and at most 1, not 0."),
    ({"subset": {"fraction": float("nan")}}, "subset.fraction must be a finite number above 0 and at most 1"),
    ({"subset": {"per_class": 0}}, "subset.per_class must be a whole number, 1 or more, not 0."),
    ({"subset": {"per_class": "50"}}, "subset.per_class must be a whole number, 1 or more, not '50'."),
    ({"subset": {"share": 0.5}}, "Unknown field subset.share: use one of `fraction`, `per_class`, `seed`."),
])
def test_wrong_values_are_refused_in_a_plain_sentence(fields, message):
    with pytest.raises(ConfigError) as error:
        config(**fields)
    assert message in str(error.value)


@pytest.mark.parametrize("model, message", [
    ({"name": "simple_cnn", "options": {"blocks": "4"}},
     "model.options.blocks must be a whole number from 1 to 8, not '4'."),
    ({"name": "simple_cnn", "options": {"blocks": 9}}, "model.options.blocks must be a whole number from 1 to 8"),
    ({"name": "simple_cnn", "options": {"dropout": 1.0}}, "model.options.dropout must be a number"),
    ({"name": "simple_cnn", "options": {"blockz": 3}}, "Unknown field model.options.blockz: did you mean `blocks`?"),
    ({"name": "logistic", "options": {"blocks": 3}}, "Unknown field model.options.blocks: use one of `grid`."),
    ({"name": "resnet18", "options": {"blocks": 3}}, "Unknown field model.options.blocks: nothing is accepted here."),
])
def test_model_options_are_typed_per_model(model, message):
    with pytest.raises(ConfigError) as error:
        config(model=model)
    assert message in str(error.value)


def test_model_options_the_models_accept_still_pass():
    assert config(model={"options": {"blocks": 3, "width": 8, "dropout": 0}})["model"]["options"] == \
        {"blocks": 3, "width": 8, "dropout": 0}
    assert config(model={"name": "logistic", "options": {"grid": 4}}, preprocess={"size": 8})["model"]["options"] == \
        {"grid": 4}


def test_defaults_round_trip_and_groups_merge_field_by_field():
    made = config()
    assert made == {**defaults(), "dataset": {"name": "g", "source": SOURCE}}
    assert make_config(made) == made
    assert json.loads(json.dumps(made)) == made  # config.json and checkpoints keep plain dicts
    assert made["preprocess"]["normalize"] == "train"
    changed = config(optimiser={"lr": 0.1}, model={"options": {"blocks": 2}})
    assert changed["optimiser"] == {**defaults()["optimiser"], "lr": 0.1}
    assert changed["model"]["options"] == {"blocks": 2}  # replaced whole, as dataset.source is


def test_cross_field_checks_keep_their_messages():
    with pytest.raises(ConfigError, match="dataset.source.path is missing"):
        make_config({})
    with pytest.raises(ConfigError, match="simple_cnn needs images of at least 32 px; preprocess.size is 16"):
        config(model={"options": {"blocks": 5}}, preprocess={"size": 16})
    assert config(model={"options": {"blocks": 3}}, preprocess={"size": 8})["preprocess"]["size"] == 8


RUN_CONFIGS = [p for p in sorted((ROOT / "configs").glob("*.json")) if not p.name.startswith("study_")]
STUDY_CONFIGS = sorted((ROOT / "configs").glob("study_*.json"))


@pytest.mark.parametrize("path", [DEMO_RUN_CONFIG, *RUN_CONFIGS], ids=lambda p: p.name)
def test_committed_configs_still_load(path):
    if "shared/data" in path.read_text() and not (ROOT.parent / "shared" / "data").exists():
        pytest.skip("the shared data set is not on this machine")
    written = json.loads(path.read_text())
    loaded = load_config(path)
    assert loaded["preprocess"] == {**written["preprocess"], "normalize": "train"}
    assert loaded["model"] == written["model"] and loaded["optimiser"]["lr"] == written["optimiser"]["lr"]



@pytest.mark.parametrize("path", STUDY_CONFIGS, ids=lambda p: p.name)
def test_committed_study_configs_plan_every_cell(path):
    if "shared/data" in path.read_text() and not (ROOT.parent / "shared" / "data").exists():
        pytest.skip("the shared data set is not on this machine")
    spec = study.load_spec(path)
    cells = study.plan(spec)
    assert len(cells) == math.prod(len(values) for values in spec.grid.values())

def test_the_demo_run_config_is_the_full_config_and_without_the_fields_added_since_still_loads(tmp_path):
    written = json.loads(DEMO_RUN_CONFIG.read_text())
    assert load_config(DEMO_RUN_CONFIG) == written
    older = json.loads(DEMO_RUN_CONFIG.read_text())  # as written before subsets, Nesterov, folds and hue existed
    del older["subset"], older["optimiser"]["nesterov"], older["split"]["folds"], older["split"]["fold"]
    del older["split"]["reseed"], older["augment"]["saturation"], older["augment"]["hue"]
    (tmp_path / "older.json").write_text(json.dumps(older))
    loaded = load_config(tmp_path / "older.json")
    assert loaded.pop("subset") == {"fraction": None, "per_class": None, "seed": 0}  # the whole dataset
    assert loaded["optimiser"].pop("nesterov") is True  # older configs keep Nesterov SGD
    colour = {key: loaded["augment"].pop(key) for key in ("saturation", "hue")}
    assert colour == {"saturation": 0.0, "hue": 0.0}  # older configs jitter brightness and contrast only
    added = {key: loaded["split"].pop(key) for key in ("folds", "fold", "reseed")}
    assert added == {"folds": 1, "fold": None, "reseed": False}  # no cross-validation, one split for all repeats
    assert loaded == older


def test_a_config_written_before_normalize_existed_still_loads(tmp_path):
    old = json.loads(DEMO_RUN_CONFIG.read_text())
    old["preprocess"].pop("normalize")
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert load_config(tmp_path / "old.json")["preprocess"]["normalize"] == "train"


def test_form_helpers_read_the_models():
    assert choices("preprocess.pad_mode") == PAD_MODES
    assert choices("preprocess.normalize") == ("train", "imagenet", "none")
    assert bounds("repeats") == (1, 100)
    assert bounds("epochs") == (1, None)
    assert bounds("augment.rotation") == (0, 180)
    assert bounds("subset.per_class") == (1, None) and bounds("subset.fraction") == (0, 1)
    with pytest.raises(KeyError):
        bounds("optimiser.lrate")


@pytest.mark.parametrize("text, message", [
    ('{"dataset": {"source": %s}, "epoch": 5}', "Unknown field epoch: did you mean `epochs`?"),
    ('{"dataset": {"source": %s}, "optimiser": {"lr": Infinity}}', "optimiser.lr must be a finite number"),
    ('{"dataset": {"source": %s}, "optimiser": {"momentum": NaN}}', "optimiser.momentum must be a finite number"),
])
def test_cli_exits_2_before_anything_starts(tmp_path, capsys, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text % json.dumps(SOURCE))
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not rundir.runs_root().exists() or not any(rundir.runs_root().iterdir())
