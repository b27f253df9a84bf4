"""Runs as background processes: create, launch, queue, watch, cancel, resume, list.

A run is a directory (see core.rundir) and an independent process (`python -m core train`), so
closing the browser tab or restarting the app neither kills nor forgets it. Runs on the same
device queue behind a file lock; a process that died without saying so (kill -9, out of memory)
is found by its pid and marked failed with the tail of its log.
"""
from __future__ import annotations

import fcntl
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pandas as pd

from core import rundir, slurm, workspace
from core.roles import Identity, operator, require
from core.runconfig import run_configs


def new_run_id(config: dict[str, Any]) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{config['model']['name']}-{secrets.token_hex(2)}"


def create_runs(config: dict[str, Any], *, who: Identity | str) -> list[Path]:
    """One run directory per repeat and fold (core.runconfig.run_configs), each with its config and a
    queued status, in run_configs' order."""
    require(who, "launch runs")
    dirs = []
    for one in run_configs(config):
        run_dir = rundir.runs_root() / new_run_id(one)
        run_dir.mkdir(parents=True)
        rundir.write_config(run_dir, one)
        rundir.write_status(run_dir, state="queued", created=time.time(), message="waiting to start")
        dirs.append(run_dir)
    return dirs


def launch(run_dir: Path, resume: bool = False, *, who: Identity | str) -> int:
    """Start the training process detached from the caller; returns its pid. status.json keeps who
    launched it, and the process checks them again before it trains (check_launcher)."""
    require(who, "launch runs")
    run_dir = Path(run_dir)
    cmd = [sys.executable, "-m", "core", "train", "--config", str(rundir.config_path(run_dir)),
           "--run-dir", str(run_dir)] + (["--resume"] if resume else [])
    rundir.write_launcher(run_dir, who)
    with open(rundir.log_path(run_dir), "ab") as log:
        process = subprocess.Popen(cmd, cwd=workspace.PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   env={**os.environ, "LUMEN_HOME": str(workspace.home()),
                                        "PYTHONUNBUFFERED": "1"})
    rundir.write_status(run_dir, state="queued", pid=process.pid, message="waiting for the device",
                        finished=None, cancel_requested=False, scheduler="local")
    return process.pid


def check_launcher(run_dir: Path) -> None:
    """The training process's own check: whoever status.json says launched the run must still be
    allowed to, so a run folder cannot train for a role below "launch runs". A process started at the
    shell on a run nobody launched from Lumen acts for the operator there."""
    require(rundir.read_launcher(run_dir) or operator(), "launch runs")


# ---------------------------------------------------------------- queue


#: The lock a queued run waits on, torch-free, before it resolves and waits for its device.
QUEUE_SLOT = "queue"


@contextmanager
def device_slot(device: str, on_wait: Callable[[], object], should_stop: Callable[[], bool]) -> Iterator[None]:
    """Hold the device's lock while training; wait (cancellable) while another run holds it.

    The lock is a file lock, so the kernel releases it when a process dies, however it dies.
    """
    lock_path = workspace.home() / "locks" / f"{device.replace(':', '-')}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        waited = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    on_wait()
                    waited = True
                if should_stop():
                    raise InterruptedError("cancelled while queued") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------- watching


def pid_alive(pid: int | None) -> bool:
    """True while the process runs; a zombie (exited, not yet reaped) counts as dead."""
    if not pid:
        return False
    with suppress(ChildProcessError):  # not our child: nothing to reap
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child and has exited
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False


def status(run_dir: Path) -> dict[str, Any]:
    """status.json, corrected when the process behind an active state is gone."""
    current = rundir.read_status(run_dir)
    if current.get("state") in rundir.ACTIVE and current.get("scheduler") == "slurm":
        return slurm.reconcile(run_dir, current)  # its pid lives on a compute node
    if current.get("state") in rundir.ACTIVE and current.get("pid") and not pid_alive(current["pid"]):
        if current.get("cancel_requested"):  # stopped before its own handler could say so
            return rundir.write_status(run_dir, state="cancelled", finished=time.time(),
                                       message="cancelled; resume continues from the last finished epoch")
        tail = rundir.log_tail(run_dir, 12)
        current = rundir.write_status(run_dir, state="failed", finished=time.time(),
                                      message="the training process died without finishing "
                                              "(killed, or out of memory); resume continues from the "
                                              "last finished epoch", log_tail=tail)
    return current


