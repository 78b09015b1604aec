"""A real headless Chromium (Debian's chromium + chromium-driver, driven by selenium): a page from
another origin loads /namewire.js from the gateway, calls PlusServer by name and receives a
message a service sends to its session (through the gateway, and by a plain send_msg to the
session's name); a page from an origin the gateway does not allow is told
so by code."""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Processes, free_port
from tests.web.test_js_client import start_gateway, wait_registered

pytestmark = pytest.mark.timeout(60)

PAGE = """<!doctype html>
<meta charset="utf-8"><title>namewire test page</title>
<pre id="out">loading</pre>
<script type="module">
const result = (window.namewireTest = {});
try {
  const { connect } = await import("GATEWAY_HTTP/namewire.js");
  const nw = await connect("GATEWAY_WS", { token: "s3cret" });
  result.name = nw.name;
  result.plus = await nw.call("PlusServer", "plus", 20, 22);
  const inbox = [];
  const arrived = (count) => new Promise((resolve) => {
    const check = () => (inbox.length >= count ? resolve() : setTimeout(check, 20));
    check();
  });
  nw.onMessage((msg, from) => inbox.push({ msg, from }));
  await nw.call("PlusServer", "notify", nw.name, "hello browser");  // send_to_browser
  await nw.call("PlusServer", "tell", nw.name, "by name");  // a plain send_msg to nw.name
  await arrived(2);
  result.pushed = inbox;
  result.providers = await nw.providers("plus");
  nw.close();
} catch (err) {
  result.error = { code: err.code, message: String(err.message) };
}
document.getElementById("out").textContent = JSON.stringify(result);
result.done = true;
</script>
"""


def chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("headless Chromium needs Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver; listed in .ci/apt-packages)")
    pytest.importorskip("selenium", reason="selenium (the dev extra) drives Chromium")
    return browser, driver


@contextlib.contextmanager
def page_server(directory: Path) -> Iterator[int]:
    """Serve ``directory`` over HTTP on loopback: the page's own origin, not the gateway's."""
    port = free_port()
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def headless(browser: str, driver_path: str) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def run_page(driver: Any, url: str) -> dict[str, Any]:
    driver.get(url)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        result = driver.execute_script("return window.namewireTest || null")
        if result and result.get("done"):
            return dict(result)
        time.sleep(0.1)
    raise AssertionError(f"the page did not finish: {driver.page_source[:2000]}")


def test_a_page_in_chromium_calls_by_name_and_receives_a_message(
    procs: Processes, tmp_path: Path
) -> None:
    browser, driver_path = chromium()
    ns, _ = procs.nameservice()
    procs.service("web_service.py", "PlusServer", ns)
    with page_server(tmp_path) as page_port:
        gw_port = free_port()
        start_gateway(procs, gw_port, ns, "--origin", f"http://127.0.0.1:{page_port}")
        wait_registered(ns, "PlusServer")
        (tmp_path / "index.html").write_text(
            PAGE.replace("GATEWAY_HTTP", f"http://127.0.0.1:{gw_port}")
                .replace("GATEWAY_WS", f"ws://127.0.0.1:{gw_port}/"))
        with headless(browser, driver_path) as driver:
            allowed = run_page(driver, f"http://127.0.0.1:{page_port}/index.html")
            # Same page, another origin (localhost is not 127.0.0.1 to a browser): refused.
            refused = run_page(driver, f"http://localhost:{page_port}/index.html")
    assert "error" not in allowed, allowed
    assert allowed["name"] == "gateway/1"
    assert allowed["plus"] == 42
    assert allowed["pushed"] == [{"msg": "hello browser", "from": "PlusServer"},
                                 {"msg": "by name", "from": "PlusServer"}]
    assert allowed["providers"] == ["PlusServer"]
    assert refused["error"]["code"] == "origin_not_allowed", refused
    assert "http://localhost:" in refused["error"]["message"]
