"""Command line: ``python -m core scan|train|predict|bundle ...`` (more commands join as pages need them)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

from core import roles
from core.runconfig import ConfigError, load_config
from core.scanning import scan
from core.slurm import SlurmError
from core.sources import SourceError, SourceSpec, with_class_names
from core.summary import summarize


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that describe a source (core.sources.SourceSpec), shared by every command that reads one."""
    parser.add_argument("source", help="a folder of images or of class folders, a CSV file or an .npz file")
    parser.add_argument("--kind", default="auto", choices=["auto", "folder", "csv", "npz"])
    parser.add_argument("--path-column")
    parser.add_argument("--label-column", help='CSV: the label column ("" for none: every row unlabelled)')
    parser.add_argument("--group-column")
    parser.add_argument("--split-column")
    parser.add_argument("--mask-column")
    parser.add_argument("--image-root", help="CSV: the folder its relative paths start from (default: its own)")
    parser.add_argument("--group-pattern", help="a regular expression whose one capture group reads the "
                                                "group from each file name, e.g. '^([^_]+)_'")
    parser.add_argument("--class-names", help="names of numeric labels: '0=nonGS, 1=GS', or 'nonGS, GS' "
                                              "in label order")


def _source_spec(args: argparse.Namespace) -> SourceSpec:
    spec = SourceSpec(path=args.source, kind=args.kind, path_column=args.path_column,
                      label_column=args.label_column, group_column=args.group_column,
                      split_column=args.split_column, mask_column=args.mask_column,
                      image_root=str(Path(args.image_root).resolve()) if args.image_root else None,
                      group_pattern=args.group_pattern)
    return with_class_names(spec, args.class_names or "")


def _scan_command(args: argparse.Namespace) -> int:
    manifest = scan(_source_spec(args), verify=not args.no_verify)
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
    run_dir = (Path(args.run_dir) if args.run_dir
               else runs.create_runs({**config, "repeats": 1}, who=roles.operator())[0])
    run_dir.mkdir(parents=True, exist_ok=True)
    if not rundir.config_path(run_dir).exists():
        rundir.write_config(run_dir, config)
    return run_dir


