"""Keep every page behind app.py's router, even on a server's first deep link.

Streamlit treats a `pages/` folder beside the entry script as a legacy multipage app until
`st.navigation` has run once in the process: the first visit to /padding (and every AppTest run
after `switch_page`) would run that page alone, without the shared sidebar. A page that finds
itself run that way switches the process to `st.navigation` routing and runs app.py in its
place, in the same script run, so no widget event is lost.
"""
from __future__ import annotations

import runpy
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

APP = Path(__file__).resolve().parent.parent / "app.py"


def ensure_router() -> None:
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        runpy.run_path(str(APP), run_name="__main__")
        st.stop()
