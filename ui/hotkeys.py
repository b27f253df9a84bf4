"""Keyboard shortcuts of the review page, on Streamlit's own button shortcuts (`st.button(shortcut=)`).

Digits pick a label, the arrow keys move between items, Backspace clears the reader's label. Streamlit
shows each key on its button and ignores it while the reader types in a text box.
"""
from __future__ import annotations

SHORTCUT_KEYS = "1234567890"  # the tenth label takes 0, the key beside 9
PREVIOUS_KEY, NEXT_KEY, CLEAR_KEY = "Left", "Right", "Backspace"


def label_shortcut(position: int) -> str | None:
    """The digit that picks the label at 1-based `position`, or None past the tenth."""
    return SHORTCUT_KEYS[position - 1] if position <= len(SHORTCUT_KEYS) else None
