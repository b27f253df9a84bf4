"""SLURM job scripts, submission and watching; the cluster's commands are small shell stand-ins on PATH."""
import json
import os
import re
import shlex
from pathlib import Path

import pytest

from core import rundir, runs, slurm
from tests.conftest import ROOT
from tests.test_train import tiny_config


@pytest.fixture
def run_dir(lumen_home):
    return runs.create_runs(tiny_config(), who="admin")[0]


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A folder first on PATH; fake(name, body) puts a shell script there that logs its arguments."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")

    def fake(name: str, body: str) -> Path:
        path = folder / name
        path.write_text(f'#!/bin/sh\necho "$@" >> "{folder}/{name}.args"\n{body}\n')
        path.chmod(0o755)
        return folder / f"{name}.args"
    return fake


def directives(script: str) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", script, flags=re.M))


def launch_line(script: str) -> list[str]:
    return shlex.split(next(line for line in script.splitlines() if line.startswith("srun ")))


def test_single_node_script(run_dir):
    script = slurm.write_sbatch(run_dir, who="admin", partition="gpu", gpus=2, account="lab",
                                extra_lines=["#SBATCH --qos=high"])
    assert script == run_dir / "job.sbatch"
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n")
    options = directives(text)
    assert options["job-name"] == f"lumen-{run_dir.name}"
    assert options["output"] == str(run_dir / "log.txt")
    assert options["gres"] == "gpu:2" and options["partition"] == "gpu" and options["account"] == "lab"
    assert options["qos"] == "high" and options["nodes"] == "1" and options["time"] == "04:00:00"
    assert "shared" in text  # the run directory's filesystem is named as a requirement
    assert f"cd {ROOT}" in text and ".venv/bin/activate" in text
    line = launch_line(text)
    assert line[:4] == ["srun", "python", "-m", "torch.distributed.run"]
    assert "--standalone" in line and "--nproc_per_node=2" in line and "--resume" not in line
    assert line[line.index("--config") + 1] == str(run_dir / "config.json")
    assert line[line.index("--run-dir") + 1] == str(run_dir)
    status = rundir.read_status(run_dir)
    assert status["scheduler"] == "slurm" and status["state"] == "queued"


def test_cpu_resume_script_asks_for_no_gpu(run_dir):
    text = slurm.write_sbatch(run_dir, who="admin", gpus=0, resume=True).read_text()
    assert "gres" not in directives(text)
    line = launch_line(text)
    assert "--nproc_per_node=1" in line and line[-1] == "--resume"


def test_multi_node_script_meets_on_the_first_node(run_dir):
    text = slurm.write_sbatch(run_dir, who="admin", gpus=4, nodes=2).read_text()
    assert directives(text)["nodes"] == "2" and directives(text)["ntasks-per-node"] == "1"
    assert 'MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)"' in text
    line = launch_line(text)
    assert "--standalone" not in line and "--nnodes=2" in line and "--nproc_per_node=4" in line
    assert "--rdzv_endpoint=$MASTER_ADDR:$MASTER_PORT" in line
    assert text.index("export MASTER_ADDR") < text.index("srun ")


def test_submit_without_sbatch_says_what_to_do(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(slurm.SlurmError, match="sbatch not found: copy .*job.sbatch to your cluster's login node"):
        slurm.submit(run_dir, who="admin")


def test_submit_records_the_job_and_the_run_is_not_failed(run_dir, fake_bin):
    sbatch_args = fake_bin("sbatch", "echo '4242;cluster'")
    assert slurm.submit(run_dir, who="admin", gpus=1) == "4242"
    assert sbatch_args.read_text().split() == ["--parsable", str(run_dir / "job.sbatch")]
    status = rundir.read_status(run_dir)
    assert status["scheduler"] == "slurm" and status["slurm_job_id"] == "4242" and status["state"] == "queued"
    # the job starts on a compute node and records a pid that means nothing on this machine
    rundir.write_status(run_dir, state="running", pid=2 ** 22 + 7)
    assert runs.status(run_dir)["state"] == "running"  # no squeue here: status.json is trusted


def test_squeue_closes_a_run_whose_job_is_gone(run_dir, fake_bin):
    fake_bin("sbatch", "echo 77")
    slurm.submit(run_dir, who="admin")
    rundir.write_status(run_dir, state="running", pid=2 ** 22 + 7)
    rundir.log_path(run_dir).write_text("epoch 1 done\nslurmstepd: error: Detected 1 oom_kill event\n")
    squeue_args = fake_bin("squeue", "echo RUNNING")
    assert runs.status(run_dir)["state"] == "running"
    assert "-j 77" in squeue_args.read_text()
    fake_bin("squeue", "exit 0")  # SLURM no longer lists the job
    status = runs.status(run_dir)
    assert status["state"] == "failed" and "SLURM job 77 ended (GONE)" in status["message"]
    assert "oom_kill" in status["log_tail"]


def test_cancel_uses_scancel_not_a_local_kill(run_dir, fake_bin):
    fake_bin("sbatch", "echo 91")
    slurm.submit(run_dir, who="admin")
    rundir.write_status(run_dir, state="running", pid=os.getpid())  # a local pid that must survive
    scancel_args = fake_bin("scancel", "exit 0")
    assert runs.cancel(run_dir, who="admin")
    assert scancel_args.read_text().split() == ["91"]
    assert rundir.read_status(run_dir)["state"] == "cancelled"


def test_cli_writes_prints_and_submits_the_script(tmp_path, fake_bin, lumen_home, cli):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config()))
    command = ["slurm", "--config", config, "--gpus", "2", "--partition", "a100"]
    result = cli(*command)
    assert result.returncode == 0, result.stderr
    script = Path(result.stdout.splitlines()[0])
    assert script.name == "job.sbatch" and script.parent.parent == lumen_home / "runs"
    assert script.read_text() in result.stdout and "--nproc_per_node=2" in result.stdout
    assert directives(script.read_text())["partition"] == "a100"

    fake_bin("sbatch", "echo 555")
    run_dir = tmp_path / "cluster-run"
    submitted = cli(*command, "--run-dir", run_dir, "--submit")
    assert submitted.returncode == 0, submitted.stderr
    assert "submitted: SLURM job 555" in submitted.stdout
    assert rundir.read_status(run_dir)["slurm_job_id"] == "555"


def test_a_running_run_gets_no_second_job(run_dir):
    rundir.write_status(run_dir, state="running", pid=os.getpid())
    with pytest.raises(slurm.SlurmError, match="is running; cancel it"):
        slurm.write_sbatch(run_dir, who="admin")
    assert not (run_dir / "job.sbatch").exists()


@pytest.mark.parametrize("started", [{"pid": os.getpid()}, {"slurm_job_id": "4242"}])
def test_a_run_queued_to_start_gets_no_second_job(run_dir, started):
    """Queued behind a local run, or already submitted: it will start, so a second job would share its folder."""
    rundir.write_status(run_dir, state="queued", **started)
    with pytest.raises(slurm.SlurmError, match="is queued; cancel it"):
        slurm.write_sbatch(run_dir, who="admin")


def test_a_job_script_never_submitted_from_here_can_be_withdrawn(run_dir):
    """sbatch was not on this machine: the run must not stay 'queued' for ever, blocking resume and delete."""
    slurm.write_sbatch(run_dir, who="admin")
    assert runs.cancel(run_dir, who="admin")
    assert rundir.read_status(run_dir)["state"] == "cancelled"
