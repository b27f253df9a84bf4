"""AppTest of the Train page: launch a tiny real run, watch it finish, cancel and resume another."""
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import rundir, runs
from tests.conftest import ROOT
from ui.text import md


def open_train_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def set_tiny(at: AppTest, epochs: int) -> None:
    at.selectbox(key="train_size").select(32)
    at.number_input(key="train_epochs").set_value(epochs)
    at.number_input(key="train_batch").set_value(16 if epochs > 2 else 64)


def only_run() -> Path:
    dirs = [d for d in rundir.runs_root().iterdir() if d.is_dir()]
    assert len(dirs) == 1
    return dirs[0]


def test_first_start_shows_the_demo_run_with_its_curves():
    at = open_train_page()
    assert any(md("glomeruli-simple-cnn") in m.value and "finished" in m.value for m in at.markdown)
    assert any(c.value.startswith("Best epoch") for c in at.caption)


@pytest.mark.slow
def test_launch_a_run_and_see_it_finish():
    at = open_train_page()
    set_tiny(at, epochs=2)
    normalisation = at.selectbox(key="train_normalize")
    assert normalisation.value == "train" and normalisation.options == [
        "training split", "ImageNet", "none (0-1)"]
    normalisation.select("none")
    at.button(key="train_launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    run_dir = only_run()
    assert rundir.read_config(run_dir)["preprocess"]["size"] == 32
    assert rundir.read_config(run_dir)["preprocess"]["normalize"] == "none"
    assert runs.wait(run_dir, timeout=240)["state"] == "finished", rundir.log_tail(run_dir)
    at.run()
    assert not at.exception
    at.session_state["train_selected_run"] = run_dir.name
    at.run()
    assert any(md(run_dir.name) in m.value and "finished" in m.value for m in at.markdown)
    assert any(c.value.startswith("Best epoch") for c in at.caption)


@pytest.mark.slow
def test_cancel_and_resume_from_the_page():
    at = open_train_page()
    set_tiny(at, epochs=200)
    at.button(key="train_launch").click().run()
    run_dir = only_run()
    deadline = time.monotonic() + 120
    while runs.status(run_dir).get("state") != "running" and time.monotonic() < deadline:
        time.sleep(0.3)
    at.run()
    at.button(key=f"cancel_{run_dir.name}").click().run()
    assert runs.wait(run_dir, timeout=120)["state"] == "cancelled"
    at.run()
    at.button(key=f"resume_{run_dir.name}").click().run()
    assert runs.status(run_dir)["state"] in rundir.ACTIVE
    runs.cancel(run_dir, who="admin")
    assert runs.wait(run_dir, timeout=120)["state"] == "cancelled"


@pytest.mark.slow
def test_a_weights_file_of_ones_own(tmp_path):
    """A lab's own checkpoint (here ResNet18's state dict saved to a file) is named in the form."""
    import torch
    import torchvision

    at = open_train_page()
    at.selectbox(key="train_model").select("resnet18").run()
    at.text_input(key="train_weights").input(str(tmp_path / "missing.pth")).run()
    assert any("No file at" in e.value for e in at.error)
    set_tiny(at, epochs=1)
    at.button(key="train_launch").click().run()
    assert any("was not launched" in e.value for e in at.error)
    assert not rundir.runs_root().exists() or not any(rundir.runs_root().iterdir())  # nothing launched

    weights = tmp_path / "resnet18_lab.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    at.text_input(key="train_weights").input(str(weights)).run()
    assert any("Starts from the weights in" in s.value for s in at.success)
    at.button(key="train_launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    run_dir = only_run()
    assert runs.wait(run_dir, timeout=240)["state"] == "finished", rundir.log_tail(run_dir)
    assert f"starts from weights in {weights}" in rundir.log_tail(run_dir, 200)


def test_a_subset_from_the_form_and_the_split_table_of_what_was_kept(monkeypatch):
    from core import train

    monkeypatch.setattr(runs, "launch", lambda run_dir, who: None)  # trained below, in this process
    at = open_train_page()
    assert at.number_input(key="train_subset_fraction").value is None  # the config's default: all of it
    set_tiny(at, epochs=1)
    at.number_input(key="train_subset_cap").set_value(20)
    at.number_input(key="train_subset_seed").set_value(3)
    at.button(key="train_launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    run_dir = only_run()
    config = rundir.read_config(run_dir)
    assert config["subset"] == {"fraction": None, "per_class": 20, "seed": 3}
    train.run(config, run_dir)
    at.session_state["train_selected_run"] = run_dir.name
    at.run()
    label = "Split: 40 items, a subset: at most 20 per class (seed 3)"
    assert any(e.label == label for e in at.expander)
    table = next(frame.value for frame in at.dataframe if "class" in frame.value.columns)
    assert table.set_index("class")["total"].to_dict() == {"GS": 20, "nonGS": 20, "total": 40}


def test_plain_sgd_and_colour_jitter_from_the_form(monkeypatch):
    monkeypatch.setattr(runs, "launch", lambda *args, **kwargs: None)  # the config is what is tested
    at = open_train_page()
    assert at.toggle(key="train_nesterov").disabled  # only SGD has the choice
    at.selectbox(key="train_opt").select("sgd").run()
    nesterov = at.toggle(key="train_nesterov")
    assert not nesterov.disabled and nesterov.value  # the config's default: Nesterov
    nesterov.set_value(False)
    at.slider(key="train_saturation").set_value(0.3)
    at.slider(key="train_hue").set_value(0.1)
    set_tiny(at, epochs=1)
    at.button(key="train_launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    config = rundir.read_config(only_run())
    assert config["optimiser"]["name"] == "sgd" and config["optimiser"]["nesterov"] is False
    assert (config["augment"]["saturation"], config["augment"]["hue"]) == (0.3, 0.1)
