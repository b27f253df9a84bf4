"""Sign in through a real OpenID Connect provider on 127.0.0.1, as a viewer and as an admin, and see
what each may do; before signing in, no page at all.

The provider is oidc-provider-mock (a Flask app, served here by werkzeug on a thread): its authorization
page lets one type the subject to sign in as, and it gives that subject as the e-mail claim. The app is
the real `streamlit run app.py`, with a secrets file (outside the repository) naming that provider in
`[auth]` and a `[lumen.roles]` table.
"""
from __future__ import annotations

import secrets
import threading

import oidc_provider_mock
import pytest
import werkzeug.serving

from tests.browser.server import NAV_LINK, free_port, nav_pages, open_page, start_app, stop_app, wait_idle

pytestmark = pytest.mark.browser

ROLES = {"boss@lab.org": "admin", "vera@lab.org": "viewer"}
TIMEOUT_MS = 60_000
SIDEBAR = '[data-testid="stSidebar"]'


@pytest.fixture(scope="module")
def provider():
    """The OpenID Connect provider's base URL, listening on 127.0.0.1 for this module."""
    server = werkzeug.serving.make_server("127.0.0.1", 0, oidc_provider_mock.app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def login_app(provider, tmp_path_factory):
    """The app's base URL, started with `--secrets.files` pointing at login through `provider` and roles."""
    home = tmp_path_factory.mktemp("lumen-home-login")
    port = free_port()
    secrets_file = home / "secrets.toml"
    roles = "\n".join(f'"{email}" = "{role}"' for email, role in ROLES.items())
    secrets_file.write_text(f"""[auth]
redirect_uri = "http://127.0.0.1:{port}/oauth2callback"
cookie_secret = "{secrets.token_hex(32)}"
client_id = "lumen"
client_secret = "{secrets.token_hex(16)}"
server_metadata_url = "{provider}/.well-known/openid-configuration"

[lumen.roles]
{roles}
""")
    process, base_url = start_app(port, home, ["--secrets.files", str(secrets_file)])
    yield base_url
    stop_app(process)


def _sign_in_screen_only(page) -> None:
    """The title and one Sign in button; no page, no navigation, no dataset picker."""
    wait_idle(page, timeout_ms=TIMEOUT_MS)
    assert page.locator("h1").all_inner_texts() == ["Lumen"]
    assert page.get_by_role("button").filter(has_text="Sign in").count() == 1
    assert page.locator('[data-testid="stButton"]').count() == 1
    assert page.locator(NAV_LINK).count() == 0
    assert page.locator('[data-testid="stSelectbox"], [data-testid="stExpander"], [data-testid="stImage"]').count() == 0


def _sign_in(page, base_url: str, email: str) -> None:
    page.goto(base_url)
    _sign_in_screen_only(page)
    page.get_by_role("button", name="Sign in").click()
    subject = page.locator('input[name="sub"]')  # the provider's authorization page
    subject.wait_for(timeout=TIMEOUT_MS)
    subject.fill(email)
    page.get_by_role("button", name="Authorize").click()
    page.locator(SIDEBAR).get_by_text(f"Signed in as {email}", exact=True).wait_for(timeout=TIMEOUT_MS)
    wait_idle(page, timeout_ms=TIMEOUT_MS)


def test_before_signing_in_every_address_shows_only_the_sign_in_screen(page, login_app):
    for path in ("", "/train", "/review", "/dataset?dataset=Demo%3A+blood+cells+%28BCCD+crops%29"):
        page.goto(f"{login_app}{path}")
        _sign_in_screen_only(page)


@pytest.mark.parametrize("email", list(ROLES))
def test_a_viewer_only_looks_and_an_admin_may_act(page, login_app, email):
    role = ROLES[email]
    admin = role == "admin"
    _sign_in(page, login_app, email)
    sidebar = page.locator(SIDEBAR)
    assert sidebar.get_by_text(f"Role: {role}", exact=True).count() == 1
    assert sidebar.get_by_role("button", name="Sign out").count() == 1

    assert (page.get_by_text("Add a dataset", exact=True).count() == 1) == admin  # the Dataset page
    assert (page.get_by_text("Adding or removing a dataset needs the admin role.").count() == 1) != admin

    pages = dict(nav_pages(page))
    open_page(page, pages["train"])
    if admin:
        new_run = page.locator('[data-testid="stExpander"]').filter(has_text="New run")
        if not page.get_by_role("button", name="Launch run").is_visible():
            new_run.locator("summary").click()
        launch = page.get_by_role("button", name="Launch run")
        launch.wait_for(timeout=TIMEOUT_MS)
        assert launch.is_enabled()
    else:
        assert page.get_by_role("button", name="Launch run").count() == 0
        assert page.get_by_text("Launching, cancelling and deleting runs needs the admin role").count() == 1

    open_page(page, pages["review"])
    label_buttons = page.locator(".st-key-rv_label_uncertain button, .st-key-rv_label_exclude button")
    label_buttons.first.wait_for(timeout=TIMEOUT_MS)
    assert label_buttons.count() == 2
    assert [label_buttons.nth(i).is_enabled() for i in range(2)] == [admin, admin]

    open_page(page, pages["threshold"])
    page.get_by_text("Save and export", exact=True).wait_for(timeout=TIMEOUT_MS)
    assert (page.get_by_role("button", name="Save this operating point with the run").count() == 1) == admin
    assert (page.get_by_text("Saving the operating point needs the admin role").count() == 1) != admin


def test_sign_out_closes_the_door_again(page, login_app):
    _sign_in(page, login_app, "boss@lab.org")
    page.locator(SIDEBAR).get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="End session").click(timeout=TIMEOUT_MS)  # the provider's own sign-out
    page.get_by_role("button", name="Sign in").wait_for(timeout=TIMEOUT_MS)
    _sign_in_screen_only(page)
    page.goto(f"{login_app}/train")  # the session cookie is gone, not just this tab's state
    _sign_in_screen_only(page)
