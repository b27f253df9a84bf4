"""User text (class names, labels, file names, notes, paths, messages that quote them) shown as text.

Streamlit renders Markdown in captions, alerts, widget labels and st.markdown: a class name such as
`![px](http://host/pixel.png)` would make every visitor's browser fetch that address, and `[x](url)`
would show a link nobody wrote. `md` escapes every character Markdown (and Streamlit's own `:color[…]`
and `$…$` syntax) gives a meaning, so the text shows exactly as typed.
"""
from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")
#: GitHub-flavoured Markdown turns bare addresses into links whatever is escaped; an invisible word
#: joiner inside the scheme keeps them text.
_AUTOLINK = re.compile(r"(?i)(?<=\b[hfw])(?=ttps?:|tp:|ww\.)")
WORD_JOINER = "\u2060"


def md(value: object) -> str:
    """`value` as Markdown that renders to exactly its text (bare addresses are not made links)."""
    text = _AUTOLINK.sub(WORD_JOINER, str(value).replace("\n", " "))
    return _SPECIAL.sub(r"\\\1", text)
