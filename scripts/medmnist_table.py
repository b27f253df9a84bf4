"""Lumen's ResNet-18 on PneumoniaMNIST and BreastMNIST over 3 seeds, beside MedMNIST v2's published figures.

Each dataset is one study (configs/study_<dataset>_resnet18.json), run through core.study like any
other, so the figures are the study table's: test AUC and accuracy (largest probability, which for
two classes is a fixed 0.5 threshold) as mean ± sd over the seeds.

    .venv/bin/python -m scripts.medmnist_table                 # create, launch and wait for both studies
    .venv/bin/python -m scripts.medmnist_table --show DIR DIR  # the table of studies already run
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from core import roles, study
from core.workspace import PROJECT_ROOT

#: MedMNIST v2 (Yang et al., Scientific Data 2023), Table 3, ResNet-18 (28): test AUC and ACC.
PUBLISHED = {"pneumoniamnist": (0.944, 0.854), "breastmnist": (0.901, 0.863)}
#: What MedMNIST v2 trained with, for the protocol note.
MEDMNIST_PROTOCOL = ("ResNet-18 with a 3x3 stride-1 first layer and no max-pool at 28 px, Adam lr 0.001, "
                     "batch 128, 100 epochs with the lr cut by 10 at epochs 50 and 75, best epoch on val AUC")


def config_path(dataset: str) -> Path:
    return PROJECT_ROOT / "configs" / f"study_{dataset}_resnet18.json"


def run_studies() -> list[Path]:
    """Create and launch both studies (their runs queue on the device), then wait for all of them."""
    dirs = []
    for dataset in PUBLISHED:
        study_dir = study.create_study(study.load_spec(config_path(dataset)), who=roles.operator())
        study.launch_study(study_dir, who=roles.operator())
        dirs.append(study_dir)
        print(f"{dataset}: study {study_dir}", flush=True)
    for study_dir in dirs:
        study.wait(study_dir, timeout=24 * 3600)
    return dirs


def protocol_words(record: dict) -> str:
    """How this study's training differs from MedMNIST's, read from its own config."""
    base = study.plan(study.parse_spec(record["spec"]))[0][1]
    schedule = base["scheduler"]
    schedule_words = (f"the lr cut by {1 / schedule['gamma']:g} every {schedule['step_size']} epochs"
                      if schedule["name"] == "step" else f"a {schedule['name']} schedule")
    return (f"{base['model']['name']} (torchvision: 7x7 stride-2 first layer and max-pool) at "
            f"{base['preprocess']['size']} px (the 28 px images resized), {base['optimiser']['name']} lr "
            f"{base['optimiser']['lr']}, batch {base['batch_size']}, {base['epochs']} epochs with "
            f"{schedule_words}, best epoch on {base['early_stopping']['metric']}, {record['repeats']} seeds")


def table(study_dirs: list[Path]) -> pd.DataFrame:
    """One row per dataset: Lumen's mean ± sd beside the published figure."""
    rows = []
    for study_dir in study_dirs:
        record = study.read_record(study_dir)
        dataset = Path(record["dataset"]).stem
        row = study.formatted(study.summary(study_dir)).iloc[0]
        auc, accuracy = PUBLISHED[dataset]
        rows.append({"dataset": dataset, "runs": row["runs"],
                     "test AUC (Lumen, mean ± sd)": row["test AUC (mean ± sd)"], "test AUC (MedMNIST v2)": auc,
                     "test ACC at 0.5 (Lumen, mean ± sd)": row["test accuracy (mean ± sd)"],
                     "test ACC (MedMNIST v2)": accuracy, "protocol": protocol_words(record)})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", nargs="+", metavar="STUDY_DIR", help="studies already run")
    args = parser.parse_args(argv)
    started = time.monotonic()
    dirs = [Path(d) for d in args.show] if args.show else run_studies()
    result = table(dirs)
    with pd.option_context("display.max_colwidth", None, "display.width", 250):
        print(result.drop(columns="protocol").to_string(index=False))
    for _, row in result.iterrows():
        print(f"{row['dataset']}: {row['protocol']}")
    print(f"MedMNIST v2: {MEDMNIST_PROTOCOL}")
    if not args.show:
        print(f"wall time {(time.monotonic() - started) / 60:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
