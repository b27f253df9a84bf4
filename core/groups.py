"""Groups (slide, patient, smear) read from file names, and the grouping a set of names suggests.

Labs often put the slide or patient id at the start of each crop's name (`18-162_PAS_5of6_x.png`)
instead of in a column. A group pattern is a regular expression with one capture group, matched
against each file's name without its folders and extension; the presets cover the usual layouts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from core.images import IMAGE_EXTENSIONS

GROUP_PRESETS: dict[str, str] = {
    "text before the first _": r"^([^_]+)_",
    "text before the last _": r"^(.+)_",
    "text before the first -": r"^([^-]+)-",
    "text before the last -": r"^(.+)-",
}

_MIN_MATCHED = 0.9  # share of names a suggested pattern must read a group from
_MAX_GROUP_SHARE = 1 / 3  # a suggested grouping whose largest group holds more is a centre or a stain, not a slide
_IMAGE_SUFFIX = re.compile("(" + "|".join(re.escape(e) for e in sorted(IMAGE_EXTENSIONS)) + ")$", re.IGNORECASE)


@dataclass(frozen=True)
class GroupSuggestion:
    """A preset that reads a group from (nearly) every name, and what it makes of them."""

    preset: str  # a key of GROUP_PRESETS
    pattern: str
    groups: int
    examples: tuple[str, ...]  # a few of the groups


def compile_group_pattern(pattern: str) -> re.Pattern[str]:
    """The pattern compiled; ValueError, said plainly, when it is not a regular expression with one group."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"The group pattern {pattern!r} is not a valid regular expression: {exc}.") from exc
    if compiled.groups != 1:
        raise ValueError(f"The group pattern {pattern!r} has {compiled.groups} capture groups; it needs exactly one, "
                         "in brackets, around the part of the name that is the group: for example ^([^_]+)_")
    return compiled


def file_stems(ids: pd.Series) -> pd.Series:
    """Each item's file name without its folders and image extension (`GS/a_1.png` -> `a_1`)."""
    names = ids.astype(str).str.rsplit("/", n=1).str[-1]
    return names.str.replace(_IMAGE_SUFFIX, "", regex=True)


def groups_from_names(ids: pd.Series, pattern: str) -> pd.Series:
    """The group of each item by the pattern; None where the name does not match (or the match is empty)."""
    found = file_stems(ids).str.extract(compile_group_pattern(pattern), expand=False)
    return found.where(found.notna() & (found != ""), None).astype(object)


def suggest_grouping(ids: pd.Series, labels: pd.Series) -> GroupSuggestion | None:
    """The coarsest preset that splits the names into evident groups, or None.

    Evident: it reads a group from nearly every name, makes at least three groups with two or more
    items each on average, no group holds a third of the items (a centre or a stain, not a slide),
    and every class spreads over three groups or more, so a grouped split can give each split some
    of it (a prefix that is the class itself, `BA_100102.jpg` for a basophil, does not). The coarsest
    such grouping is the safe one: it keeps the most look-alike crops together."""
    candidates = []
    for preset, pattern in GROUP_PRESETS.items():
        groups = groups_from_names(ids, pattern)
        counts = groups.value_counts()
        per_class = groups.groupby(labels.to_numpy()).nunique()
        if (groups.notna().mean() >= _MIN_MATCHED and len(counts) >= 3 and len(ids) >= 2 * len(counts)
                and counts.iloc[0] <= _MAX_GROUP_SHARE * len(ids) and (per_class >= 3).all()):
            candidates.append(GroupSuggestion(preset, pattern, len(counts), tuple(counts.index[:3])))
    return min(candidates, key=lambda s: s.groups, default=None)
