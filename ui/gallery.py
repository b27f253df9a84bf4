"""Thumbnail grids, cached so that a page rerun does not touch the images again."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.thumbnails import thumbnail
from ui.text import md


@st.cache_data(max_entries=5000, show_spinner=False)
def _thumb(path: str, content_hash: str, index: int, split: str | None) -> bytes:
    return thumbnail(path, content_hash, index, split)


def image_grid(rows: pd.DataFrame, columns: int = 8, caption: str = "id") -> None:
    """Show the rows' thumbnails in a grid, captioned with one of their columns (file names for ids).

    A file that fails to decode (truncated, say, before background verification has caught it)
    shows its reason in its cell; the rest of the grid and the page go on."""
    rows = rows[rows["problem"].isna() & rows["hash"].notna()]
    for start in range(0, len(rows), columns):
        cells = st.columns(columns)
        for cell, row in zip(cells, rows.iloc[start:start + columns].itertuples()):
            split = row.split if isinstance(row.split, str) else None
            name = str(getattr(row, caption)).rsplit("/", 1)[-1]
            try:
                cell.image(_thumb(row.path, row.hash, int(row.index), split), caption=name, width="stretch")
            except (OSError, ValueError) as exc:
                cell.caption(f"{md(name)}: cannot be decoded ({md(exc)})")
