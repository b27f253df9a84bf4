"""Verification as a background process: it decodes every file, outside the caller, once at a time."""
import os
import shutil
import signal
import time

from streamlit.testing.v1 import AppTest

from core import registry, verify_jobs
from core.scanning import scan
from core.sources import SourceSpec
from tests.conftest import ROOT, SHARED_DATA


def _folder(tmp_path, copies: int = 1):
    """Real blood-cell JPEGs in two class folders, one of them cut short after its header."""
    for cls in ("platelet", "neutrophil"):
        (tmp_path / cls).mkdir()
        for k in range(copies):
            for path in sorted((SHARED_DATA / "blood_pbc" / cls).glob("*.jpg"))[:6]:
                shutil.copy(path, tmp_path / cls / f"{k}_{path.name}")
    cut = sorted((tmp_path / "platelet").glob("*.jpg"))[0]
    cut.write_bytes(cut.read_bytes()[:4000])
    return tmp_path, f"platelet/{cut.name}"


def _wait(spec, states=("finished", "failed"), timeout=180.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = verify_jobs.status(spec)
        if job.get("state") in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"verification still {verify_jobs.status(spec).get('state')} after {timeout:.0f} s")


def test_the_job_verifies_in_its_own_process_and_every_scan_sees_it(tmp_path):
    folder, cut = _folder(tmp_path)
    spec = SourceSpec(str(folder))
    before = scan(spec).set_index("id")
    assert not before["verified"].any() and before["problem"].isna().all()  # the header looks fine
    job = verify_jobs.start(spec)
    assert job["pid"] != os.getpid()
    job = _wait(spec)
    assert job["state"] == "finished" and job["done"] == job["total"] == 12
    after = scan(spec).set_index("id")
    assert after["verified"].all()
    assert "truncated" in after.loc[cut, "problem"]
    assert after.drop(index=cut)["problem"].isna().all()


def test_asking_twice_while_it_runs_starts_one_job(tmp_path):
    folder, _ = _folder(tmp_path, copies=20)
    spec = SourceSpec(str(folder))
    first = verify_jobs.start(spec)
    second = verify_jobs.start(spec)
    assert second["pid"] == first["pid"]
    assert _wait(spec)["state"] == "finished"


def test_a_killed_job_shows_as_failed_and_a_rescan_starts_again(tmp_path):
    folder, _ = _folder(tmp_path, copies=40)
    spec = SourceSpec(str(folder))
    job = verify_jobs.start(spec)
    os.kill(job["pid"], signal.SIGKILL)
    failed = _wait(spec)
    assert failed["state"] == "failed" and "died" in failed["message"]
    verify_jobs.forget(spec)
    assert verify_jobs.status(spec) == {}
    verify_jobs.start(spec)
    assert _wait(spec)["state"] == "finished"


def test_the_dataset_page_shows_progress_then_the_verified_figures(tmp_path):
    folder, cut = _folder(tmp_path)
    registry.add_dataset("cells", SourceSpec(str(folder)), who="admin")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["dataset"] = "cells"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    spec = registry.list_datasets()["cells"]
    assert verify_jobs.status(spec).get("state") in ("queued", "running", "finished")
    _wait(spec)
    at.run()
    assert any("were decoded and verified" in c.value for c in at.caption)
    assert {m.label: m.value for m in at.metric}["Problems"] == "1"
