"""UMAP and t-SNE layouts for the app, in one worker process of their own.

UMAP's numba code compiles for 40 s of CPU on its first fit in a process, and a fit of 100,000
points takes minutes; in the Streamlit server both would hold its interpreter lock, so every page
of every session would stall meanwhile (a threshold move went from about 0.25 s to 0.45 s while the
compile ran in a server thread). The worker starts with the app, compiles UMAP's code paths at
once, at low priority, and from then on serves each layout the pages ask for. The command line
reduces in its own process (core.embeddings.reduce): it has nothing else to serve.
"""
from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from core import embeddings, workspace

#: The worker's niceness: its compile and its fits run on the CPU that page runs leave.
NICENESS = 10
_COMPILED = "compiled"


def _serve(requests: Connection) -> None:
    """The worker's life: compile, say so, then run each (function, arguments) sent, answering with
    its value or its exception, until the app closes its end."""
    os.nice(NICENESS)
    embeddings.compile_umap()
    requests.send((_COMPILED, None))
    while True:
        try:
            fn, args = requests.recv()
        except EOFError:
            return
        try:
            requests.send(("ok", fn(*args)))
        except Exception as exc:  # the caller raises it, as if the call had run in its own process
            requests.send(("error", exc))


class WorkerGone(RuntimeError):
    """The layout process stopped (killed, or out of memory on a huge fit)."""


class _Worker:
    """`python -m core.layout_worker FD`, talking over a socket pair: a plain subprocess, so nothing
    of the server (its threads, its main script) is copied or run again. One call at a time; the
    first waits for the compile."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen([sys.executable, "-m", "core.layout_worker", str(theirs.fileno())],
                                         pass_fds=(theirs.fileno(),), cwd=workspace.PROJECT_ROOT,
                                         stdin=subprocess.DEVNULL)
        theirs.close()
        self._requests = Connection(ours.detach())
        self._calls = threading.Lock()
        self._compiled = False
        self._gone = False  # its end of the socket closed: dead, even before the kernel reaps it
        atexit.register(self._process.kill)  # it ends with the app, even in the middle of a compile

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return not self._gone and self._process.poll() is None

    def _receive_compiled(self, timeout: float | None) -> bool:
        """Under the call lock: read the worker's first message once it is there."""
        if not self._compiled:
            try:
                if not self._requests.poll(timeout):
                    return False
                self._requests.recv()
            except (EOFError, OSError) as exc:
                self._gone = True
                raise WorkerGone from exc
            self._compiled = True
        return True

    def compiled(self, timeout: float | None = 0) -> bool:
        """Whether UMAP is compiled, waiting up to `timeout` seconds (None: until it is). A call in
        progress answers False at once: it is either waiting for the compile or running after it."""
        if self._compiled:
            return True
        if not self._calls.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            return self._receive_compiled(timeout)
        finally:
            self._calls.release()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._calls:
            self._receive_compiled(None)
            try:
                self._requests.send((fn, args))
                status, value = self._requests.recv()
            except (EOFError, OSError) as exc:
                self._gone = True
                raise WorkerGone from exc
        if status == "error":
            raise value
        return value


_lock = threading.Lock()
_worker: _Worker | None = None


def worker() -> _Worker:
    """The app's worker, started on first use and again after one died."""
    global _worker
    with _lock:
        if _worker is None or not _worker.alive:
            _worker = _Worker()
        return _worker


def warm_up() -> _Worker:
    """Start the worker, which compiles UMAP at once (the app asks on every run; the first starts it)."""
    return worker()


def reduce(features: np.ndarray, method: str, params: dict[str, float] | None = None, seed: int = 0) -> np.ndarray:
    """core.embeddings.reduce, run in the worker; a worker that died is replaced on the next call,
    and this call says what happened."""
    if method == "pca":  # a fraction of a second: no reason to ship the features to another process
        return embeddings.reduce(features, method, params, seed)
    try:
        return np.asarray(worker().call(embeddings.reduce, features, method, params, seed))
    except WorkerGone:
        raise WorkerGone(f"The layout process stopped before finishing {method} of {len(features):,} points "
                         "(killed, or out of memory); try again, or use PCA.") from None


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
