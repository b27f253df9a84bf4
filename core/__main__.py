"""Command line: ``python -m core scan|train ...`` (more commands join as pages need them)."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from core.runconfig import ConfigError, load_config
from core.scanning import scan
from core.sources import SourceError, SourceSpec
from core.summary import summarize


def _scan_command(args) -> int:
    spec = SourceSpec(path=args.source, kind=args.kind, path_column=args.path_column,
                      label_column=args.label_column, group_column=args.group_column,
                      split_column=args.split_column, mask_column=args.mask_column)
    manifest = scan(spec, verify=not args.no_verify)
    summary = summarize(manifest)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['items']} items, {summary['usable']} usable, classes: {summary['classes']}")
        for problem in summary["problems"]:
            print(f"  problem: {problem['path']}: {problem['reason']}")
    return 0


def _train_command(args) -> int:
    """Train one run in this process; SIGTERM (the app's Cancel) stops it at the next batch."""
    from core import rundir, runs, train  # torch is imported only for this command

    config = load_config(args.config)
    run_dir = Path(args.run_dir) if args.run_dir else None
    if run_dir is None:
        run_dir = runs.create_runs({**config, "repeats": 1})[0]
    run_dir.mkdir(parents=True, exist_ok=True)
    if not rundir.config_path(run_dir).exists():
        from core.workspace import atomic_write_json
        atomic_write_json(rundir.config_path(run_dir), config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lead = int(os.environ.get("RANK", "0")) == 0
    if lead:
        rundir.write_status(run_dir, pid=os.getpid(), state="queued", message="waiting for the device")
    print(f"[lumen] run directory {run_dir}", flush=True)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun: the launcher owns the devices
        return train.run_safely(config, run_dir, args.resume, stop.is_set)
    device = str(train.select_device(config["device"]))
    try:
        with runs.device_slot(device, lambda: rundir.write_status(
                run_dir, message=f"queued: another run is using {device}"), stop.is_set):
            return train.run_safely(config, run_dir, args.resume, stop.is_set)
    except InterruptedError:
        rundir.write_status(run_dir, state="cancelled", message="cancelled while queued")
        return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core", description="Lumen's command line.")
    commands = parser.add_subparsers(dest="command", required=True)
    scan_parser = commands.add_parser("scan", help="scan and verify a dataset source")
    scan_parser.add_argument("source", help="a folder of class folders, a CSV file or an .npz file")
    scan_parser.add_argument("--kind", default="auto", choices=["auto", "folder", "csv", "npz"])
    scan_parser.add_argument("--path-column")
    scan_parser.add_argument("--label-column")
    scan_parser.add_argument("--group-column")
    scan_parser.add_argument("--split-column")
    scan_parser.add_argument("--mask-column")
    scan_parser.add_argument("--no-verify", action="store_true", help="read headers only, skip full decoding")
    scan_parser.add_argument("--json", action="store_true", help="print one JSON object")
    scan_parser.set_defaults(handler=_scan_command)
    train_parser = commands.add_parser("train", help="train one run from a config file")
    train_parser.add_argument("--config", required=True, help="a run config (JSON); see core/runconfig.py")
    train_parser.add_argument("--run-dir", help="where to write the run (default: a new folder in the workspace)")
    train_parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    train_parser.set_defaults(handler=_train_command)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (SourceError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
