"""``namewire dashboard`` in headless Chromium, and ``namewire top --once``, on a real cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Processes, free_port, wait_port

pytestmark = pytest.mark.timeout(90)

SCREENSHOT = ROOT / "docs" / "dashboard.png"


@pytest.fixture
def cluster(procs: Processes) -> Iterator[tuple[str, Processes, dict[str, subprocess.Popen[str]]]]:
    """A name service, Adder and Relay (tests/apps/observed.py), and a load that calls both."""
    ns, _ = procs.nameservice()
    services = {name: procs.service("observed.py", name, ns) for name in ("Adder", "Relay")}
    procs.start(str(ROOT / "tests/observe/load.py"), ns)
    yield ns, procs, services


def chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.skipif(chromium() is None,
                    reason="Debian's chromium and chromium-driver are not installed "
                           "(.ci/apt-packages lists them)")
def test_the_dashboard_shows_services_rates_graph_and_errors_live(cluster, tmp_path: Path) -> None:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ns, procs, services = cluster
    port = free_port()
    dash = procs.start("-m", "namewire", "dashboard", "--nameservice", ns, "--listen",
                       f"tcp://127.0.0.1:{port}", "--interval", "0.5", "--log-level", "WARNING")
    wait_port(port, dash)
    browser, driver_path = chromium()  # type: ignore[misc]
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=driver_path,
                                      log_output=str(tmp_path / "chromedriver.log"))
    page = webdriver.Chrome(options=options, service=service)
    try:
        page.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(page, 30, poll_frequency=0.2)

        def shown() -> dict:
            # Read the page in one script: it re-renders on every update, so elements found one
            # call earlier may be gone.
            return page.execute_script("""
                const rows = {};
                for (const r of document.querySelectorAll("#services tbody tr")) {
                    const rate = r.querySelector('td[data-field="rate"]');
                    rows[r.dataset.service] = {text: r.innerText, rate: rate ? rate.innerText : "-"};
                }
                return {
                    rows,
                    edges: [...document.querySelectorAll("#graph line.edge")]
                        .map(e => [e.dataset.from, e.dataset.to]),
                    errors: document.getElementById("errors").innerText,
                    updates: +(document.body.dataset.updates || 0),
                    charts: document.querySelectorAll("#services polyline").length,
                };""")

        def rate(view: dict, name: str) -> float:
            text = view["rows"].get(name, {}).get("rate", "-")
            return float(text) if text not in ("-", "") else 0.0

        wait.until(lambda _: {"Adder", "Relay"} <= set(shown()["rows"])
                   and rate(shown(), "Adder") > 0)
        adder = shown()["rows"]["Adder"]["text"]
        assert "plus" in adder and "tcp://127.0.0.1:" in adder
        assert "µs" in adder or "ms" in adder  # p50 / p99
        # The call graph: Load -> Adder, Load -> Relay, and the nested Relay -> Adder.
        wait.until(lambda _: {("Load", "Adder"), ("Load", "Relay"), ("Relay", "Adder")}
                   <= {tuple(e) for e in shown()["edges"]})
        wait.until(lambda _: "bad input" in shown()["errors"])
        # Live charts have drawn a few points by now.
        wait.until(lambda _: shown()["updates"] >= 4 and shown()["charts"] >= 4)
        if os.environ.get("NAMEWIRE_SCREENSHOT"):
            page.save_screenshot(str(SCREENSHOT))

        # Stop a service: it leaves the page.
        services["Relay"].terminate()
        services["Relay"].wait(10)
        wait.until(lambda _: "Relay" not in shown()["rows"])
        assert "Adder" in shown()["rows"]
    finally:
        page.quit()


def adder_row(out: str) -> list[str] | None:
    """The cells of the first line of Adder's row in ``top --once`` output, when it has rates."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 8 and cells[1] == "Adder" and cells[5] not in ("-", "not answering"):
            return cells
    return None


def test_top_once_renders_the_cluster(cluster) -> None:
    ns, procs, _ = cluster
    env = {**os.environ, "COLUMNS": "180"}
    for _ in range(20):
        done = subprocess.run(
            [sys.executable, "-m", "namewire", "top", "--once", "--interval", "0.5",
             "--nameservice", ns], capture_output=True, text=True, timeout=30, cwd=ROOT, env=env)
        assert done.returncode == 0, done.stderr
        out = done.stdout
        adder = adder_row(out)
        if adder and "Relay" in out and "Load" in out and "bad input" in out and "%" in adder[6]:
            break
    else:
        raise AssertionError(f"top never showed the whole cluster:\n{out}")
    assert "namewire top: 2 services" in out
    assert adder[3] == "fail, plus, relay, traceparent"
    assert float(adder[5].replace(",", "")) > 0  # calls/s
    assert float(adder[6][:-1]) > 0  # Load's calls to fail now and then
    assert "ValueError: bad input" in out
    edges = {tuple(c.strip() for c in line.split("│")[1:4]) for line in out.splitlines()
             if line.count("│") == 6}
    assert {("Load", "Adder", "plus"), ("Load", "Relay", "relay"), ("Relay", "Adder", "plus")} \
        <= edges
