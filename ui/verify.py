"""The Dataset page's view of full-decode verification, which runs as its own process
(core.verify_jobs): started when the manifest has files not yet decoded, polled while it runs."""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core import rundir, verify_jobs
from core.scanning import needs_verification
from core.sources import SourceSpec
from ui.text import md


def ensure_verification(spec: SourceSpec, manifest: pd.DataFrame, job: dict[str, Any]) -> dict[str, Any]:
    """The job, started when files wait for verification and none runs; a failed job stays failed
    (and says why) until a rescan."""
    if needs_verification(manifest) and job.get("state") not in (*rundir.ACTIVE, "failed"):
        return verify_jobs.start(spec)
    return job


def show_verification(spec: SourceSpec, manifest: pd.DataFrame, job: dict[str, Any]) -> None:
    if job.get("state") == "failed":
        st.warning(f"Verification stopped: {md(job.get('message', 'no reason given'))}. Header facts are shown.")
    elif job.get("state") in rundir.ACTIVE:
        _progress(spec)  # reruns the page, with the verified manifest, once the job is done
    else:
        st.caption(f"All {int(manifest['verified'].sum()):,} readable images were decoded and verified.")


@st.fragment(run_every=1.0)
def _progress(spec: SourceSpec) -> None:
    job = verify_jobs.status(spec)
    if job.get("state") not in rundir.ACTIVE:
        st.rerun(scope="app")  # the fact cache now carries the decode results
    done, total = int(job.get("done") or 0), int(job.get("total") or 0)
    counted = f"{done:,} of {total:,}" if total else "starting"  # the job counts its files first
    st.progress(done / total if total else 0.0,
                text=f"Verifying every image by decoding it, in the background: {counted} "
                     "(headers are shown meanwhile)")
