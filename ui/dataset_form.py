"""The add-a-dataset form: path, kind, CSV columns and image folder, class names and groups from file
names, with errors a user can act on."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import streamlit as st

from core import registry
from core.groups import GROUP_PRESETS
from core.sources import (
    LABEL_COLUMN_GUESSES,
    PATH_COLUMN_GUESSES,
    SourceError,
    SourceSpec,
    list_items,
    read_csv_header,
    suggest_image_root,
    with_class_names,
)
from ui.identity import current_reader
from ui.state import select_dataset_next_run
from ui.text import md

_NONE = "(none)"
_REGEX = "a regular expression"
_PREVIEW_ROWS = 6
_EXPANDER_KEY = "add_open"
_ADDED_KEY = "add_done"  # set by a successful add: the next run empties and closes the form
_ROOT_KEY = "add_image_root"
_PER_CSV_KEYS = ("add_path_col", "add_label_col", "add_group_col", "add_split_col", "add_mask_col", _ROOT_KEY)
_COLUMNS_FOR_KEY = "add_columns_for"  # the CSV whose choices above belong to
_TEXT_KEYS = ("add_path", "add_name", "add_class_names", _ROOT_KEY, "add_group_regex")


def _column_choice(label: str, columns: list[str], guess: tuple[str, ...], key: str) -> str | None:
    options = [_NONE, *columns]
    lower = [c.lower() for c in columns]
    default = next((lower.index(g) + 1 for g in guess if g in lower), 0)
    choice = st.selectbox(label, options, index=default, key=key)
    return None if choice == _NONE else choice


def csv_fields(path: str) -> dict[str, Any]:
    """The CSV's columns and image folder; "(none)" as the label column means unlabelled."""
    try:
        columns = read_csv_header(path)
    except (SourceError, OSError) as exc:
        st.error(md(exc))
        return {}
    if st.session_state.get(_COLUMNS_FOR_KEY) != path:  # another CSV: guess its columns afresh
        for key in _PER_CSV_KEYS:
            st.session_state.pop(key, None)
        st.session_state[_COLUMNS_FOR_KEY] = path
    cols = st.columns(5)
    with cols[0]:
        path_column = _column_choice("Path column", columns, PATH_COLUMN_GUESSES, "add_path_col")
    with cols[1]:
        label_column = _column_choice("Label column", columns, LABEL_COLUMN_GUESSES, "add_label_col")
    with cols[2]:
        group_column = _column_choice("Group column (slide, patient)", columns,
                                      ("slide_id", "slide", "patient", "patient_id", "group"), "add_group_col")
    with cols[3]:
        split_column = _column_choice("Split column", columns, ("split", "subset", "fold"), "add_split_col")
    with cols[4]:
        mask_column = _column_choice("Mask column", columns, ("mask_path", "mask"), "add_mask_col")
    root = st.text_input("Image folder", key=_ROOT_KEY, placeholder="(the CSV's own folder)",
                         help="Where the CSV's relative paths start: a folder relative to the CSV's, or an "
                              "absolute path.").strip()
    fields = {"path_column": path_column, "label_column": label_column or "", "group_column": group_column,
              "split_column": split_column, "mask_column": mask_column, "image_root": root or None}
    _offer_image_folder(SourceSpec(path=path, **fields))
    return fields


def _use_folder(folder: str) -> None:
    st.session_state[_ROOT_KEY] = folder


def _offer_image_folder(spec: SourceSpec) -> None:
    """Say so when most files the CSV names are missing but lie in one of its subfolders, and offer it."""
    try:
        hint = suggest_image_root(spec)
    except (SourceError, OSError):
        return  # the columns are not usable yet; Add says why
    if hint is None:
        return
    st.warning(f"Of {hint.checked:,} files the CSV names (the first ones), {hint.checked - hint.found_now:,} are not "
               f"in the image folder, but {hint.found_there:,} are in {md(hint.folder)}/.")
    st.button(f"Use {md(hint.folder)}/ as the image folder", key="add_use_root", on_click=_use_folder,
              args=(hint.folder,))


def _group_fields(spec: SourceSpec) -> dict[str, Any]:
    """A group read from each file name, with a preview of a few names and the group each gets."""
    preset = st.selectbox("Groups from file names", [_NONE, *GROUP_PRESETS, _REGEX], key="add_group_preset",
                          help="Crops of one slide or patient look alike, so splits keep each group whole.")
    if preset == _NONE:
        return {}
    pattern = GROUP_PRESETS.get(preset) or st.text_input(
        "Regular expression with one capture group (the group)", key="add_group_regex", placeholder=r"^(\d+-\d+)_")
    if not pattern:
        return {}
    try:
        listing = list_items(replace(spec, group_pattern=pattern))
    except SourceError as exc:
        st.error(md(exc))
        return {"group_pattern": pattern}
    preview = listing[["id", "group"]].head(_PREVIEW_ROWS).fillna("").rename(columns={"id": "name"})
    st.dataframe(preview, hide_index=True, width="stretch")
    unmatched = int(listing["group"].isna().sum())
    st.caption(f"{listing['group'].nunique():,} groups over {len(listing):,} items"
               + (f"; {unmatched:,} names match no group and stay on their own." if unmatched else "."))
    return {"group_pattern": pattern}


def _add(name: str, spec: SourceSpec, class_names: str) -> None:
    try:
        registry.add_dataset(name, with_class_names(spec, class_names), who=current_reader())
    except SourceError as exc:
        st.error(md(exc))
        return
    select_dataset_next_run(name)
    st.session_state[_ADDED_KEY] = True
    st.rerun()


def add_dataset_form() -> None:
    """Register a new source; on success it becomes the selected dataset and the form closes empty."""
    if st.session_state.pop(_ADDED_KEY, False):
        st.session_state.update({_EXPANDER_KEY: False, "add_group_preset": _NONE, **dict.fromkeys(_TEXT_KEYS, "")})
    with st.expander("Add a dataset", key=_EXPANDER_KEY, on_change="rerun"):
        st.caption("A folder of class folders (optionally inside train/val/test folders), a CSV of paths "
                   "and labels, or a MedMNIST-style .npz file.")
        path = st.text_input("Path on the server", key="add_path", placeholder="/data/glomeruli/labels.csv").strip()
        name = st.text_input("Name", key="add_name", placeholder="My glomeruli")
        fields: dict[str, Any] = {}
        is_csv = path.lower().endswith((".csv", ".tsv")) and Path(path).is_file()
        if is_csv:
            fields = csv_fields(path)
        if (fields and not fields["group_column"]) or (path and Path(path).is_dir()):
            fields |= _group_fields(SourceSpec(path=path, **fields))
        class_names = st.text_input("Class names for numeric labels (optional)", key="add_class_names",
                                    placeholder="0=nonGS, 1=GS",
                                    help="label=name pairs, or only the names in label order (nonGS, GS). "
                                         "Every page, run and export then shows the names.")
        if st.button("Add dataset", type="primary", key="add_button"):
            _add((name or Path(path).stem).strip(), SourceSpec(path=path, **fields), class_names)
