"""Lumen's log lines in a run's log.txt, without importing torch: a queued run logs while it waits."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from core import rundir


@contextmanager
def logged_to_file(run_dir: Path) -> Iterator[None]:
    """Lumen's log lines also go to the run's log.txt, however the run was started; a process whose
    output already goes there (the app's launch, a SLURM job) gets no second copy, and torchrun's
    other processes leave it to the first."""
    path = rundir.log_path(run_dir)
    if int(os.environ.get("RANK", "0")) != 0 or _writes_to(sys.stdout, path):
        yield
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(rundir.LOG_FORMAT))
    lumen = logging.getLogger("lumen")
    lumen.addHandler(handler)
    try:
        yield
    finally:
        lumen.removeHandler(handler)
        handler.close()


def _writes_to(stream: TextIO, path: Path) -> bool:
    try:
        return path.exists() and os.path.samestat(os.fstat(stream.fileno()), path.stat())
    except (AttributeError, OSError, ValueError):  # not a file (a test's captured output)
        return False
