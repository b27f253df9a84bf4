"""Class names for labels stored as numbers (`0=nonGS, 1=GS`), for any source.

Spreadsheets and MedMNIST files label classes 0, 1, ...; a mapping stored with the dataset turns
them into names at listing time, so every page, run and export shows the names.
"""
from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

ClassNames = tuple[tuple[str, str], ...]  # (label as the data writes it, class name), in label order


def label_order(labels: Iterable[str]) -> list[str]:
    """The distinct labels, numbers by value (2 before 10), the rest alphabetically after them."""
    distinct = set(labels)
    numbers = sorted((lab for lab in distinct if _is_int(lab)), key=int)
    return numbers + sorted(distinct - set(numbers))


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def parse_class_names(text: str, labels: Iterable[str]) -> ClassNames:
    """`0=nonGS, 1=GS`, or `nonGS, GS` for the data's labels in label order; ValueError, said plainly,
    for a name given twice or a count that does not fit the labels."""
    parts = [part.strip() for part in text.split(",")]
    if all("=" in part for part in parts):
        pairs = tuple((key.strip(), name.strip()) for key, _, name in (part.partition("=") for part in parts))
    elif any("=" in part for part in parts):
        raise ValueError("Write either every class as label=name (0=nonGS, 1=GS) or only the names in label "
                         "order (nonGS, GS), not a mix.")
    else:
        order = label_order(labels)
        if len(parts) != len(order):
            raise ValueError(f"{len(parts)} class names given, but the data has {len(order)} labels "
                             f"({', '.join(order)}): give {len(order)} names, one per label in that order, "
                             "or write label=name.")
        pairs = tuple(zip(order, parts))
    check_class_names(pairs)
    return pairs


def check_class_names(pairs: ClassNames) -> None:
    """Every label and every name once, no name empty: two labels under one name would merge classes."""
    keys, names = [key for key, _ in pairs], [name for _, name in pairs]
    if any(not key for key in keys) or any(not name for name in names):
        raise ValueError("Class names and their labels must not be empty.")
    for kind, values in (("label", keys), ("name", names)):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"Each class {kind} must appear once; {', '.join(repeated)} is given twice.")


def name_labels(labels: pd.Series, pairs: ClassNames) -> pd.Series:
    """The labels as class names; ValueError naming the labels the mapping leaves out (None stays None)."""
    check_class_names(pairs)
    mapping = dict(pairs)
    present = label_order(labels.dropna().astype(str))
    missing = [lab for lab in present if lab not in mapping]
    if missing:
        raise ValueError(f"The class names leave out label{'s' if len(missing) > 1 else ''} {', '.join(missing)}, "
                         f"which the data has: name every label ({', '.join(present)}).")
    named = labels.map(mapping).astype(object)
    return named.where(named.notna(), None)
