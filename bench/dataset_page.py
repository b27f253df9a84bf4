"""Dataset page in Chromium: seconds from opening the page until its headline (the Items count) shows.

Three visits to a dataset registered in a fresh workspace:
  cold   a new app process, an empty fact cache and the files dropped from the page cache;
  warm   a second tab on the same app (the manifest is in Streamlit's cache);
  restart a new app process whose workspace already holds the facts (the header scan is skipped).
Also the time until the whole page has run, and the app's memory (its verification runs in a
separate process, which starts on the first visit and goes on meanwhile).

    python -m bench.dataset_page SOURCE     # e.g. a folder of 100,000 crops
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from bench.scan import drop_from_page_cache
from core import registry, roles
from core.sources import SourceSpec, list_items
from tests.browser.server import free_port, launch_browser, start_app, stop_app, wait_idle

NAME = "bench"


def _rss_mb(pid: int) -> float:
    """Resident memory of the app's process (the streamlit server), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user and system) the app's process has used: on a loaded machine, what the wall
    time would shrink towards."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _visit(browser, url: str, items: int, pid: int) -> tuple[float, float, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    start, cpu = time.perf_counter(), _cpu_s(pid)
    page.goto(f"{url}/?dataset={NAME}")
    page.get_by_test_id("stMetricValue").filter(has_text=f"{items:,}").first.wait_for(timeout=600_000)
    headline, headline_cpu = time.perf_counter() - start, _cpu_s(pid) - cpu
    wait_idle(page, timeout_ms=600_000)
    whole = time.perf_counter() - start
    page.close()
    return headline, headline_cpu, whole


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="lumen-bench-page-"))
    os.environ["LUMEN_HOME"] = str(home)
    spec = SourceSpec(args.source)
    registry.add_dataset(NAME, spec, who=roles.operator())
    listing = list_items(spec)
    paths = listing["path"].dropna().drop_duplicates().tolist()
    print(f"source: {args.source} ({len(listing):,} items), {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    drop_from_page_cache(paths)
    with sync_playwright() as playwright:
        browser = launch_browser(playwright)
        for visit in ("cold", "warm", "restart"):
            if visit != "warm":
                process, url = start_app(free_port(), home)
            headline, cpu, whole = _visit(browser, url, len(listing), process.pid)
            print(f"{visit:8s} headline {headline:6.1f} s (app CPU {cpu:5.1f} s), whole page {whole:6.1f} s, "
                  f"app memory {_rss_mb(process.pid):,.0f} MB, load {os.getloadavg()[0]:.1f}")
            if visit != "cold":
                stop_app(process)
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
