"""The dashboard in a real browser on the lab: `lanscope run` (every stage, and the dashboard it
serves by default) on the lab's hosts and servers, headless Chromium driven by Selenium.

In file order against one pipeline: the hosts page lists the lab's hosts; a host page shows
its services; "probe now" gets port_probe's answer; stopping a lab service shows the change
on an open page without a reload. Screenshots go to the directory printed at the end of the
run ("web screenshots: ..."). Waits poll with deadlines; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lanscope.config import NatsConfig
from lanscope.runtime.bus import Bus
from lanscope.runtime.embedded import EmbeddedNats
from tests.e2e.harness import Lanscope
from tests.e2e.test_pipeline import config_text
from tests.lab import Lab
from tests.natsd import reset_streams
from tests.web import browser

pytestmark = [pytest.mark.lab, pytest.mark.nats, pytest.mark.slow,
              pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))]


@dataclass
class Dashboard:
    lab: Lab
    url: str
    run: Lanscope
    shots: Path

    def shot(self, driver: Any, name: str) -> Path:
        path = self.shots / f"{name}.png"
        driver.save_screenshot(str(path))
        return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, run: Lanscope, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.process is not None and run.process.poll() is not None:
            raise AssertionError(f"lanscope run exited:\n{run.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the dashboard did not answer at {url}:\n{run.tail()}")


@pytest.fixture(scope="module")
def dashboard(lab: Lab, natsd: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory,
              web_screenshots: Path) -> Iterator[Dashboard]:
    url = natsd.start()
    tmp = tmp_path_factory.mktemp("web-lab")
    port = _free_port()
    config = tmp / "config.yaml"
    config.write_text(config_text(lab, tmp / "var", url) + f"web:\n  port: {port}\n")

    async def clean() -> None:
        async with await Bus.connect(NatsConfig(url=url), name="lanscope-web-reset") as bus:
            await reset_streams(bus)
    asyncio.run(clean())
    run = Lanscope(config, (), tmp / "run.log")      # every stage: `lanscope run` serves the dashboard
    run.start()
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base + "/static/app.css", run)
        yield Dashboard(lab, base, run, web_screenshots)
    finally:
        run.stop()


@pytest.fixture(scope="module")
def driver(dashboard: Dashboard) -> Iterator[Any]:
    with browser.chromium(1440, 1000) as chrome:
        yield chrome


def until(driver: Any, condition: Callable[[Any], Any], timeout: float, what: str,
          dashboard: Dashboard, *, reload: str | None = None, every: float = 2.0) -> Any:
    """Poll ``condition(driver)`` (reloading ``reload`` every ``every`` s) until truthy."""
    deadline = time.monotonic() + timeout
    loaded = 0.0
    while True:
        if reload is not None and time.monotonic() - loaded >= every:
            driver.get(dashboard.url + reload)
            loaded = time.monotonic()
        try:
            found = condition(driver)
        except Exception:          # the page is between two states
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            dashboard.shot(driver, "timeout")
            raise AssertionError(f"timed out waiting for {what}; lanscope run:\n{dashboard.run.tail()}")
        time.sleep(0.1)


def test_the_hosts_page_lists_the_labs_hosts(dashboard: Dashboard, driver: Any) -> None:
    lab = dashboard.lab
    expected = {h.ip for h in lab.live_hosts(lab.LIVE_24) + lab.live_hosts(lab.OFFLINK)}

    def listed(d: Any) -> set[str] | None:
        ips = {cell.text for cell in d.find_elements("css selector", "table.hosts td.mono a")}
        return ips if expected <= ips else None

    ips = until(driver, listed, 60, "every live lab host on the hosts page", dashboard,
                reload="/hosts?size=100", every=3)
    assert lab.DOWN_IP not in ips
    ssh = lab.host("ssh")
    row = driver.find_element("css selector", f'tr[data-host-key="{ssh.mac}"]')
    assert ssh.fqdn in row.text and ssh.mac in row.text
    dashboard.shot(driver, "hosts")
    # Filters run on the server: typing in the search box narrows the table in place.
    box = driver.find_element("css selector", "form.filters input[name=q]")
    box.send_keys(ssh.fqdn)
    until(driver, lambda d: len(d.find_elements("css selector", "table.hosts tbody tr[data-host-key]")) == 1,
          10, "the table filtered to the ssh host", dashboard)
    assert f"q={ssh.fqdn}" in driver.current_url


def test_a_host_page_shows_its_services(dashboard: Dashboard, driver: Any) -> None:
    nginx = dashboard.lab.host("nginx")

    def services(d: Any) -> str | None:
        table = d.find_elements("css selector", "table.ports")
        return table[0].text if table and "nginx" in table[0].text else None

    ports = until(driver, services, 45, "nginx's port 80 on its host page", dashboard,
                  reload=f"/hosts/{nginx.mac}", every=3)
    assert "tcp/80" in ports and "http" in ports
    assert dashboard.lab.package_version("nginx").split("-")[0].split(":")[-1] in ports
    assert nginx.ip in driver.find_element("css selector", "h1").text
    dashboard.shot(driver, "host")


def test_probe_now_gets_port_probes_answer(dashboard: Dashboard, driver: Any) -> None:
    ssh = dashboard.lab.host("ssh")
    driver.get(f"{dashboard.url}/hosts/{ssh.mac}")
    driver.find_element("css selector", ".probe button").click()
    until(driver, lambda d: "probed at" in d.find_element("id", "probe-box").text, 45,
          "port_probe's answer to probe now", dashboard)
    assert "open port" in driver.find_element("id", "probe-box").text


def _port_row(d: Any, name: str) -> str:
    """The text of the ports table's row for ``name`` ("tcp/80"), or ""."""
    for row in d.find_elements("css selector", "table.ports tr"):
        cells = row.find_elements("css selector", "td")
        if cells and cells[0].text.strip() == name:
            return str(row.text)
    return ""


