"""Review page, server side: how long **Next** takes at 17,000 items, against opening the page afresh.

A synthetic finished run (tests/big_run.py, all splits) in an empty workspace; the page runs in
Streamlit's AppTest, so the time is the script's rerun without a browser. Rounds interleave a fresh
page load (a new session, as a second reader opens the page: the server process's caches are warm)
with `--presses` presses
of Next in a session that is already open; medians are printed, then `next_ms`, and
`ratio <fresh load / Next>` last.

    python -m bench.review [--items N] [--rounds R] [--presses P]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.big_run import write_big_run

ROOT = Path(__file__).resolve().parent.parent
RUN = "big-run"


def fresh_page() -> tuple[AppTest, float]:
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    app.session_state["analysis_run"] = RUN
    app.switch_page("pages/review.py")
    start = time.perf_counter()
    app.run()
    seconds = time.perf_counter() - start
    if app.exception:
        raise SystemExit(f"the Review page failed: {[e.value for e in app.exception]}")
    return app, seconds


def next_press(app: AppTest) -> float:
    start = time.perf_counter()
    app.button(key="rv_next").click().run()
    seconds = time.perf_counter() - start
    if app.exception:
        raise SystemExit(f"Next failed: {[e.value for e in app.exception]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=17_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--presses", type=int, default=10)
    args = parser.parse_args()
    os.environ["LUMEN_HOME"] = tempfile.mkdtemp(prefix="lumen-bench-review-")
    write_big_run(Path(os.environ["LUMEN_HOME"]), n=args.items, name=RUN)
    print(f"{args.items:,} items, {args.rounds} rounds of a fresh load and {args.presses} presses of Next, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    open_app, _ = fresh_page()
    next_press(open_app)  # the first press warms the page's caches, as a reader's first minute does
    loads, presses = [], []
    for round_number in range(1, args.rounds + 1):
        _, seconds = fresh_page()
        loads.append(seconds)
        round_presses = [next_press(open_app) for _ in range(args.presses)]
        presses.extend(round_presses)
        print(f"round {round_number}: fresh load {seconds * 1000:.0f} ms; Next median "
              f"{statistics.median(round_presses) * 1000:.0f} ms; load {os.getloadavg()[0]:.1f}")
    load_ms, next_ms = statistics.median(loads) * 1000, statistics.median(presses) * 1000
    print(f"fresh_load_ms {load_ms:.0f}")
    print(f"next_ms {next_ms:.0f}")
    print(f"ratio {load_ms / next_ms:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
