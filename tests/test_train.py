"""The training engine and background runs, on the demo glomeruli at tiny sizes (CPU)."""
import json
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
import torch

from core import rundir, runs, train
from core.registry import DEMO_DATASETS
from core.runconfig import ConfigError, make_config
from core.runmodel import load_run_model
from core.train import distributed
from core.train.data import load_data
from tests.conftest import ROOT

GLOMERULI = next(iter(DEMO_DATASETS.values()))


def tiny_config(**overrides) -> dict:
    base = {"dataset": {"name": "demo glomeruli", "source": GLOMERULI.to_dict()},
            "preprocess": {"size": 32}, "epochs": 2, "batch_size": 32,
            "early_stopping": {"patience": 50, "metric": "val_auc"}}
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return make_config(base)


@pytest.mark.slow
def test_tiny_run_writes_every_artifact(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    status = train.run(tiny_config(), run_dir)
    assert status["state"] == "finished"
    metrics = rundir.read_metrics(run_dir)
    assert metrics["epoch"].tolist() == [1, 2]
    for column in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_auc", "lr", "seconds",
                   "images_per_s"):
        assert metrics[column].notna().all(), column
    for which in ("last", "best"):
        ckpt = torch.load(rundir.checkpoint_path(run_dir, which), weights_only=True)
        assert ckpt["classes"] == ["GS", "nonGS"] and ckpt["epoch"] in (1, 2)
    predictions = pd.read_parquet(rundir.predictions_path(run_dir))
    assert len(predictions) == 300 and set(predictions["split"]) == {"train", "val", "test"}
    probs = predictions[["prob_GS", "prob_nonGS"]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    model, ckpt = load_run_model(run_dir)
    assert sum(p.numel() for p in model.parameters()) > 0



def test_a_run_whose_loss_becomes_nan_stops_as_failed_with_the_epoch_and_what_to_change(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = tiny_config(optimiser={"name": "sgd", "lr": 1e30}, epochs=3, batch_size=16)
    assert train.run_safely(config, run_dir, False, lambda: False) == 1
    status = rundir.read_status(run_dir)
    assert status["state"] == "failed"
    assert "training loss became" in status["message"] and "in epoch 1" in status["message"]
    assert "optimiser.lr is 1e+30" in status["message"]
    assert not rundir.predictions_path(run_dir).exists()  # no predictions from NaN weights

def test_grouped_split_keeps_slides_apart(tmp_path):
    data = load_data(tiny_config())
    per_group = data.items.groupby("group")["split"].nunique()
    assert (per_group == 1).all()


@pytest.mark.parametrize("override, message", [
    ({"model": {"name": "alexnet-9000"}}, "Unknown model 'alexnet-9000'"),
    ({"batch_size": 0}, "batch_size must be a whole number above 0"),
    ({"dataset": {"name": "gone", "source": {"path": "/no/such/labels.csv"}}}, "does not exist"),
    ({"optimiser": {"lr": -1}}, "optimiser.lr must be a number above 0"),
    ({"optimiser": {"lr": "0.001"}}, "optimiser.lr must be a number"),
    ({"augment": {"shift": None}}, "augment.shift must be a number"),
    ({"early_stopping": {"patience": "5"}}, "patience must be a whole number above 0"),
    ({"early_stopping": {"patience": 0}}, "patience must be a whole number above 0"),
    ({"seed": -1}, "seed must be a whole number"),
    ({"preprocess": {"size": 8}}, "simple_cnn needs images of at least 16 px"),
])
def test_broken_configs_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**override)


def test_cli_refuses_a_broken_config_with_a_message(tmp_path, cli):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"dataset": {"source": GLOMERULI.to_dict()}, "batch_size": 0}))
    result = cli("train", "--config", config)
    assert result.returncode == 2 and "batch_size must be a whole number above 0" in result.stderr


def test_a_run_from_the_command_line_writes_its_log_and_resumes_its_own_config(tmp_path, cli):
    run_dir, config = tmp_path / "run", tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(epochs=1)))
    assert cli("train", "--config", config, "--run-dir", run_dir).returncode == 0
    log = rundir.log_path(run_dir).read_text()
    assert f"run directory {run_dir}" in log and log.count("epoch 1/1 train loss") == 1

    longer = tmp_path / "longer.json"
    longer.write_text(json.dumps(tiny_config(epochs=2, optimiser={"lr": 0.01})))
    refused = cli("train", "--config", longer, "--run-dir", run_dir, "--resume")
    assert refused.returncode == 2
    assert "differs from the run's own config" in refused.stderr and "in epochs, optimiser.lr." in refused.stderr
    assert "--force-config" in refused.stderr and rundir.read_config(run_dir)["epochs"] == 1
    assert cli("train", "--run-dir", run_dir, "--resume").returncode == 0  # its own config: already done
    assert rundir.read_metrics(run_dir)["epoch"].tolist() == [1]

    assert cli("train", "--config", longer, "--run-dir", run_dir, "--resume", "--force-config").returncode == 0
    assert rundir.read_metrics(run_dir)["epoch"].tolist() == [1, 2]
    assert rundir.read_config(run_dir)["epochs"] == 2 and rundir.read_config(run_dir)["optimiser"]["lr"] == 0.01
    assert "epoch 2/2 train loss" in rundir.log_path(run_dir).read_text()


