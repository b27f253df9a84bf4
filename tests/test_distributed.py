"""Two-process data-parallel training under torchrun (gloo on CPU), as a SLURM job launches it."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from core import rundir, runs
from core.__main__ import main
from core.scanning import scan, usable
from tests.conftest import ROOT
from tests.test_train import GLOMERULI, tiny_config


def torchrun(processes: int, config: Path, run_dir: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """--standalone picks a free port itself (no race between tests) and is the single-node SLURM line."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
         "-m", "core", "train", "--config", str(config), "--run-dir", str(run_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_torchrun_two_processes_train_one_run(tmp_path):
    config, run_dir = tmp_path / "config.json", tmp_path / "run"
    config.write_text(json.dumps(tiny_config()))
    result = torchrun(2, config, run_dir)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert rundir.read_status(run_dir)["state"] == "finished", output
    assert rundir.read_metrics(run_dir)["epoch"].tolist() == [1, 2]
    # Each process announces its world; both must, and gradients are all-reduced every step,
    # so the first process could not finish an epoch unless the second one trained alongside.
    assert output.count("device cpu, world 2") == 2, output

    predictions = pd.read_parquet(rundir.predictions_path(run_dir))
    manifest = scan(GLOMERULI)
    assert predictions["item_id"].is_unique
    assert set(predictions["item_id"]) == set(manifest.loc[usable(manifest), "id"])

    ckpt = torch.load(rundir.checkpoint_path(run_dir, "best"), weights_only=True)
    assert not any(key.startswith("module.") for key in ckpt["model"])


@pytest.mark.slow
def test_torchrun_skips_the_local_device_queue(tmp_path):
    """A one-GPU SLURM job is torchrun with one process: SLURM owns the device, and the shared
    workspace's lock must not queue it behind every other job on the cluster."""
    config, run_dir = tmp_path / "config.json", tmp_path / "run"
    config.write_text(json.dumps(tiny_config(epochs=1, device="cpu")))
    with runs.device_slot("cpu", on_wait=lambda: None, should_stop=lambda: False):
        result = torchrun(1, config, run_dir, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert rundir.read_status(run_dir)["state"] == "finished"


def test_torchrun_needs_one_named_run_directory(tmp_path, monkeypatch, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config()))
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert main(["train", "--config", str(config)]) == 2
    assert "pass --run-dir" in capsys.readouterr().err
    assert not any(rundir.runs_root().iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", "auto"])  # one line for both: "auto" is the CPU here too
def test_a_queued_run_waits_without_torch_then_trains(tmp_path, device):
    """A study queues its runs as processes; one waiting for the device must not hold a loaded torch
    (about 800 MB each), and must train once the run before it lets go."""
    config, run_dir = tmp_path / "config.json", tmp_path / "run"
    config.write_text(json.dumps(tiny_config(epochs=1, device=device)))
    with runs.device_slot(runs.QUEUE_SLOT, on_wait=lambda: None, should_stop=lambda: False):  # the run ahead
        process = subprocess.Popen([sys.executable, "-m", "core", "train", "--config", str(config),
                                    "--run-dir", str(run_dir)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 180
        while "ahead in line" not in rundir.read_status(run_dir).get("message", ""):
            assert process.poll() is None and time.monotonic() < deadline, rundir.read_status(run_dir)
            time.sleep(0.2)
        loaded = Path(f"/proc/{process.pid}/maps").read_text()
        assert "libtorch" not in loaded and "libc10" not in loaded
    assert process.wait(timeout=300) == 0
    assert rundir.read_status(run_dir)["state"] == "finished"
