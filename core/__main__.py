"""Command line: ``python -m core scan|train ...`` (more commands join as pages need them)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.runconfig import ConfigError, load_config
from core.scanning import scan
from core.slurm import SlurmError
from core.sources import SourceError, SourceSpec
from core.summary import summarize


def _scan_command(args: argparse.Namespace) -> int:
    spec = SourceSpec(path=args.source, kind=args.kind, path_column=args.path_column,
                      label_column=args.label_column, group_column=args.group_column,
                      split_column=args.split_column, mask_column=args.mask_column,
                      label_names=tuple(n.strip() for n in args.class_names.split(",")) if args.class_names else None)
    manifest = scan(spec, verify=not args.no_verify)
    summary = summarize(manifest)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['items']} items, {summary['usable']} usable, classes: {summary['classes']}")
        for problem in summary["problems"]:
            print(f"  problem: {problem['path']}: {problem['reason']}")
    return 0


def _run_dir(args: argparse.Namespace, config: dict[str, Any]) -> Path:
    """The run directory named on the command line, or a new one in the workspace; it holds config.json."""
    from core import rundir, runs

    if args.run_dir is None and "LOCAL_RANK" in os.environ:  # each torchrun process would make its own
        raise ConfigError("Under torchrun every process must write to the same run: pass --run-dir.")
    run_dir = Path(args.run_dir) if args.run_dir else runs.create_runs({**config, "repeats": 1})[0]
    run_dir.mkdir(parents=True, exist_ok=True)
    if not rundir.config_path(run_dir).exists():
        rundir.write_config(run_dir, config)
    return run_dir


def _train_command(args: argparse.Namespace) -> int:
    """Train one run in this process; SIGTERM (the app's Cancel) stops it at the next batch."""
    from core import rundir, runs, train  # torch is imported only for this command
    from core.train.optim import select_device

    config = load_config(args.config)  # first: a config it refuses leaves the caller's logging as it was
    logging.basicConfig(level=logging.INFO, format="[lumen] %(message)s", stream=sys.stdout, force=True)
    run_dir = _run_dir(args, config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lead = int(os.environ.get("RANK", "0")) == 0
    if lead:
        rundir.write_status(run_dir, pid=os.getpid(), state="queued", message="waiting for the device")
    logging.getLogger("lumen").info("run directory %s", run_dir)
    if "LOCAL_RANK" in os.environ:  # torchrun (SLURM too), even with one process: the launcher owns the devices
        return train.run_safely(config, run_dir, args.resume, stop.is_set)
    device = str(select_device(config["device"]))
    try:
        with runs.device_slot(device, lambda: rundir.write_status(
                run_dir, message=f"queued: another run is using {device}"), stop.is_set):
            return train.run_safely(config, run_dir, args.resume, stop.is_set)
    except InterruptedError:
        rundir.write_status(run_dir, state="cancelled", message="cancelled while queued")
        return 0


def _slurm_command(args: argparse.Namespace) -> int:
    """Write the run's SLURM job script, print it, and with --submit hand it to sbatch."""
    from core import slurm

    run_dir = _run_dir(args, load_config(args.config))
    options = {key: value for key in ("partition", "gpus", "cpus", "mem", "time", "account", "nodes", "resume")
               if (value := getattr(args, key)) is not None}
    script = slurm.write_sbatch(run_dir, **options)
    print(f"{script}\n\n{script.read_text()}", flush=True)
    if args.submit:
        print(f"submitted: SLURM job {slurm.submit(run_dir, **options)}")
    return 0


def _evaluate_command(args: argparse.Namespace) -> int:
    from core.evaluation import evaluate_run

    try:
        report = evaluate_run(Path(args.run_dir), args.split, args.threshold, args.positive)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        m = report["metrics"]
        print(f"{report['run']} {report['split']}: positive {report['positive_class']}, threshold "
              f"{report['threshold']:.4f} ({report['threshold_source']}); sensitivity {m['sensitivity']:.3f}, "
              f"specificity {m['specificity']:.3f}, ROC AUC {report['roc_auc']:.4f}")
        if "multiclass" in report:
            _print_multiclass(report["multiclass"])
    return 0


def _print_multiclass(report: dict[str, Any]) -> None:
    """All classes at once: accuracy, balanced accuracy and scikit-learn's per-class table."""
    from core.evaluation import per_class_table

    print(f"all {len(report['classes'])} classes, {report['n']} images (largest probability): accuracy "
          f"{report['accuracy']:.3f}, balanced accuracy {report['balanced_accuracy']:.3f}")
    print(per_class_table(report).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _annotations_command(args: argparse.Namespace) -> int:
    """Export the review store's current annotations (all datasets unless one is named)."""
    from core import annotations

    out = Path(args.out)
    fmt = args.format or ("json" if out.suffix.lower() == ".json" else "csv")
    try:
        rows = annotations.export_annotations(annotations.open_store(), args.dataset, out, fmt)
    except (annotations.AnnotationError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{rows} annotation rows written to {out} ({fmt})")
    return 0


def _corrected_labels_command(args: argparse.Namespace) -> int:
    """Write a run's corrected-labels CSV, the file the Review page writes (core.review)."""
    from core import annotations
    from core.review import write_corrected_labels

    out = Path(args.out)
    try:
        counts = write_corrected_labels(annotations.open_store(), Path(args.run_dir), out)
    except (FileNotFoundError, annotations.AnnotationError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{counts['written']} items written to {out} ({counts['changed']} relabelled, {counts['excluded']} "
          f"excluded, {counts['uncertain']} uncertain left out)")
    return 0


def _embed_command(args: argparse.Namespace) -> int:
    """Write a 2-D layout of a run's features (item_id, split, label, x, y) as CSV or parquet."""
    from core import rundir
    from core.embeddings import METHODS, layout

    run_dir = Path(args.run_dir)
    if args.method not in METHODS:
        print(f"error: unknown method '{args.method}': use one of {', '.join(METHODS)}", file=sys.stderr)
        return 2
    if not rundir.checkpoint_path(run_dir, "best").exists():
        print(f"error: {run_dir} has no best.pt: is it a finished run directory?", file=sys.stderr)
        return 2
    frame = layout(run_dir, args.method, tuple(args.split), seed=args.seed)
    out = Path(args.out)
    frame.to_parquet(out, index=False) if out.suffix == ".parquet" else frame.to_csv(out, index=False)
    print(f"wrote {len(frame)} points ({args.method}, {', '.join(args.split)}) to {out}")
    return 0


def _cam_command(args: argparse.Namespace) -> int:
    """Grad-CAM of one image file with a run's model, saved as a [input | heatmap | overlay] PNG."""
    from core import cam
    from core.images import load_array
    from core.runmodel import load_run_model

    try:
        method = cam.method_name(args.method)
        try:
            arr = load_array(args.image)
        except OSError as exc:
            raise ValueError(f"Cannot read the image {args.image}: {exc}") from exc
        model, ckpt = load_run_model(Path(args.run_dir), args.which)
        result = cam.explain(model, ckpt, arr, method, args.target)
        png = cam.cam_png(result.image, result.cam, args.alpha)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    probs = dict(zip(ckpt["classes"], result.probs))
    print(f"predicted: {result.predicted} (p={probs[result.predicted]:.3f})")
    print(f"target: {result.target} (p={probs[result.target]:.3f}), method {result.method}")
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
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
    scan_parser.add_argument("--class-names", help="npz: names of labels 0, 1, ... (comma-separated)")
    scan_parser.add_argument("--no-verify", action="store_true", help="read headers only, skip full decoding")
    scan_parser.add_argument("--json", action="store_true", help="print one JSON object")
    scan_parser.set_defaults(handler=_scan_command)
    train_parser = commands.add_parser("train", help="train one run from a config file")
    train_parser.add_argument("--config", required=True, help="a run config (JSON); see core/runconfig.py")
    train_parser.add_argument("--run-dir", help="where to write the run (default: a new folder in the workspace)")
    train_parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    train_parser.set_defaults(handler=_train_command)
    eval_parser = commands.add_parser("evaluate", help="metrics of a run at its saved (or a given) threshold")
    eval_parser.add_argument("run_dir")
    eval_parser.add_argument("--split", default="test")
    eval_parser.add_argument("--threshold", type=float)
    eval_parser.add_argument("--positive", help="the positive class (default: the saved one, else the rarer)")
    eval_parser.add_argument("--json", action="store_true")
    eval_parser.set_defaults(handler=_evaluate_command)
    slurm_parser = commands.add_parser("slurm", help="write (and submit) a SLURM job that trains one run")
    slurm_parser.add_argument("--config", required=True, help="a run config (JSON); see core/runconfig.py")
    slurm_parser.add_argument("--run-dir", help="the run directory, on a filesystem the compute nodes share "
                                                "(default: a new folder in the workspace)")
    slurm_parser.add_argument("--partition")
    slurm_parser.add_argument("--gpus", type=int, help="GPUs per node, one training process each (0: CPU only)")
    slurm_parser.add_argument("--cpus", type=int, help="CPU cores per node")
    slurm_parser.add_argument("--mem", help="memory per node, e.g. 32G")
    slurm_parser.add_argument("--time", help="time limit, e.g. 04:00:00")
    slurm_parser.add_argument("--account")
    slurm_parser.add_argument("--nodes", type=int)
    slurm_parser.add_argument("--resume", action="store_true", default=None,
                              help="continue from the run's last checkpoint")
    slurm_parser.add_argument("--submit", action="store_true", help="submit it with sbatch (on the login node)")
    slurm_parser.set_defaults(handler=_slurm_command)
    notes_parser = commands.add_parser("annotations", help="the review store: export annotations, corrected labels")
    notes_commands = notes_parser.add_subparsers(dest="action", required=True)
    export_parser = notes_commands.add_parser("export", help="current annotations per item and reader")
    export_parser.add_argument("--out", required=True, help="the file to write")
    export_parser.add_argument("--format", choices=["csv", "json"], help="default: from --out's suffix, else csv")
    export_parser.add_argument("--dataset", help="one dataset or run key (default: all)")
    export_parser.set_defaults(handler=_annotations_command)
    corrected_parser = notes_commands.add_parser("corrected-labels", help="a run's dataset with the readers' "
                                                 "corrections, as a CSV source (as the Review page writes it)")
    corrected_parser.add_argument("run_dir")
    corrected_parser.add_argument("--out", required=True, help="the CSV to write")
    corrected_parser.set_defaults(handler=_corrected_labels_command)
    embed_parser = commands.add_parser("embed", help="2-D layout of a run's learned features (UMAP, t-SNE, PCA)")
    embed_parser.add_argument("run_dir")
    embed_parser.add_argument("--method", default="umap", help="umap, tsne or pca")
    embed_parser.add_argument("--split", nargs="+", default=["test"], help="one or more of train val test")
    embed_parser.add_argument("--seed", type=int, default=0)
    embed_parser.add_argument("--out", required=True, help="a .csv or .parquet file")
    embed_parser.set_defaults(handler=_embed_command)
    cam_parser = commands.add_parser("cam", help="Grad-CAM of one image with a run's model, as a PNG")
    cam_parser.add_argument("run_dir")
    cam_parser.add_argument("--image", required=True, help="the image file to explain")
    cam_parser.add_argument("--method", default="gradcam", help="gradcam, gradcam++, xgradcam, layercam, "
                                                               "hirescam, eigencam or scorecam")
    cam_parser.add_argument("--out", required=True, help="the PNG to write: [input | heatmap | overlay]")
    cam_parser.add_argument("--target", help="the class to explain (default: the predicted class)")
    cam_parser.add_argument("--which", default="best", choices=["best", "last"], help="which checkpoint")
    cam_parser.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity in the overlay")
    cam_parser.set_defaults(handler=_cam_command)
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (SourceError, ConfigError, SlurmError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
