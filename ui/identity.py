"""Who is reading: Streamlit's OIDC login when configured, else a name typed in the sidebar.

Roles come from `.streamlit/secrets.toml` under `[lumen.roles]` (email = "viewer" | "annotator" |
"admin", default "annotator") when login is configured. Without login the app runs for one lab
on a trusted machine, and every reader may do everything. What each role may do is core.roles'.
"""
from __future__ import annotations

import streamlit as st

from core.roles import ANONYMOUS, TRUSTED_ROLE, Identity, signed_in

READER_KEY = "reader_name"


def login_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def current_reader() -> Identity:
    """The acting reader; an empty name means they have not said who they are yet."""
    if login_configured():
        if not st.user.is_logged_in:
            st.sidebar.button("Log in", on_click=st.login)
            return ANONYMOUS
        email = st.user.get("email") or st.user.get("name") or ""
        st.sidebar.text(f"Signed in as {email}")  # an address is text, not Markdown
        st.sidebar.button("Log out", on_click=st.logout)
        return signed_in(email, st.secrets.get("lumen", {}).get("roles", {}))
    name = st.sidebar.text_input("Your name (recorded with every label)", key=READER_KEY, persist_state="session")
    return Identity(name.strip(), TRUSTED_ROLE)