def test_a_stopped_service_shows_on_an_open_page_without_reload(dashboard: Dashboard, driver: Any) -> None:
    lab = dashboard.lab
    nginx = lab.host("nginx")
    driver.get(f"{dashboard.url}/hosts/{nginx.mac}")
    until(driver, lambda d: d.find_element("id", "live-state").text == "live", 15,
          "the page's live stream", dashboard)
    assert " open" in _port_row(driver, "tcp/80")
    driver.execute_script("window.lanscopeMarker = 42;")      # gone if the page reloads
    lab.stop_service("nginx")
    try:
        def closed(d: Any) -> Any:
            # Inserted by the page's live stream ("fresh"), not rendered with the page: the
            # port going away ("open_ports tcp/80 -> none"), not its discovery ("none -> tcp/80").
            return next((li for li in d.find_elements("css selector", "#feed li.ev-changed.fresh")
                         if "open_ports tcp/80 →" in li.text), None)

        item = until(driver, closed, 60, "nginx's port 80 closing in the page's live feed", dashboard)
        until(driver, lambda d: "closed" in _port_row(d, "tcp/80") or not _port_row(d, "tcp/80"), 15,
              "the ports table updated in place", dashboard)
        assert driver.execute_script("return window.lanscopeMarker;") == 42, "the page was reloaded"
        assert nginx.ip in item.text
        dashboard.shot(driver, "host-live-change")
        driver.get(dashboard.url + "/")
        until(driver, lambda d: "open_ports tcp/80 →" in d.find_element("id", "feed").text, 15,
              "the change among the overview's latest events", dashboard)
        until(driver, lambda d: "lag" in d.find_element("css selector", ".panels").text, 15,
              "pipeline health on the overview", dashboard)
        driver.set_window_size(1440, 1480)                     # the whole overview (README picture)
        dashboard.shot(driver, "overview")
        driver.set_window_size(1440, 1000)
        driver.get(dashboard.url + "/live?kind=changed&field=open_ports")
        dashboard.shot(driver, "live")
    finally:
        lab.start_service("nginx")
