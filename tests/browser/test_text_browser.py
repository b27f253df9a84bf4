"""User text shows as text in a real browser: no fetched image, no link, no formatting."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.browser.server import MAIN, free_port, start_app, stop_app, wait_idle
from ui.text import WORD_JOINER

pytestmark = pytest.mark.browser


class _Pixels(BaseHTTPRequestHandler):
    fetched: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        _Pixels.fetched.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_hostile_names_render_as_their_own_text(page, tmp_path, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Pixels)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("LUMEN_PROBE_URL", f"http://127.0.0.1:{server.server_port}")
    process, url = start_app(free_port(), tmp_path, script="tests/browser/probes/markdown_probe.py")
    try:
        page.goto(url)
        wait_idle(page)
        # the control's request is the sign that the page's images have been asked for
        page.wait_for_function("() => [...document.images].some(i => i.src.endsWith('/raw.png'))", timeout=30_000)
        for _ in range(100):
            if "/raw.png" in _Pixels.fetched:
                break
            page.wait_for_timeout(100)
        main = page.locator(MAIN)
        links = main.locator('a[href="http://example.invalid/"]').count()
        images = main.locator("img").count()
        text = main.inner_text().replace(WORD_JOINER, "")  # md keeps bare addresses from becoming links
    finally:
        stop_app(process)
        server.shutdown()
    assert "/raw.png" in _Pixels.fetched  # the unescaped control line did fetch: the probe works
    assert "/pixel.png" not in _Pixels.fetched and images == 1 and links == 0
    hostile = ("![px](http://127.0.0.1", "[click me](http://example.invalid/)", "**bold** :red[alarm] $x^2$ <b>b</b>")
    for shown in hostile:
        assert text.count(shown) == 4, (shown, text)  # markdown, caption, warning and button label
