"""Training on a SLURM cluster: a job script per run directory, submission, and the job's state.

The job runs the same ``python -m core train`` as a local run, under torchrun, and writes into the
same run directory, so the app follows a cluster run exactly as it follows a local one. That needs
the run directory (the workspace, LUMEN_HOME) on a filesystem shared by the app's machine and the
compute nodes. status.json says ``scheduler: slurm``, so nobody judges the run by a pid that lives
on another machine; SLURM itself is asked instead, where its commands exist.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core import rundir, workspace
from core.roles import Identity, require

# SLURM's states for a job that can no longer write its own ending. COMPLETED is not one: a job
# that ended cleanly wrote its status, which a shared filesystem may show a moment later.
ENDED = ("GONE", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
         "BOOT_FAIL", "DEADLINE")
MASTER_PORT = 29500


class SlurmError(RuntimeError):
    """The job cannot be written or submitted; the message says what to do."""


def _directives(run_dir: Path, partition: str | None, gpus: int, cpus: int, mem: str, time_limit: str,
                account: str | None, nodes: int) -> list[str]:
    """One torchrun launcher per node (ntasks-per-node=1); it starts one process per GPU."""
    options = {"job-name": f"lumen-{run_dir.name}", "output": rundir.log_path(run_dir), "open-mode": "append",
               "nodes": nodes, "ntasks-per-node": 1, "cpus-per-task": cpus, "mem": mem, "time": time_limit,
               "partition": partition, "account": account, "gres": f"gpu:{gpus}" if gpus > 0 else None}
    return [f"#SBATCH --{key}={value}" for key, value in options.items() if value is not None]


def _launch(run_dir: Path, gpus: int, nodes: int, resume: bool) -> list[str]:
    """The srun + torchrun lines: a standalone rendezvous on one node, SLURM's first node on several."""
    train = ["-m", "core", "train", "--config", str(rundir.config_path(run_dir)), "--run-dir", str(run_dir)]
    train += ["--resume"] if resume else []
    if nodes == 1:
        setup, rendezvous = [], ["--standalone"]
    else:
        setup = ['export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)"',
                 f'export MASTER_PORT="${{MASTER_PORT:-{MASTER_PORT}}}"']
        rendezvous = [f"--nnodes={nodes}", '--rdzv_id="$SLURM_JOB_ID"', "--rdzv_backend=c10d",
                      '--rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT"']
    command = ["srun", "python", "-m", "torch.distributed.run", *rendezvous, f"--nproc_per_node={max(gpus, 1)}",
               *map(shlex.quote, train)]
    return setup + [" ".join(command)]


