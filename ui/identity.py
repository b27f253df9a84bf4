"""Who is acting, and whether the app may serve them at all: the router's door.

`.streamlit/secrets.toml` decides between three ways of serving Lumen:

- login (`[auth]`, complete): every page needs a sign-in, and `[lumen.roles]` (e-mail = "viewer" |
  "annotator" | "admin") gives each reader a role; an address it does not name is a viewer;
- neither `[auth]` nor `[lumen.roles]`: one person on their own machine, who may do everything under a
  name they type; the sidebar says so;
- roles, or an `[auth]` section, without a login that works: no page is served, and the message says
  what to configure, since any fallback would let anyone act as anyone.

What each role may do is core.roles'.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import streamlit as st

from core.roles import ANONYMOUS, TRUSTED_ROLE, Identity, assigned_role, signed_in

READER_KEY = "reader_name"
AUTH_KEYS = ("redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url")  # st.login's
AUTHLIB_FLOOR = (1, 3, 2)  # the oldest Authlib st.login works with
LOCAL_ADDRESSES = ("127.0.0.1", "localhost", "::1")


def _secrets() -> Mapping[str, Any]:
    """The app's secrets; none when no secrets file exists (one person on their own machine). A file
    that exists but cannot be read raises: taking it for "no secrets" would let everyone be admin."""
    try:
        return st.secrets.to_dict()
    except FileNotFoundError:
        if any(Path(path).exists() for path in st.get_option("secrets.files")):
            raise
        return {}


def _role_table(secrets: Mapping[str, Any]) -> Mapping[str, str] | None:
    return secrets.get("lumen", {}).get("roles")


def authlib_version() -> str | None:
    """The installed Authlib's version, or None when it is missing."""
    try:
        return metadata.version("authlib")
    except metadata.PackageNotFoundError:
        return None


def refusal(secrets: Mapping[str, Any], authlib: str | None) -> str | None:
    """Why no page may be served with these secrets (what to configure), or None when the app may serve."""
    auth, table = secrets.get("auth"), _role_table(secrets)
    if auth is None and table is None:
        return None
    fix = "(README: Serving Lumen to a lab)"
    if auth is None:
        return ("Lumen serves no page: `[lumen.roles]` is set in `.streamlit/secrets.toml`, but login is not "
                "configured, so no reader's role could be checked. Add an `[auth]` section with "
                f"{', '.join(AUTH_KEYS)} {fix}, or remove `[lumen.roles]` to use Lumen alone on this machine.")
    missing = [key for key in AUTH_KEYS if not auth.get(key)]
    if missing:
        return (f"Lumen serves no page: the `[auth]` section of `.streamlit/secrets.toml` lacks "
                f"{', '.join(missing)}, so nobody can sign in. Add {'it' if len(missing) == 1 else 'them'} {fix}.")
    found = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", authlib or "")
    if found is None or tuple(int(part or 0) for part in found.groups()) < AUTHLIB_FLOOR:
        return (f"Lumen serves no page: login needs Authlib {'.'.join(map(str, AUTHLIB_FLOOR))} or later "
                f"({'not installed' if authlib is None else f'{authlib} is installed'}). "
                "Install the requirements: `pip install -r requirements.txt`.")
    return None


def serving_refusal() -> str | None:
    """`refusal` for this app's secrets and its installed Authlib."""
    try:
        secrets = _secrets()
    except FileNotFoundError as exc:  # Streamlit's error for a secrets file it cannot parse
        return f"Lumen serves no page: its secrets cannot be read. {exc}"
    return refusal(secrets, authlib_version())


def login_configured() -> bool:
    """`[auth]` is set; the router has refused to serve unless it is complete."""
    return "auth" in _secrets()


def must_sign_in() -> bool:
    """Login is configured and this visitor has not signed in."""
    return login_configured() and not st.user.get("is_logged_in")


def sign_in_screen() -> None:
    """All an unauthenticated visitor sees: no page, no dataset, no data."""
    st.title("Lumen")
    st.write("Sign in with your lab account to continue.")
    st.button("Sign in", type="primary", on_click=st.login)


def current_reader() -> Identity:
    """The acting reader (the router has already let them in); an empty name means they have not said
    who they are yet."""
    if login_configured():
        if not st.user.get("is_logged_in"):
            return ANONYMOUS
        email = str(st.user.get("email") or "")
        return signed_in(email, _role_table(_secrets()) or {}, verified=st.user.get("email_verified") is not False)
    return Identity(str(st.session_state.get(READER_KEY) or "").strip(), TRUSTED_ROLE)


def reader_sidebar() -> None:
    """Who the reader is, in the sidebar of every page: the signed-in address, its role and Sign out;
    without login, the typed name and a plain word that anyone who reaches the app may do everything."""
    if not login_configured():
        st.sidebar.text_input("Your name (recorded with every label)", key=READER_KEY, persist_state="session")
        address = st.get_option("server.address") or ""
        reach = ("Lumen listens on 127.0.0.1, so only this machine can reach it."
                 if address in LOCAL_ADDRESSES else
                 f"Lumen listens on {address or 'every network interface'}, so other machines can reach it: "
                 "set up login and roles (README: Serving Lumen to a lab).")
        st.sidebar.caption(f"No login is configured: anyone who reaches this address can do everything, under "
                           f"any name. {reach}")
        return
    me = current_reader()
    st.sidebar.text(f"Signed in as {me.name or '(no e-mail address)'}")  # an address is text, not Markdown
    st.sidebar.text(f"Role: {me.role}")
    if not me.name:
        st.sidebar.caption("The login provider gave no e-mail address, so you may only look.")
    elif st.user.get("email_verified") is False:
        st.sidebar.caption("The login provider has not verified this address, so you may only look.")
    elif assigned_role(me.name, _role_table(_secrets()) or {}) is None:
        st.sidebar.caption("The lab's role table does not name this address, so you may only look; "
                           "an admin can add it.")
    st.sidebar.button("Sign out", on_click=st.logout)
