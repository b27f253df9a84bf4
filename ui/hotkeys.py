"""Keyboard shortcuts for the review page: digits pick a label, arrows move between items.

Streamlit has no key bindings, so a one-pixel same-origin iframe (our own script) listens on the
page and clicks the matching button: a button whose text starts with "N ·" for digit N (see
`label_shortcut`), and the
buttons labelled "Previous" and "Next" for the arrow keys (or k and j), and "Clear my label" for
Backspace or Delete.
"""
from __future__ import annotations

import streamlit as st

_SCRIPT = """
<script>
const doc = window.parent.document;
if (!doc.lumenHotkeys) {
  doc.lumenHotkeys = true;
  doc.addEventListener("keydown", (event) => {
    const tag = (event.target.tagName || "").toLowerCase();
    if (["input", "textarea", "select"].includes(tag) || event.ctrlKey || event.metaKey || event.altKey) return;
    const buttons = [...doc.querySelectorAll("button")];
    const click = (test) => { const b = buttons.find((b) => test(b.innerText.trim())); if (b) { b.click(); event.preventDefault(); } };
    if (/^[0-9]$/.test(event.key)) click((t) => t.startsWith(event.key + " ·"));
    else if (event.key === "ArrowRight" || event.key === "j") click((t) => t.endsWith("Next"));
    else if (event.key === "ArrowLeft" || event.key === "k") click((t) => t.endsWith("Previous"));
    else if (event.key === "Backspace" || event.key === "Delete") click((t) => t.endsWith("Clear my label"));
  });
}
</script>
"""


SHORTCUT_KEYS = "1234567890"  # the tenth label takes 0, the key beside 9


def label_shortcut(position: int) -> str | None:
    """The digit that picks the label at 1-based `position`, or None past the tenth."""
    return SHORTCUT_KEYS[position - 1] if position <= len(SHORTCUT_KEYS) else None


def enable_hotkeys() -> None:
    st.iframe(_SCRIPT, height=1)
