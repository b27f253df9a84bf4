"""The app's layout worker (core.layout_worker): a real spawned process that compiles UMAP at low
priority, computes what the page asks for as the page's own process would, and is replaced when it dies."""
import os
import signal
import threading
import time

import numpy as np
import pytest

from core import embeddings, layout_worker

pytestmark = pytest.mark.slow  # the worker compiles UMAP first: 40 s of CPU or more


def test_the_worker_compiles_umap_at_low_priority_and_lays_out_as_the_page_would():
    worker = layout_worker.warm_up()
    assert worker.compiled(timeout=600)
    assert os.getpriority(os.PRIO_PROCESS, worker.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0)
                                                                  + layout_worker.NICENESS)
    features = np.random.default_rng(3).normal(size=(300, 12)).astype(np.float32)
    here = embeddings.reduce(features, "umap", {"n_neighbors": 10}, seed=1)
    there = layout_worker.reduce(features, "umap", {"n_neighbors": 10}, seed=1)
    np.testing.assert_allclose(there, here, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="Unknown method"):  # its exceptions reach the caller
        worker.call(embeddings.reduce, features, "nope")
    assert layout_worker.worker() is worker  # one worker, kept


def test_a_worker_that_dies_in_a_call_is_said_and_replaced():
    worker = layout_worker.worker()
    assert worker.compiled(timeout=600)  # calls wait behind the compile
    killer = threading.Timer(2.0, os.kill, (worker.pid, signal.SIGKILL))  # as the OOM killer would, mid-fit
    killer.start()
    with pytest.raises(layout_worker.WorkerGone):
        worker.call(time.sleep, 60)
    killer.join()
    replacement = layout_worker.worker()
    assert replacement is not worker and replacement.alive
