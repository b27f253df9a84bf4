"""Full-decode verification as a background process (`python -m core verify-job JOB_FILE`).

Decoding every image of a large dataset takes minutes and the memory of the images in flight; in
its own process it holds neither the Streamlit server's memory nor its interpreter lock, it goes
on when the tab closes, and every session and app process sees the same job. The job file (JSON,
one per source) holds the source, the state (queued|running|finished|failed), the progress and, on
failure, the reason and the tail of the output. Results go where every scan reads them: the
workspace's fact cache (core.scanning).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from core import rundir, workspace
from core.runs import pid_alive
from core.scanning import scan
from core.sources import SourceSpec

#: How often a running job rewrites its progress at most.
PROGRESS_EVERY_S = 0.5
#: The job's niceness: it yields the CPU to the app's own page runs (and to training).
NICENESS = 10
#: How long a queued job may go without a pid (its launcher between writing the file and starting it).
START_GRACE_S = 60.0


def job_path(spec: SourceSpec) -> Path:
    key = hashlib.blake2b(json.dumps(spec.to_dict(), sort_keys=True).encode(), digest_size=10).hexdigest()
    return workspace.cache_dir("verify") / f"{key}.json"


def status(spec: SourceSpec) -> dict[str, Any]:
    """The job file, marked failed when the process behind an active state is gone; {} when none."""
    path = job_path(spec)
    current: dict[str, Any] = rundir.read_json(path, {})
    pid = current.get("pid")
    gone = not pid_alive(pid) if pid else time.time() - float(current.get("created") or 0) > START_GRACE_S
    if current.get("state") in rundir.ACTIVE and gone:
        current = _write(path, state="failed", finished=time.time(),
                         message="the verification process died without finishing (killed, or out of memory)",
                         log_tail=rundir.file_tail(path.with_suffix(".log"), 12))
    return current


def start(spec: SourceSpec) -> dict[str, Any]:
    """The active job for this source, or a new one started detached; one at a time per source even
    when several sessions or app processes ask at once (a lock file decides)."""
    path = job_path(spec)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = status(spec)
        if current.get("state") in rundir.ACTIVE:
            return current
        log_path = path.with_suffix(".log")
        _write(path, fresh=True, state="queued", spec=spec.to_dict(), created=time.time(), done=0, total=None)
        with open(log_path, "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "core", "verify-job", str(path)],
                                       cwd=workspace.PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True,
                                       env={**os.environ, "LUMEN_HOME": str(workspace.home()),
                                            "PYTHONUNBUFFERED": "1"})
        return _write(path, pid=process.pid)


def forget(spec: SourceSpec) -> None:
    """Drop a finished or failed job's file, so the next visit verifies again (a rescan); an active
    job is left to finish."""
    if status(spec).get("state") not in rundir.ACTIVE:
        job_path(spec).unlink(missing_ok=True)


def run_job(path: Path) -> int:
    """The job's own process: verify every file of the source not verified yet. Exit code 0 or 1."""
    path = Path(path)
    os.nice(NICENESS)
    spec = SourceSpec.from_dict(_read(path)["spec"])
    _write(path, state="running", pid=os.getpid(), started=time.time())
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if done >= total or time.monotonic() - last[0] >= PROGRESS_EVERY_S:
            last[0] = time.monotonic()
            _write(path, done=done, total=total)

    try:
        manifest = scan(spec, verify=True, progress=progress)
    except Exception as exc:  # shown on the page; the header facts stay usable
        traceback.print_exc()
        sys.stdout.flush()
        _write(path, state="failed", finished=time.time(), message=str(exc) or type(exc).__name__,
               log_tail=rundir.file_tail(path.with_suffix(".log"), 12))
        return 1
    _write(path, state="finished", finished=time.time(), verified=int(manifest["verified"].sum()))
    return 0


def _read(path: Path) -> dict[str, Any]:
    job: dict[str, Any] = rundir.read_json(path, {})
    return job


def _write(path: Path, fresh: bool = False, **fields: Any) -> dict[str, Any]:
    """Merge fields into the job file (a fresh one replaces it), atomically."""
    job = {**({} if fresh else _read(path)), **fields, "updated": time.time()}
    workspace.atomic_write_json(path, job)
    return job