def _train_command(args: argparse.Namespace) -> int:
    """Train the config's runs in this process (one per repeat and fold, one after another); SIGTERM
    (the app's Cancel) stops the current one at the next batch and the rest before they start."""
    from core import rundir, runs
    from core.runconfig import run_configs

    # first: a config it refuses leaves the caller's logging as it was
    config = _resumed_config(args) if args.resume else load_config(args.config or _needs("--config"))
    logging.basicConfig(level=logging.INFO, format=rundir.LOG_FORMAT, stream=sys.stdout, force=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    configs = run_configs(config)
    if len(configs) == 1:
        return _train_one(configs[0], _run_dir(args, configs[0]), args.resume, stop)
    if args.run_dir or args.resume or "LOCAL_RANK" in os.environ:
        raise ConfigError(f"This config stands for {len(configs)} runs (repeats {config['repeats']}, "
                          f"{config['split']['folds']} fold(s)); --run-dir, --resume and torchrun take one: "
                          "train each run's own config.json, or leave them out.")
    dirs = runs.create_runs(config, who=roles.operator())
    logging.getLogger("lumen").info("%d runs, one after another: %s", len(dirs), ", ".join(d.name for d in dirs))
    codes = [_train_one(rundir.read_config(run_dir), run_dir, False, stop) for run_dir in dirs]
    return max(codes)


def _needs(option: str) -> NoReturn:
    raise ConfigError(f"train needs {option}.")


def _resumed_config(args: argparse.Namespace) -> dict[str, Any]:
    """--resume continues the run's own config.json; a --config that differs from it is refused
    unless --force-config, which makes it the run's config from then on."""
    from core import rundir
    from core.runconfig import changed_fields

    stored_path = rundir.config_path(Path(args.run_dir or _needs("--run-dir with --resume (the run to continue)")))
    if not stored_path.exists():
        return load_config(args.config or _needs(f"--config: {stored_path} does not exist"))
    stored = load_config(stored_path)
    given = load_config(args.config) if args.config else stored
    changed = changed_fields(stored, given)
    if changed and not args.force_config:
        raise ConfigError(f"--config differs from the run's own config ({stored_path}) in {', '.join(changed)}. "
                          "Resuming continues the run as it was configured: leave out --config, or add "
                          "--force-config to continue with the new one (it replaces the run's config.json).")
    if changed:
        rundir.write_config(stored_path.parent, given)
    return given


def _train_one(config: dict[str, Any], run_dir: Path, resume: bool, stop: threading.Event) -> int:
    """One run in this process, its log lines also in the run's log.txt."""
    from core import runlog

    with runlog.logged_to_file(run_dir):
        return _queued_run(config, run_dir, resume, stop)


def _queued_run(config: dict[str, Any], run_dir: Path, resume: bool, stop: threading.Event) -> int:
    """One run behind the device's queue (torchrun's launcher owns the devices itself). Torch is
    imported only once the run is first in line for its device setting: a study's waiting runs are
    small processes, not one loaded torch each."""
    from core import rundir, runs

    lead = int(os.environ.get("RANK", "0")) == 0
    try:
        runs.check_launcher(run_dir)  # whoever the app recorded as launching the run, checked again here
    except PermissionError as exc:
        if lead:
            rundir.write_status(run_dir, state="failed", finished=time.time(), message=str(exc))
        logging.getLogger("lumen").error("not trained: %s", exc)
        return 1
    if lead:
        rundir.write_status(run_dir, pid=os.getpid(), state="queued", message="waiting for the device")
    logging.getLogger("lumen").info("run directory %s", run_dir)
    if stop.is_set():
        rundir.write_status(run_dir, state="cancelled", message="cancelled while queued")
        return 0
    if "LOCAL_RANK" in os.environ:  # torchrun (SLURM too), even with one process: the launcher owns the devices
        from core import train
        return train.run_safely(config, run_dir, resume, stop.is_set)
    try:
        with ExitStack() as device_held:
            # One line for every device setting ("auto" and "cpu" are one device here): only its head
            # imports torch and waits for the device, then leaves the line to the next.
            with runs.device_slot(runs.QUEUE_SLOT, lambda: rundir.write_status(
                    run_dir, message="queued: another run is ahead in line for a device"), stop.is_set):
                from core import train  # torch, and the device it resolves to ("auto": a GPU when there is one)
                from core.train.optim import select_device
                device = str(select_device(config["device"]))
                device_held.enter_context(runs.device_slot(device, lambda: rundir.write_status(
                    run_dir, message=f"queued: another run is using {device}"), stop.is_set))
            return train.run_safely(config, run_dir, resume, stop.is_set)
    except InterruptedError:
        rundir.write_status(run_dir, state="cancelled", message="cancelled while queued")
        return 0


def _study_command(args: argparse.Namespace) -> int:
    """Create a study's runs (every cell validated first), launch them (they queue on the device),
    then, unless --detach, wait and print one table per cell: test metrics as mean ± sd and 95% interval."""
    from core import study

    if args.show:
        study_dir = Path(args.show)
        if not study.record_path(study_dir).exists():
            print(f"error: {study_dir} is not a study folder (it has no {study.record_path(study_dir).name})",
                  file=sys.stderr)
            return 2
    else:
        study_dir = study.create_study(study.load_spec(args.config), who=roles.operator())
        study.launch_study(study_dir, who=roles.operator())
        names = [row["run"] for row in study.read_record(study_dir)["runs"]]
        print(f"study {study_dir}: {len(names)} runs launched, queued on the device", flush=True)
        if args.detach:
            return 0

        def report(states: Any) -> None:
            print(f"\r{(states == 'finished').sum()}/{len(states)} runs finished", end="", file=sys.stderr,
                  flush=True)

        study.wait(study_dir, timeout=args.timeout, on_poll=report)
        print(file=sys.stderr)
    print(study.formatted(study.summary(study_dir)).to_string(index=False))
    return 0


def _slurm_command(args: argparse.Namespace) -> int:
    """Write the run's SLURM job script, print it, and with --submit hand it to sbatch."""
    from core import slurm

    run_dir = _run_dir(args, load_config(args.config))
    options = {key: value for key in ("partition", "gpus", "cpus", "mem", "time", "account", "nodes", "resume")
               if (value := getattr(args, key)) is not None}
    script = slurm.write_sbatch(run_dir, who=roles.operator(), **options)
    print(f"{script}\n\n{script.read_text()}", flush=True)
    if args.submit:
        print(f"submitted: SLURM job {slurm.submit(run_dir, who=roles.operator(), **options)}")
    return 0


def _evaluate_command(args: argparse.Namespace) -> int:
    """A run's metrics at a threshold: given, saved, or chosen by --tune on another split (and --save'd)."""
    from core import evaluation

    run_dir = Path(args.run_dir)
    try:
        if args.tune:
            if args.threshold is not None:
                raise ValueError("--tune chooses the threshold: leave out --threshold.")
            tuned = evaluation.tune_run(run_dir, args.tune, args.on, args.split, args.positive, args.set)
            report = tuned["report"]
        else:
            if args.save:
                raise ValueError("--save saves a threshold chosen by --tune: add --tune.")
            tuned, report = None, evaluation.evaluate_run(run_dir, args.split, args.threshold, args.positive, args.set)
        if args.roc:
            roc = evaluation.roc_points(run_dir, report["split"], report["positive_class"], args.set)
            roc.to_csv(args.roc, index=False)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if tuned and args.save:
        tuned["saved"] = evaluation.save_operating_point(run_dir, tuned["positive_class"], tuned["threshold"],
                                                         args.on, "raw scores",
                                                         who=roles.operator())
    if tuned and args.on == report["split"]:
        print(f"warning: tuned and reported on the same split ({args.on}): its figures are optimistic",
              file=sys.stderr)
    if args.json:
        print(json.dumps(tuned or report, indent=2))
        return 0
    if tuned:
        print(f"{tuned['rule']} on {args.on}: threshold {tuned['threshold']:.4f}" + (
              " (saved with the run)" if args.save else ""))
        _print_binary(tuned["tuning"])
    _print_binary(report)
    if "multiclass" in report:
        _print_multiclass(report["multiclass"])
    if args.roc:
        print(f"wrote {len(roc)} ROC points of {report['split']} to {args.roc}")
    return 0


def _print_binary(report: dict[str, Any]) -> None:
    m = report["metrics"]
    print(f"{report['run']} {report['split']}: positive {report['positive_class']}, threshold "
          f"{report['threshold']:.4f} ({report['threshold_source']}); sensitivity {m['sensitivity']:.3f}, "
          f"specificity {m['specificity']:.3f}, ROC AUC {report['roc_auc']:.4f}")


def _report_or_exit(build: Callable[[], dict[str, Any]], as_json: bool) -> dict[str, Any] | int:
    """build()'s report for the text output, or the exit code once its error (2) or, with --json,
    the report itself (0) is printed."""
    try:
        report = build()
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    return report


def _compare_command(args: argparse.Namespace) -> int:
    """Two runs on the same items: DeLong's test of the AUC difference, McNemar's at the saved points."""
    from core import paired

    report = _report_or_exit(lambda: paired.compare_runs(Path(args.run_a), Path(args.run_b), args.split), args.json)
    if isinstance(report, int):
        return report
    d, m = report["delong"], report["mcnemar"]
    print(f"{report['split']} split: {report['n']} items, {report['positives']} {report['positive_class']}; "
          f"A = {report['runs']['a']}, B = {report['runs']['b']}")
    print(f"ROC AUC: A {d['auc_a']:.4f}, B {d['auc_b']:.4f}; A - B = {d['difference']:+.4f} (95% interval "
          f"{d['ci_95'][0]:+.4f} to {d['ci_95'][1]:+.4f}), DeLong z = {d['z']:.2f}, p = {d['p_value']:.4g}")
    print(f"accuracy at the saved thresholds (A {report['thresholds']['a']:.4f}, B {report['thresholds']['b']:.4f}): "
          f"A {m['accuracy_a']:.3f}, B {m['accuracy_b']:.3f}; only A right {m['only_a_correct']}, only B right "
          f"{m['only_b_correct']}, McNemar exact p = {m['p_value']:.4g}")
    return 0


def _baseline_command(args: argparse.Namespace) -> int:
    """Fit the pixel logistic regression on the run's items (core.baseline) and set it beside the run."""
    from core import baseline, paired, rundir

    run_dir = Path(args.run_dir)
    record = _report_or_exit(lambda: baseline.fit_baseline(run_dir, args.side or baseline.SIDE), args.json)
    if isinstance(record, int):
        return record
    print(f"{record['model']}; C on validation: " + ", ".join(f"{row['C']:g} (AUC {row['val AUC']:.3f})"
                                                              for row in record["grid"]))
    for who, figures in (("baseline", record["baseline"]), (record["run"], record["run test"])):
        print(f"{who}: test AUC {figures['test AUC']:.4f}, accuracy {figures['test accuracy']:.3f} "
              f"({figures['test n']:.0f} items)")
    print(f"wrote {rundir.baseline_dir(run_dir)}")
    try:
        d = paired.compare_runs(run_dir, rundir.baseline_dir(run_dir))["delong"]
        print(f"run - baseline AUC {d['difference']:+.4f} (95% interval {d['ci_95'][0]:+.4f} to {d['ci_95'][1]:+.4f}), "
              f"DeLong p = {d['p_value']:.4g}; more: python -m core compare {run_dir} {rundir.baseline_dir(run_dir)}")
    except ValueError as exc:
        print(f"no paired test: {exc}")
    return 0


def _print_multiclass(report: dict[str, Any]) -> None:
    """All classes at once: accuracy, balanced accuracy and scikit-learn's per-class table."""
    from core.evaluation import per_class_table

    print(f"all {len(report['classes'])} classes, {report['n']} images (largest probability): accuracy "
          f"{report['accuracy']:.3f}, balanced accuracy {report['balanced_accuracy']:.3f}")
    print(per_class_table(report).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _threshold_option(value: str) -> float | None:
    """--threshold: "saved" (the run's operating point, None) or a probability."""
    if value == "saved":
        return None
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"use 'saved' or a number between 0 and 1, not '{value}'") from None


def _progress_bar(what: str) -> Callable[[int, int], None]:
    """A one-line progress bar on stderr, redrawn in place (stdout stays for the results)."""
    def show(done: int, total: int) -> None:
        filled = 30 * done // max(total, 1)
        end = "\n" if done >= total else ""
        print(f"\r{what} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}", end=end, file=sys.stderr, flush=True)
    return show


def _predict_command(args: argparse.Namespace) -> int:
    """The run's best model on a source: a prediction set in the run and a CSV of it."""
    from core import predict

    run_dir, spec = Path(args.run_dir), _source_spec(args)
    try:
        rule = predict.decision(run_dir, args.threshold)
        result = predict.predict_source(run_dir, spec, args.name, _progress_bar("predicting"), args.batch_size,
                                        who=roles.operator())
        out = Path(args.out or f"{result.name}.csv")
        rows = predict.write_csv(result.table, rule, out, args.format)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for row in result.skipped.itertuples():
        print(f"  skipped: {row.path}: {row.reason}")
    scale = f", temperature {rule.temperature:g}" if rule.temperature != 1.0 else ""
    print(f"{len(result.table)} images predicted, {len(result.skipped)} skipped; decision: {rule.positive} at "
          f"threshold {rule.threshold:.4f} ({rule.source}{scale})")
    print(f"prediction set '{result.name}' stored in {result.path}")
    print(f"wrote {rows} rows to {out} ({args.format})")
    return 0


def _predict_job_command(args: argparse.Namespace) -> int:
    """A prediction job the app launched: its source, progress and result live in its job file."""
    from core import prediction_jobs

    return prediction_jobs.run_job(Path(args.run_dir), args.name)


def _verify_job_command(args: argparse.Namespace) -> int:
    """A verification job the app launched: its source, progress and result live in its job file."""
    from core import verify_jobs

    return verify_jobs.run_job(Path(args.job_file))


def _bundle_command(args: argparse.Namespace) -> int:
    """The run's best model as a folder that predicts without Lumen (see core.bundle)."""
    from core import bundle

    try:
        files = bundle.write_bundle(Path(args.run_dir), Path(args.out), who=roles.operator())
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote the bundle {args.out}: {', '.join(f.name for f in files)}")
    print(f"use it anywhere with torch, pillow and numpy: python {Path(args.out) / 'predict.py'} IMAGES... --out "
          "predictions.csv")
    return 0


def _annotations_command(args: argparse.Namespace) -> int:
    """Export the review store's current annotations (all datasets unless one is named)."""
    from core import annotations

    out = Path(args.out)
    fmt = args.format or ("json" if out.suffix.lower() == ".json" else "csv")
    try:
        rows = annotations.export_annotations(annotations.open_store(), args.dataset, out, fmt, who=roles.operator())
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
        counts = write_corrected_labels(annotations.open_store(), Path(args.run_dir), out, who=roles.operator())
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
    _add_source_arguments(scan_parser)
    scan_parser.add_argument("--no-verify", action="store_true", help="read headers only, skip full decoding")
    scan_parser.add_argument("--json", action="store_true", help="print one JSON object")
    scan_parser.set_defaults(handler=_scan_command)
    train_parser = commands.add_parser("train", help="train one run from a config file")
    train_parser.add_argument("--config", help="a run config (JSON); see core/runconfig.py. With --resume: "
                                                "the run's own config.json unless given")
    train_parser.add_argument("--run-dir", help="where to write the run (default: a new folder in the workspace)")
    train_parser.add_argument("--resume", action="store_true", help="continue the --run-dir from its last checkpoint")
    train_parser.add_argument("--force-config", action="store_true",
                              help="with --resume: continue with --config even where it differs from the run's own")
    train_parser.set_defaults(handler=_train_command)
    eval_parser = commands.add_parser("evaluate", help="metrics of a run at its saved (or a given) threshold")
    eval_parser.add_argument("run_dir")
    eval_parser.add_argument("--split", default="test")
    eval_parser.add_argument("--set", help="a prediction set of the run (python -m core predict), instead of a split: "
                                           "its rows labelled with one of the run's classes")
    eval_parser.add_argument("--threshold", type=float)
    eval_parser.add_argument("--positive", help="the positive class (default: the saved one, else the rarer)")
    eval_parser.add_argument("--tune", metavar="RULE", help="choose the threshold on --on by youden, f1, "
                             "sensitivity=T or specificity=T, and report it on --split")
    eval_parser.add_argument("--on", default="val", help="the split --tune chooses on (default val)")
    eval_parser.add_argument("--save", action="store_true", help="save the tuned threshold as the run's operating "
                             "point (as the Threshold page's Save does)")
    eval_parser.add_argument("--roc", metavar="FILE.csv", help="write the ROC points (fpr, tpr, threshold) of the "
                             "reported split")
    eval_parser.add_argument("--json", action="store_true")
    eval_parser.set_defaults(handler=_evaluate_command)
    compare_parser = commands.add_parser("compare", help="two runs on the same test items: DeLong's test of the "
                                         "AUC difference and McNemar's at their saved operating points")
    compare_parser.add_argument("run_a")
    compare_parser.add_argument("run_b")
    compare_parser.add_argument("--split", default="test")
    compare_parser.add_argument("--json", action="store_true")
    compare_parser.set_defaults(handler=_compare_command)
    baseline_parser = commands.add_parser("baseline", help="a pixel logistic regression on the run's items, C chosen "
                                          "on validation, its test figures beside the run's")
    baseline_parser.add_argument("run_dir")
    baseline_parser.add_argument("--side", type=int, help="pixels per side of the images it sees (default 32)")
    baseline_parser.add_argument("--json", action="store_true")
    baseline_parser.set_defaults(handler=_baseline_command)
    predict_parser = commands.add_parser("predict", help="a run's best model on new images: a prediction set "
                                         "stored in the run and a CSV")
    predict_parser.add_argument("run_dir")
    _add_source_arguments(predict_parser)
    predict_parser.add_argument("--name", help="the prediction set's name (default: from the source's name)")
    predict_parser.add_argument("--out", help="the CSV to write (default: NAME.csv)")
    predict_parser.add_argument("--threshold", type=_threshold_option, default=None, metavar="saved|T",
                                help="the decision: the run's saved operating point (default) or a threshold "
                                     "on the raw scores")
    predict_parser.add_argument("--format", default="lumen", choices=["lumen", "course"],
                                help="lumen: file, predicted, prob_<class>..., decision; course: exactly Image,Label")
    predict_parser.add_argument("--batch-size", type=int, default=64)
    predict_parser.set_defaults(handler=_predict_command)
    job_parser = commands.add_parser("predict-job", help="run a prediction job the app launched (its source "
                                     "and progress are in the run's job file)")
    job_parser.add_argument("run_dir")
    job_parser.add_argument("name", help="the prediction set's name")
    job_parser.set_defaults(handler=_predict_job_command)
    verify_parser = commands.add_parser("verify-job", help="run a verification job the app launched (full decode "
                                        "of a source's files; its source and progress are in the job file)")
    verify_parser.add_argument("job_file")
    verify_parser.set_defaults(handler=_verify_job_command)
    bundle_parser = commands.add_parser("bundle", help="the run's best model as a folder that predicts without Lumen")
    bundle_parser.add_argument("run_dir")
    bundle_parser.add_argument("--out", required=True, help="the folder to write (created; must be new or empty)")
    bundle_parser.set_defaults(handler=_bundle_command)
    study_parser = commands.add_parser("study", help="a grid of configs over seeds or folds, one table of "
                                       "test metrics per configuration (mean ± sd, 95%% interval)")
    study_input = study_parser.add_mutually_exclusive_group(required=True)
    study_input.add_argument("--config", help='STUDY.json: {"name": ..., "base": {run config}, "grid": '
                                              '{"preprocess.size": [32, 64], ...}}')
    study_input.add_argument("--show", metavar="STUDY_DIR", help="print the table of an existing study")
    study_parser.add_argument("--detach", action="store_true", help="launch and return; --show prints the table")
    study_parser.add_argument("--timeout", type=float, default=24 * 3600, help="seconds to wait for the runs")
    study_parser.set_defaults(handler=_study_command)
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