def cancel(run_dir: Path, *, who: Identity | str) -> bool:
    """Ask the run's process to stop at the next batch; True when there was one to ask."""
    require(who, "launch runs")
    current = status(run_dir)
    if current.get("scheduler") == "slurm":
        return slurm.cancel(run_dir, current, who=who)
    pid: int | None = current.get("pid")
    if current.get("state") not in rundir.ACTIVE or pid is None or not pid_alive(pid):
        return False
    rundir.write_status(run_dir, cancel_requested=True, message="cancelling at the next batch")
    os.kill(pid, signal.SIGTERM)
    return True


def resume(run_dir: Path, *, who: Identity | str) -> int:
    """Relaunch a cancelled or failed run from its last checkpoint (or from scratch without one)."""
    require(who, "launch runs")
    current = status(run_dir)
    if current.get("state") in rundir.ACTIVE:
        raise ValueError("This run is still active; cancel it before resuming.")
    return launch(run_dir, resume=rundir.checkpoint_path(run_dir, "last").exists(), who=who)


def wait(run_dir: Path, timeout: float = 600, poll: float = 0.5) -> dict[str, Any]:
    """Block until the run leaves the active states (for tests and the command line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = status(run_dir)
        if current.get("state") not in rundir.ACTIVE:
            return current
        time.sleep(poll)
    raise TimeoutError(f"run {Path(run_dir).name} still {current.get('state')} after {timeout:.0f} s")


def list_runs() -> pd.DataFrame:
    """One row per run, newest first, then the embedded demo run: state, model, dataset, epochs and
    best validation figures."""
    rows = []
    for run_dir in [*sorted(rundir.runs_root().iterdir(), reverse=True), *rundir.demo_runs()]:
        if not rundir.config_path(run_dir).exists():
            continue
        config, current = rundir.read_config(run_dir), status(run_dir)
        metrics = rundir.read_metrics(run_dir)
        best = metrics[metrics["best"]].iloc[-1] if not metrics.empty and "best" in metrics else None
        rows.append({
            "run": run_dir.name, "state": current.get("state"), "dataset": config["dataset"].get("name"),
            "model": config["model"]["name"], "frozen": config["model"]["freeze"],
            "size": config["preprocess"]["size"], "seed": config["seed"],
            "epochs": f"{len(metrics)}/{config['epochs']}",
            "best val AUC": None if best is None else best.get("val_auc"),
            "best val acc": None if best is None else best.get("val_accuracy"),
            "message": current.get("message", ""), "path": str(run_dir),
        })
    return pd.DataFrame(rows)


def eta_seconds(current: dict[str, Any], now: float | None = None) -> float | None:
    """Time left from the share done so far; None before there is anything to go on."""
    progress, started = current.get("progress") or 0.0, current.get("started")
    done = progress - (current.get("progress_at_start") or 0.0)  # since this process started (resumes)
    if current.get("state") != "running" or not started or done <= 0.01:
        return None
    elapsed = (now or time.time()) - started
    return float(elapsed * (1 - progress) / done)


def compare(run_dirs: list[Path]) -> pd.DataFrame:
    """Settings and best validation figures of several runs, one row each, for the compare view."""
    rows = []
    for run_dir in run_dirs:
        config, metrics = rundir.read_config(run_dir), rundir.read_metrics(run_dir)
        best = metrics[metrics["best"]].iloc[-1] if not metrics.empty else None
        rows.append({
            "run": Path(run_dir).name, "model": config["model"]["name"], "frozen": config["model"]["freeze"],
            "size": config["preprocess"]["size"], "pad": config["preprocess"]["pad_mode"],
            "optimiser": config["optimiser"]["name"], "lr": config["optimiser"]["lr"],
            "batch": config["batch_size"], "imbalance": config["imbalance"], "seed": config["seed"],
            "epochs run": len(metrics),
            "best epoch": None if best is None else int(best["epoch"]),
            "best val AUC": None if best is None else best["val_auc"],
            "best val acc": None if best is None else best["val_accuracy"],
            "best val loss": None if best is None else best["val_loss"],
            "images/s": None if metrics.empty else float(metrics["images_per_s"].median()),
        })
    return pd.DataFrame(rows)


def delete(run_dir: Path, *, who: Identity | str) -> None:
    """Remove a run directory for good: admins only, never an active run or the embedded demo."""
    import shutil

    require(who, "delete runs")
    run_dir = Path(run_dir)
    if run_dir in rundir.demo_runs():
        raise ValueError("The embedded demo run ships with Lumen and cannot be deleted.")
    if status(run_dir).get("state") in rundir.ACTIVE:
        raise ValueError("This run is still active; cancel it before deleting it.")
    shutil.rmtree(run_dir)