def test_resume_needs_the_run_to_continue(cli):
    result = cli("train", "--resume")
    assert result.returncode == 2 and "train needs --run-dir with --resume" in result.stderr


@pytest.mark.slow
def test_a_run_the_app_launches_logs_each_line_once():
    run_dir = runs.create_runs(tiny_config(epochs=1), who="admin")[0]
    runs.launch(run_dir, who="admin")
    assert runs.wait(run_dir, timeout=300)["state"] == "finished", rundir.log_tail(run_dir)
    assert rundir.log_path(run_dir).read_text().count("epoch 1/1 train loss") == 1


def _wait_for(predicate, timeout=180, poll=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError("condition not reached")


@pytest.mark.slow
def test_killed_run_shows_failed_and_resumes_to_the_same_epochs():
    config = tiny_config(epochs=4, preprocess={"size": 96}, batch_size=8)
    run_dir = runs.create_runs(config, who="admin")[0]
    pid = runs.launch(run_dir, who="admin")
    _wait_for(lambda: len(rundir.read_metrics(run_dir)) >= 1, poll=0.05)  # an epoch is seconds long here
    os.kill(pid, signal.SIGSTOP)  # frozen: what it has written is what it will have written when killed
    done_before = len(rundir.read_metrics(run_dir))
    os.kill(pid, signal.SIGKILL)  # no chance to write anything more
    status = _wait_for(lambda: (s := runs.status(run_dir))["state"] == "failed" and s)
    assert "died" in status["message"]
    assert 1 <= done_before < 4 and len(rundir.read_metrics(run_dir)) == done_before
    runs.resume(run_dir, who="admin")
    final = runs.wait(run_dir, timeout=300)
    assert final["state"] == "finished", rundir.log_tail(run_dir)
    assert rundir.read_metrics(run_dir)["epoch"].tolist() == [1, 2, 3, 4]
    model, ckpt = load_run_model(run_dir, "best")
    assert ckpt["epoch"] in (1, 2, 3, 4)


@pytest.mark.slow
def test_cancel_then_resume():
    config = tiny_config(epochs=30, preprocess={"size": 64}, batch_size=8)
    run_dir = runs.create_runs(config, who="admin")[0]
    runs.launch(run_dir, who="admin")
    _wait_for(lambda: runs.status(run_dir).get("state") == "running" and len(rundir.read_metrics(run_dir)) >= 1)
    assert runs.cancel(run_dir, who="admin")
    status = runs.wait(run_dir, timeout=120)
    assert status["state"] == "cancelled"
    epochs_done = len(rundir.read_metrics(run_dir))
    assert epochs_done < 30
    with open(rundir.config_path(run_dir)) as handle:  # shorten the rest so the test stays quick
        saved = json.load(handle)
    saved["epochs"] = epochs_done + 1
    rundir.config_path(run_dir).write_text(json.dumps(saved))
    runs.resume(run_dir, who="admin")
    assert runs.wait(run_dir, timeout=300)["state"] == "finished"
    assert rundir.read_metrics(run_dir)["epoch"].tolist() == list(range(1, epochs_done + 2))


@pytest.mark.slow
def test_second_run_queues_behind_the_first():
    first = runs.create_runs(tiny_config(epochs=6, preprocess={"size": 64}, batch_size=8), who="admin")[0]
    second = runs.create_runs(tiny_config(), who="admin")[0]
    runs.launch(first, who="admin")
    _wait_for(lambda: runs.status(first).get("state") == "running")
    runs.launch(second, who="admin")
    seen = _wait_for(lambda: "another run" in runs.status(second).get("message", "") and runs.status(second))
    assert seen["state"] == "queued"
    assert runs.wait(first, timeout=300)["state"] == "finished"
    assert runs.wait(second, timeout=300)["state"] == "finished"
    listed = runs.list_runs()
    assert set(listed["run"]) >= {first.name, second.name}


def test_repeats_make_one_run_per_seed():
    dirs = runs.create_runs(tiny_config(repeats=3, seed=5), who="admin")
    seeds = [rundir.read_config(d)["seed"] for d in dirs]
    assert seeds == [5, 6, 7]


def test_delete_is_for_admins_and_finished_runs(tmp_path):
    run_dir = runs.create_runs(tiny_config(), who="admin")[0]
    with pytest.raises(PermissionError, match="annotator cannot delete runs"):
        runs.delete(run_dir, who="annotator")
    rundir.write_status(run_dir, state="running", pid=os.getpid())
    with pytest.raises(ValueError, match="still active"):
        runs.delete(run_dir, who="admin")
    rundir.write_status(run_dir, state="cancelled")
    runs.delete(run_dir, who="admin")
    assert not run_dir.exists()
    with pytest.raises(ValueError, match="demo run"):
        runs.delete(rundir.demo_runs()[0], who="admin")


def test_torchrun_processes_agree_on_stopping_every_few_batches(monkeypatch):
    agreed = []
    monkeypatch.setattr(distributed, "agree", lambda flag, world: agreed.append(flag) or flag)
    check = distributed.stop_poll(lambda: True, world=2, every=3)
    assert [check() for _ in range(7)] == [True, False, False, True, False, False, True]
    assert len(agreed) == 3  # one broadcast per 3 batches, not per batch
    alone = lambda: False  # noqa: E731
    assert distributed.stop_poll(alone, world=1) is alone


def test_batches_come_from_the_memory_mapped_cache_channels_last():
    data = load_data(tiny_config())
    data = load_data(tiny_config())  # the second time from the cache file
    assert isinstance(data.pixels, np.memmap)  # not copied into RAM
    batch = data.batch(np.array([5, 0, 3]))
    assert batch.shape == (3, data.channels, *data.pixels.shape[1:3]) and batch.dtype == torch.uint8
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch[1], torch.from_numpy(np.array(data.pixels[0])).permute(2, 0, 1))


