"""Full-decode verification in a background thread, so the Dataset page never waits for it.

One job per source, shared by every session (st.cache_resource), so two tabs on the same dataset
do not decode it twice.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import streamlit as st

from core.scanning import scan
from core.sources import SourceSpec


@dataclass
class VerifyJob:
    spec: SourceSpec
    done: int = 0
    total: int = 0
    error: str | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def run(self) -> None:
        try:
            scan(self.spec, verify=True, progress=self.progress)
        except Exception as exc:  # shown on the page; the header scan stays usable
            self.error = str(exc)
        finally:
            self.finished.set()


@st.cache_resource(max_entries=64)
def _jobs() -> dict:
    return {}


def verification_job(spec: SourceSpec) -> VerifyJob:
    """The running or finished job for this source, started on first call."""
    jobs = _jobs()
    key = repr(spec)
    job = jobs.get(key)
    if job is None or (job.finished.is_set() and job.error):
        job = VerifyJob(spec)
        jobs[key] = job
        threading.Thread(target=job.run, name=f"verify {spec.path}", daemon=True).start()
    return job


def forget(spec: SourceSpec) -> None:
    """Drop the job so a rescan verifies changed files again."""
    _jobs().pop(repr(spec), None)
