"""Command line: ``python -m core scan SOURCE --json`` (more commands join as pages need them)."""
from __future__ import annotations

import argparse
import json
import sys

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
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