def _folder_copy(tmp_path, per_class: int):
    import shutil

    images = ROOT / "assets" / "demo" / "glomeruli" / "images"
    folder = tmp_path / "images"
    for cls in ("GS", "nonGS"):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for path in sorted((images / cls).glob("*.jpg"))[:per_class]:
            shutil.copy(path, folder / cls / path.name)
    return folder


def test_a_run_keeps_its_splits_when_images_are_added(tmp_path):
    """Resuming (or looking at) a run must not draw the split again: added images would move
    test items into training."""
    import shutil

    folder = _folder_copy(tmp_path, 30)
    config = tiny_config(dataset={"name": "copy", "source": {"path": str(folder), "kind": "folder"}}, epochs=1)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    train.run(config, run_dir)
    first = rundir.read_splits(run_dir)
    assert len(first) == 60 and (run_dir / "splits.csv").exists()
    for path in sorted((ROOT / "assets" / "demo" / "glomeruli" / "images" / "nonGS").glob("*.jpg"))[30:60]:
        shutil.copy(path, folder / "nonGS" / path.name)
    redrawn = load_data(config).items.set_index("id")["split"]
    assert (redrawn.reindex(first.index) != first).any()  # drawing again would move items
    kept = load_data(config, splits=first).items.set_index("id")["split"]
    assert kept.sort_index().equals(first.sort_index())  # the new images stay out of this run


def test_a_class_missing_from_validation_is_refused_with_the_way_out(tmp_path):
    """A class without validation images would make val AUC undefined and early stopping blind."""
    import shutil

    folder = _folder_copy(tmp_path, 12)
    (folder / "train").mkdir()
    for cls in ("GS", "nonGS"):
        shutil.move(folder / cls, folder / "train" / cls)
    (folder / "val" / "nonGS").mkdir(parents=True)
    for path in sorted((folder / "train" / "nonGS").glob("*.jpg"))[:3]:
        shutil.move(path, folder / "val" / "nonGS" / path.name)
    config = tiny_config(dataset={"name": "copy", "source": {"path": str(folder), "kind": "folder"}})
    with pytest.raises(ConfigError, match="No val image of class GS: the dataset's own splits lack it"):
        load_data(config)


def test_an_image_that_cannot_be_decoded_is_named(tmp_path):
    folder = _folder_copy(tmp_path, 10)
    victim = sorted((folder / "GS").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:3000])  # the header survives, the pixels do not
    config = tiny_config(dataset={"name": "copy", "source": {"path": str(folder), "kind": "folder"}})
    with pytest.raises(OSError, match=victim.name):
        load_data(config)


def test_time_left_after_a_resume_counts_only_the_epochs_trained_since():
    # resumed at 10 of 20 epochs, one minute ago, now at 11 of 20: about nine minutes are left
    current = {"state": "running", "started": 1000.0, "progress": 0.55, "progress_at_start": 0.5}
    assert runs.eta_seconds(current, now=1060.0) == pytest.approx(60 * 0.45 / 0.05)
    fresh = {"state": "running", "started": 1000.0, "progress": 0.25}
    assert runs.eta_seconds(fresh, now=1060.0) == pytest.approx(180.0)


def test_a_subset_is_drawn_before_the_split_and_a_run_keeps_it(tmp_path):
    config = tiny_config(subset={"per_class": 40, "seed": 1}, epochs=1)
    data = load_data(config)
    assert data.items["label"].value_counts().to_dict() == {"GS": 40, "nonGS": 40}
    assert len(data.pixels) == 80 and (data.items.groupby("group")["split"].nunique() == 1).all()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    status = train.run(config, run_dir)
    assert sum(status["counts"].values()) == 80  # the status counts what was kept
    first = rundir.read_splits(run_dir)
    assert len(first) == 80
    other_subset = {**config, "subset": {"fraction": 0.1, "per_class": None, "seed": 9}}
    kept = load_data(other_subset, splits=first).items.set_index("id")["split"]
    assert kept.sort_index().equals(first.sort_index())  # a run's own splits are not subset again
