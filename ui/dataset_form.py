"""The add-a-dataset form: path, kind and CSV columns, with errors a user can act on."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from core import registry
from core.sources import SourceError, SourceSpec, read_csv_header
from ui.state import select_dataset_next_run

_NONE = "(none)"
_EXPANDER_KEY = "add_open"
_ADDED_KEY = "add_done"  # set by a successful add: the next run empties and closes the form
_COLUMN_KEYS = ("add_path_col", "add_label_col", "add_group_col", "add_split_col", "add_mask_col")
_COLUMNS_FOR_KEY = "add_columns_for"  # the CSV whose columns the choices above belong to


def _column_choice(label: str, columns: list[str], guess: tuple[str, ...], key: str) -> str | None:
    options = [_NONE, *columns]
    lower = [c.lower() for c in columns]
    default = next((lower.index(g) + 1 for g in guess if g in lower), 0)
    choice = st.selectbox(label, options, index=default, key=key)
    return None if choice == _NONE else choice


def _csv_columns(path: str) -> dict:
    try:
        columns = read_csv_header(path)
    except (SourceError, OSError) as exc:
        st.error(str(exc))
        return {}
    if st.session_state.get(_COLUMNS_FOR_KEY) != path:  # another CSV: guess its columns afresh
        for key in _COLUMN_KEYS:
            st.session_state.pop(key, None)
        st.session_state[_COLUMNS_FOR_KEY] = path
    cols = st.columns(5)
    with cols[0]:
        path_column = _column_choice("Path column", columns, ("path", "filename", "file", "name", "image"),
                                     "add_path_col")
    with cols[1]:
        label_column = _column_choice("Label column", columns, ("label", "class", "ground truth", "target"),
                                      "add_label_col")
    with cols[2]:
        group_column = _column_choice("Group column (slide, patient)", columns,
                                      ("slide_id", "slide", "patient", "patient_id", "group"), "add_group_col")
    with cols[3]:
        split_column = _column_choice("Split column", columns, ("split", "subset", "fold"), "add_split_col")
    with cols[4]:
        mask_column = _column_choice("Mask column", columns, ("mask_path", "mask"), "add_mask_col")
    return dict(path_column=path_column, label_column=label_column, group_column=group_column,
                split_column=split_column, mask_column=mask_column)


def _npz_class_names() -> dict:
    """An npz stores labels as 0..K-1; names typed here replace those numbers on every page."""
    text = st.text_input("Class names for labels 0, 1, … (comma-separated, optional)", key="add_npz_names",
                         placeholder="normal, pneumonia")
    names = tuple(n.strip() for n in text.split(",")) if text.strip() else None
    return {"label_names": names}


def add_dataset_form() -> None:
    """Register a new source; on success it becomes the selected dataset and the form closes empty."""
    if st.session_state.pop(_ADDED_KEY, False):
        st.session_state.update({_EXPANDER_KEY: False, "add_path": "", "add_name": "", "add_npz_names": ""})
    with st.expander("Add a dataset", key=_EXPANDER_KEY, on_change="rerun"):
        st.caption("A folder of class folders (optionally inside train/val/test folders), a CSV of paths "
                   "and labels (paths relative to the CSV), or a MedMNIST-style .npz file.")
        path = st.text_input("Path on the server", key="add_path", placeholder="/data/glomeruli/labels.csv")
        name = st.text_input("Name", key="add_name", placeholder="My glomeruli")
        columns = {}
        if path.strip().lower().endswith((".csv", ".tsv")) and Path(path.strip()).is_file():
            columns = _csv_columns(path.strip())
        elif path.strip().lower().endswith(".npz"):
            columns = _npz_class_names()
        if st.button("Add dataset", type="primary", key="add_button"):
            name = (name or Path(path.strip()).stem).strip()
            try:
                registry.add_dataset(name, SourceSpec(path=path.strip(), **columns))
            except SourceError as exc:
                st.error(str(exc))
                return
            select_dataset_next_run(name)
            st.session_state[_ADDED_KEY] = True
            st.rerun()
