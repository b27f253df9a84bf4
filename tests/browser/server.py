"""Start the real Lumen app and drive it in Debian's Chromium; shared by the browser tests and
scripts/screenshots.py."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1000}
STARTUP_TIMEOUT_S = 90

MAIN = '[data-testid="stMain"]'
NAV_LINK = '[data-testid="stSidebarNavLink"]'
NAV_MORE = '[data-testid="stSidebarNavViewButton"]'
# Idle: the script has finished, nothing is running or stale, and every image has loaded.
IDLE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const main = document.querySelector('[data-testid="stMain"]');
  return !!app && !!main && main.getClientRects().length > 0
    && ['notRunning', 'compilationError'].includes(app.dataset.testScriptState)
    && !document.querySelector('[data-testid="stStatusWidget"]')
    && !document.querySelector('[data-stale="true"]')
    && [...document.images].every(img => img.complete);
}"""


CHROMIUM_MISSING = f"{CHROMIUM} is missing; install it with: apt-get install -y chromium"


def require_chromium() -> None:
    """Fail loudly (never skip) when Debian's Chromium is missing: CI installs it."""
    if not CHROMIUM.exists():
        raise RuntimeError(CHROMIUM_MISSING)


def launch_browser(playwright):
    """Debian's Chromium, headless; Playwright's own browser download is never used."""
    require_chromium()
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(port: int, lumen_home: Path, args: Sequence[str] = (),
              script: str = "app.py") -> tuple[subprocess.Popen, str]:
    """Run `streamlit run app.py` (or another script of the repository, with more command-line
    `args`, e.g. a secrets file) in its own process group and wait until it answers."""
    lumen_home = Path(lumen_home)
    lumen_home.mkdir(parents=True, exist_ok=True)
    log_path = lumen_home / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", script,
           "--server.port", str(port), "--server.address", "127.0.0.1", *args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env={**os.environ, "LUMEN_HOME": str(lumen_home), "PYTHONPATH": str(REPO_ROOT)},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, base_url, log_path)
    except BaseException:
        stop_app(process)
        raise
    return process, base_url


@contextmanager
def running_app(lumen_home: Path) -> Iterator[str]:
    """The app on a free port with its own workspace, for the length of a `with`: its base URL."""
    process, base_url = start_app(free_port(), lumen_home)
    try:
        yield base_url
    finally:
        stop_app(process)


def _wait_healthy(process: subprocess.Popen, base_url: str, log_path: Path) -> None:
    """Poll /_stcore/health until it says ok; fail with the log tail if the server dies or stalls."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}:\n{_tail(log_path)}")
        if _health(base_url) == "ok":
            return
        time.sleep(0.25)
    raise RuntimeError(f"streamlit not healthy after {STARTUP_TIMEOUT_S} s:\n{_tail(log_path)}")


def _health(base_url: str) -> str:
    try:
        with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as response:
            return response.read().decode().strip()
    except OSError:
        return ""


def _tail(log_path: Path, lines: int = 40) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def stop_app(process: subprocess.Popen) -> None:
    """Terminate the app's whole process group, killing it if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_idle(page, timeout_ms: int = 60_000, settle_ms: int = 500) -> None:
    """Wait until the script run is over and the page has stayed idle for `settle_ms`."""
    deadline = time.monotonic() + timeout_ms / 1000
    page.locator(MAIN).wait_for(state="visible", timeout=timeout_ms)
    while True:
        remaining_ms = max(1, int((deadline - time.monotonic()) * 1000))
        page.wait_for_function(IDLE_JS, timeout=remaining_ms)
        page.wait_for_timeout(settle_ms)
        if page.evaluate(IDLE_JS):
            return


def choose_option(page, box, option: str, exact: bool = True, attempts: int = 5,
                  idle_ms: int = 60_000) -> None:
    """Open the select box `box` (a locator) and click `option`. A rerun that lands between the
    two (a page's polling fragment, a finished background job) re-renders the box and closes its
    list, so the list is reopened until the option shows, a few times at most."""
    target = page.get_by_role("option", name=option, exact=exact)
    for attempt in range(attempts):
        box.click()
        try:
            target.click(timeout=10_000)
            break
        except PlaywrightTimeoutError:
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")
            wait_idle(page, timeout_ms=idle_ms)
    wait_idle(page, timeout_ms=idle_ms)


def nav_pages(page) -> list[tuple[str, str]]:
    """(name, href) of every page in the sidebar navigation, in sidebar order."""
    _expand_nav(page)
    links = page.locator(NAV_LINK)
    links.first.wait_for(state="visible")
    return [(_slug(link.locator("span[label]").get_attribute("label")), link.get_attribute("href"))
            for link in links.all()]


def open_page(page, href: str) -> None:
    """Click the navigation link to `href` and wait until its page has finished running."""
    _expand_nav(page)
    page.locator(f'{NAV_LINK}[href="{href}"]').click()
    page.locator(f'{NAV_LINK}[href="{href}"][aria-current="page"]').wait_for()
    wait_idle(page)


def _expand_nav(page) -> None:
    """Show every link when the sidebar folds long page lists behind "View more"."""
    more = page.locator(NAV_MORE)
    if more.count() and "more" in more.inner_text().lower():
        more.click()


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "page"


def screenshot(page, path: Path) -> None:
    """A 1400-wide screenshot of the whole page; Streamlit scrolls inside stMain, so the
    viewport grows to the content's height for the shot."""
    height = page.locator(MAIN).evaluate("el => el.scrollHeight")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], height)})
    wait_idle(page, settle_ms=300)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path, full_page=True)
    page.set_viewport_size(VIEWPORT)
