"""User text (file, class and dataset names) inside Streamlit's Markdown, shown as typed."""
from __future__ import annotations

import re

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation mark CommonMark lets a backslash escape


def plain(text: object) -> str:
    """The text with every character Markdown could read as markup escaped: `18-162_PAS_5of6`
    must not turn italic, nor `$x$` into maths."""
    return _PUNCTUATION.sub(r"\\\1", str(text))