def write_sbatch(run_dir: Path, *, who: Identity | str, partition: str | None = None, gpus: int = 1, cpus: int = 8,
                 mem: str = "32G", time: str = "04:00:00", account: str | None = None, nodes: int = 1,
                 extra_lines: Sequence[str] = (), resume: bool = False) -> Path:
    """Write run_dir/job.sbatch and mark the run as a SLURM run (queued) in status.json, with who
    launched it: the job's training process checks them again, as a local run's does.

    ``extra_lines`` go verbatim after the #SBATCH block: more directives (``#SBATCH --qos=high``)
    or setup (``module load cuda``).
    """
    require(who, "launch runs")
    run_dir = Path(run_dir).resolve()
    if not rundir.config_path(run_dir).exists():
        raise SlurmError(f"{run_dir} has no config.json: create the run first (python -m core slurm --config ...).")
    current = rundir.read_status(run_dir)
    state = current.get("state")
    started = current.get("pid") or current.get("slurm_job_id")  # queued behind a local run, or submitted
    if state == "running" or (state == "queued" and started):  # two trainers must never share a run directory
        raise SlurmError(f"{run_dir.name} is {state}; cancel it before writing a job for it.")
    threads = max(1, cpus // max(gpus, 1))
    lines = ["#!/bin/bash", *_directives(run_dir, partition, gpus, cpus, mem, time, account, nodes), *extra_lines,
             "",
             f"# Lumen run {run_dir.name}.",
             "# The run directory must be on a filesystem shared by the compute nodes and the machine running",
             "# the Lumen app (keep LUMEN_HOME there): the job writes its status, metrics and checkpoints into",
             "# it, and the app follows the run by reading them.",
             "set -eo pipefail",
             f"cd {shlex.quote(str(workspace.PROJECT_ROOT))}",
             "if [ -f .venv/bin/activate ]; then source .venv/bin/activate; fi",
             f"export LUMEN_HOME={shlex.quote(str(workspace.home()))} PYTHONUNBUFFERED=1 OMP_NUM_THREADS={threads}",
             f"export SRUN_CPUS_PER_TASK={cpus}  # some SLURM versions do not pass --cpus-per-task on to srun",
             *_launch(run_dir, gpus, nodes, resume)]
    path = rundir.sbatch_path(run_dir)
    workspace.atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    rundir.write_launcher(run_dir, who)
    rundir.write_status(run_dir, scheduler="slurm", state="queued", pid=None, slurm_job_id=None, finished=None,
                        message=f"job script written: submit it with sbatch {path}")
    return path


def submit(run_dir: Path, *, who: Identity | str, **options: Any) -> str:
    """Write the job script and hand it to sbatch; returns SLURM's job id (kept in status.json)."""
    script = write_sbatch(run_dir, who=who, **options)
    if shutil.which("sbatch") is None:
        raise SlurmError(f"sbatch not found: copy {script} to your cluster's login node and run sbatch there")
    result = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0 or not result.stdout.strip():
        raise SlurmError(f"sbatch refused {script}: {(result.stderr or result.stdout).strip()}")
    job_id = result.stdout.strip().splitlines()[-1].split(";")[0]  # --parsable: "id" or "id;cluster"
    rundir.write_status(run_dir, scheduler="slurm", slurm_job_id=job_id, state="queued", submitted=time.time(),
                        message=f"SLURM job {job_id} queued")
    return job_id


def _ask(*command: str) -> str | None:
    """A SLURM command's output; "" when it does not know the job; None when it could not answer."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode == 0:
        return result.stdout.strip()
    return "" if "invalid job id" in result.stderr.lower() else None


def slurm_state(job_id: str) -> str | None:
    """SLURM's word for the job (PENDING, RUNNING, COMPLETED, TIMEOUT, ...), "GONE" once SLURM has
    forgotten it, None where it cannot be asked (no squeue on this machine, controller down)."""
    if shutil.which("squeue") is None:
        return None
    state = _ask("squeue", "-h", "-t", "all", "-j", str(job_id), "-o", "%T")
    if state == "" and shutil.which("sacct"):
        state = _ask("sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "State") or ""
    if state is None:
        return None
    return state.split()[0] if state else "GONE"


def reconcile(run_dir: Path, current: dict[str, Any]) -> dict[str, Any]:
    """An active SLURM run's status, closed when SLURM says the job ended without the run saying so."""
    job_id = current.get("slurm_job_id")
    ended = slurm_state(job_id) if job_id else None
    if ended not in ENDED:
        return current
    return rundir.write_status(run_dir, state="cancelled" if ended == "CANCELLED" else "failed",
                               finished=time.time(), log_tail=rundir.log_tail(run_dir, 12),
                               message=f"SLURM job {job_id} ended ({ended}) before the run finished; "
                                       "resume continues from the last finished epoch")


def cancel(run_dir: Path, current: dict[str, Any], *, who: Identity | str) -> bool:
    """scancel the run's job (never a local kill: its pid belongs to a compute node); True when done."""
    require(who, "launch runs")
    job_id = current.get("slurm_job_id")
    if current.get("state") == "queued" and not job_id:  # written, never submitted from here
        rundir.write_status(run_dir, state="cancelled", finished=time.time(),
                            message="withdrawn before any job started; if you submitted job.sbatch by hand, "
                                    "scancel that job on the cluster too")
        return True
    if current.get("state") not in rundir.ACTIVE or not job_id or shutil.which("scancel") is None:
        return False
    if subprocess.run(["scancel", str(job_id)], capture_output=True, timeout=30).returncode != 0:
        return False
    rundir.write_status(run_dir, state="cancelled", finished=time.time(),
                        message=f"cancelled with scancel {job_id}; resume continues from the last finished epoch")
    return True
