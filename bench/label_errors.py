"""Finding flipped labels: confident learning on out-of-fold probabilities against the in-sample order
and random order.

Flips 5% of the labels of ../shared/data/blood_pbc (8 classes, 250 each; seeded: each flipped image
gets another class, drawn uniformly) into a CSV beside a private workspace, then on the run config's
per-class subset of that CSV:

(a) out of fold: a K-fold cross-validation study (core.study, StratifiedGroupKFold, one run per fold),
    ranked by confident learning (core.label_errors) on the out-of-fold probabilities;
(b) in-sample: one ordinary run on the same items, ranked as the Review page's "likely label error
    (in-sample)" order does (wrong and confident first, ui.review_queue) on its predictions of every
    item, most of which it trained on;
(c) random order (seeded).

k is the number of flipped items in the subset; prints the precision and recall of the flips among
the top k of each ranking, and last `precision_at_k <out-of-fold value>`.

    python -m bench.label_errors [--per-class 120] [--size 48] [--epochs 20] [--folds 5]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
BLOOD = ROOT.parent / "shared" / "data" / "blood_pbc"


def flipped_csv(folder: Path, share: float, seed: int) -> tuple[Path, set[str]]:
    """labels.csv of blood_pbc with `share` of its labels moved to another class; the flipped paths."""
    table = pd.read_csv(BLOOD / "labels.csv")[["path", "class"]]
    rng = np.random.default_rng(seed)
    classes = sorted(table["class"].unique())
    chosen = rng.choice(len(table), size=round(share * len(table)), replace=False)
    for i in chosen:
        others = [c for c in classes if c != table.at[i, "class"]]
        table.at[i, "class"] = others[rng.integers(len(others))]
    table["path"] = [str(BLOOD / p) for p in table["path"]]
    out = folder / "flipped.csv"
    table.to_csv(out, index=False)
    return out, set(table.loc[chosen, "path"])


def precision_recall(order: list[str], flipped: set[str], k: int) -> tuple[float, float]:
    hits = len(set(order[:k]) & flipped)
    return hits / k, hits / len(flipped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=120)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=20)  # 12 reached 0.528 on 2 CPU cores, 20 reached 0.604
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--share", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lumen-label-errors-"))
    os.environ["LUMEN_HOME"] = str(work / "workspace")  # the runs' processes inherit it
    from core import label_errors, roles, rundir, runs, study
    from core.sources import SourceSpec
    from ui.review_queue import decisions, sort_queue

    csv, flipped_paths = flipped_csv(work, args.share, args.seed)
    source = SourceSpec(path=str(csv), kind="csv", path_column="path", label_column="class").to_dict()
    base = {"dataset": {"name": "blood_pbc, 5% flipped", "source": source},
            "subset": {"per_class": args.per_class, "seed": args.seed}, "preprocess": {"size": args.size},
            "model": {"name": "simple_cnn", "options": {"blocks": 3, "width": 32}},
            "epochs": args.epochs, "batch_size": 64, "early_stopping": {"patience": 4, "metric": "val_loss"},
            "device": "cpu"}
    print(f"blood_pbc with {len(flipped_paths)} of 2000 labels flipped (seed {args.seed}); subset {args.per_class} "
          f"per class; simple_cnn (3 blocks, width 32) at {args.size} px, at most {args.epochs} epochs, CPU")

    start = time.perf_counter()
    folds_split = {"folds": args.folds, "ratios": [0.85, 0.15, 0]}
    cv = study.create_study(study.parse_spec({"name": "label errors", "base": {**base, "split": folds_split}}),
                            who=roles.operator())
    study.launch_study(cv, who=roles.operator())
    study.wait(cv, timeout=4 * 3600)
    oof = study.out_of_fold(cv)
    if oof is None:
        raise SystemExit(f"the cross-validation did not finish: {study.states(cv).to_dict()}")
    cv_seconds = time.perf_counter() - start
    folds = study.run_table(cv)
    print(f"(a) {args.folds}-fold cross-validation: {len(oof)} items, {cv_seconds:.0f} s; held-out accuracy per fold "
          + ", ".join(f"{a:.3f}" for a in folds["test accuracy"]))

    start = time.perf_counter()
    (single,) = runs.create_runs({**base, "split": {"ratios": [0.85, 0.15, 0]}}, who=roles.operator())
    runs.launch(single, who=roles.operator())
    runs.wait(single, timeout=3600)
    predictions = rundir.read_predictions(single)
    print(f"(b) one run on the same items: {len(predictions)} items, {time.perf_counter() - start:.0f} s")

    items = rundir.read_items(Path(folds["path"].iloc[0]), root=rundir.dataset_root(csv))
    path_of = dict(zip(items["item_id"], items["path"]))
    used = set(oof["item_id"])
    flipped = {item for item in used if path_of[item] in flipped_paths}
    k = len(flipped)
    ranked = label_errors.ranking(oof).sort_values("rank")
    in_sample = sort_queue(decisions(predictions, single), "likely label error (in-sample)")
    rng = np.random.default_rng(args.seed)
    orders = {"out of fold (confident learning)": ranked["item_id"].tolist(),
              "in-sample (wrong and confident first)": in_sample["item_id"].tolist(),
              "random": list(rng.permutation(sorted(used)))}
    print(f"{len(used)} items, {k} of them flipped; issues flagged by confident learning: {int(ranked['issue'].sum())}")
    print(f"{'ranking':40s} precision@k  recall@k  (k = {k})")
    for name, order in orders.items():
        precision, recall = precision_recall(order, flipped, k)
        print(f"{name:40s} {precision:11.3f} {recall:9.3f}")
    print(f"precision_at_k {precision_recall(orders['out of fold (confident learning)'], flipped, k)[0]:.3f}")


if __name__ == "__main__":
    main()
