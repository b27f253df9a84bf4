"""The router's door (ui.identity through app.py): roles without a working login serve nothing, login
configured means no page before sign-in, and each reader sees what their role allows."""
from __future__ import annotations

import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT
from ui.identity import AUTH_KEYS, refusal

AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "a long random secret",
        "client_id": "lumen", "client_secret": "not so secret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}
ROLES = {"boss@lab.org": "admin", "vera@lab.org": "viewer"}
AUTHLIB = "1.9.10"


@pytest.mark.parametrize("secrets, authlib, expected", [
    ({}, None, None),  # one person on their own machine
    ({"lumen": {"other": 1}}, None, None),
    ({"auth": AUTH}, AUTHLIB, None),
    ({"auth": AUTH, "lumen": {"roles": ROLES}}, AUTHLIB, None),
    ({"lumen": {"roles": ROLES}}, AUTHLIB, ("login is not configured, so no reader's role could be checked. "
                                           f"Add an `[auth]` section with {', '.join(AUTH_KEYS)}")),
    ({"lumen": {"roles": {}}}, AUTHLIB, "login is not configured"),
    ({"auth": {}, "lumen": {"roles": ROLES}}, AUTHLIB, f"lacks {', '.join(AUTH_KEYS)}, so nobody can sign in"),
    ({"auth": {**AUTH, "cookie_secret": ""}}, AUTHLIB, "lacks cookie_secret, so nobody can sign in. Add it"),
    ({"auth": {k: v for k, v in AUTH.items() if k not in ("client_id", "redirect_uri")}}, AUTHLIB,
     "lacks redirect_uri, client_id, so nobody can sign in. Add them"),
    ({"auth": AUTH}, None, "login needs Authlib 1.3.2 or later (not installed)"),
    ({"auth": AUTH}, "1.3.1", "login needs Authlib 1.3.2 or later (1.3.1 is installed)"),
    ({"auth": AUTH}, "1.3", "(1.3 is installed)"),
    ({"auth": AUTH}, "1.3.2", None),
    ({"auth": AUTH}, "1.10.0rc1", None),
])
def test_what_to_configure_before_anything_is_served(secrets, authlib, expected):
    message = refusal(secrets, authlib)
    if expected is None:
        assert message is None
    else:
        assert message is not None and message.startswith("Lumen serves no page: ") and expected in message


def app(secrets: dict, user: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.secrets = secrets
    at.user = user or {}
    return at


def shows_no_page(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.sidebar.selectbox and not at.sidebar.text_input  # no dataset picker, no reader name
    assert not at.expander and not at.dataframe and not at.tabs
    assert "Add dataset" not in [b.label for b in at.button]


@pytest.mark.parametrize("path", [None, "pages/train.py", "pages/review.py"])
def test_roles_without_login_serve_no_page_but_say_what_to_configure(path):
    at = app({"lumen": {"roles": ROLES}})
    at.run()
    if path:
        at.switch_page(path).run()
    shows_no_page(at)
    assert [e.value for e in at.error] == [refusal({"lumen": {"roles": ROLES}}, AUTHLIB)]
    assert not at.button and not at.title


@pytest.mark.parametrize("path", [None, "pages/dataset.py", "pages/train.py"])
def test_with_login_a_visitor_who_has_not_signed_in_sees_only_the_sign_in_screen(path):
    at = app({"auth": AUTH, "lumen": {"roles": ROLES}}, {"is_logged_in": False})
    at.run()
    if path:
        at.switch_page(path).run()
    shows_no_page(at)
    assert [t.value for t in at.title] == ["Lumen"]
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.error and not at.sidebar.button


@pytest.mark.parametrize("email, role, may_add, why", [
    ("boss@lab.org", "admin", True, None),
    ("vera@lab.org", "viewer", False, None),
    ("stranger@elsewhere.org", "viewer", False, "The lab's role table does not name this address"),
])
def test_a_signed_in_reader_sees_who_they_are_and_what_their_role_allows(email, role, may_add, why):
    at = app({"auth": AUTH, "lumen": {"roles": ROLES}}, {"is_logged_in": True, "email": email})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.sidebar.text] == [f"Signed in as {email}", f"Role: {role}"]
    assert "Sign out" in [b.label for b in at.sidebar.button]
    captions = [c.value for c in at.sidebar.caption]
    assert any(why in c for c in captions) if why else not captions
    assert ("Add a dataset" in [e.label for e in at.expander]) == may_add
    assert any("needs the admin role" in c.value for c in at.caption) != may_add
    at.switch_page("pages/padding.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert ("Export a preprocessed copy" in [e.label for e in at.expander]) == may_add


def test_an_address_the_provider_has_not_verified_only_looks():
    at = app({"auth": AUTH, "lumen": {"roles": ROLES}},
             {"is_logged_in": True, "email": "boss@lab.org", "email_verified": False})
    at.run()
    assert [t.value for t in at.sidebar.text] == ["Signed in as boss@lab.org", "Role: viewer"]
    assert any("has not verified this address" in c.value for c in at.sidebar.caption)
    assert "Add a dataset" not in [e.label for e in at.expander]


def test_alone_on_ones_machine_the_sidebar_says_anyone_who_reaches_it_may_do_everything():
    at = app({})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.text_input(key="reader_name").label == "Your name (recorded with every label)"
    assert "Add a dataset" in [e.label for e in at.expander]
    warning = [c.value for c in at.sidebar.caption if "No login is configured" in c.value]
    assert len(warning) == 1 and "anyone who reaches this address can do everything" in warning[0]


def test_a_secrets_file_that_cannot_be_read_serves_no_page_rather_than_everyone_as_admin(tmp_path):
    broken = tmp_path / "secrets.toml"
    broken.write_text('[lumen.roles]\n"boss@lab.org" = admin\n')  # the role is not quoted: not TOML
    at = app({})
    before = config.get_option("secrets.files")
    config.set_option("secrets.files", [str(broken)])
    try:
        at.run()
    finally:
        config.set_option("secrets.files", before)
    shows_no_page(at)
    assert len(at.error) == 1
    assert at.error[0].value.startswith("Lumen serves no page: its secrets cannot be read.")
    assert str(broken) in at.error[0].value
