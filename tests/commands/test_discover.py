"""`lanscope discover` on the lab: the summary, what lands in DuckDB, the registry, leases, refusals.

Runs in-process inside the lab's scanner namespace (the lab plugin moved pytest
there); DuckDB is a real file in tmp_path, read back read-only after each run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import duckdb
import pytest

from lanscope import output
from lanscope.cli import main
from lanscope.commands.discover import _ProbeTargetsOnce
from lanscope.config import Config
from lanscope.net.coverage import covered_cidrs
from lanscope.net.targets import parse_targets
from lanscope.runtime.embedded import EmbeddedNats
from schemas import Event
from tests.factories import host_seen
from tests.fakes.fixtures import ROUTER_PASSWORD, router  # noqa: F401
from tests.fakes.mikrotik import FakeRouterOS
from tests.lab import Lab
from tests.runtime.stages import eventually

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data" / "leases"
PORTS = "21,22,25,80,1883,3306,5432,6379"


@pytest.fixture(autouse=True)
def wide_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output.stdout, "width", 220)


def write_config(tmp_path: Path, lab: Lab, extra: dict[str, Any] | None = None) -> Path:
    """The lab's config with ``extra`` merged in (section by section)."""
    config: dict[str, Any] = {
        "data_dir": str(tmp_path / "var"),
        "scope": {"allow": [lab.SUBNET, lab.OFFLINK]},
        "dns": {"servers": [lab.DNS_IP]},
        "producers": {"ping_sweep": {"tcp_timeout_ms": 500},
                      "dhcp_leases": {"lease_files": [f"{DATA}/dnsmasq.leases"]}},
        "enrichers": {"port_probe": {"tcp": PORTS, "udp": "", "connect_timeout_ms": 500}},
    }

    def merge(into: dict[str, Any], more: dict[str, Any]) -> None:
        for key, value in more.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(config, extra or {})
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))      # JSON is YAML
    return path


NO_REGISTRY = {"sinks": {"registry": {"enabled": False}}}


def discover(config: Path, *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    code = main(["-c", str(config), "discover", *argv])
    captured = capsys.readouterr()
    data = json.loads(captured.out) if "--json" in argv and code == 0 else captured.out
    return code, data, captured.err


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def first_run(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One discover of the lab /24 and the off-link /24 (shared: it is the slow part)."""
    tmp = tmp_path_factory.mktemp("discover")
    config = write_config(tmp, lab, NO_REGISTRY)
    argv = ["-c", str(config), "discover", lab.LIVE_24, lab.OFFLINK, "--json"]
    capture = subprocess.run([sys.executable, "-m", "lanscope", *argv], cwd=ROOT, capture_output=True,
                             text=True, timeout=120, check=False)
    assert capture.returncode == 0, capture.stderr
    return config, json.loads(capture.stdout)


def test_summary_has_the_seed_keys_and_every_live_host(lab: Lab,
                                                       first_run: tuple[Path, dict[str, Any]]) -> None:
    _, summary = first_run
    assert summary["scan_from"] == lab.SCANNER_IP
    assert summary["range"] == f"{lab.LIVE_24} {lab.OFFLINK}"
    expected = lab.live_hosts(lab.LIVE_24) + lab.live_hosts(lab.OFFLINK)
    hosts = {h["ip"]: h for h in summary["hosts"]}
    assert {h.ip for h in expected} == set(hosts)
    assert summary["hosts_found"] == len(hosts)
    assert summary["arp_found"] == len(lab.live_hosts(lab.LIVE_24))
    assert summary["dhcp_leases"] > 0                   # the sample dnsmasq file
    assert lab.DOWN_IP not in hosts
    for host in expected:
        line = hosts[host.ip]
        assert line["mac"] == (host.mac if host.on_link else None)
        assert line["hostname"] == host.fqdn
        if host.on_link and host.vendor:
            assert line["vendor"] == host.vendor
    ssh = hosts[lab.host("ssh").ip]
    assert ssh["open_ports"] == ["tcp/22"] and ssh["services"][0].startswith("tcp/22 ssh OpenSSH ")
    assert ssh["os"]
    assert hosts[lab.host("nginx").ip]["services"][0].startswith("tcp/80 http nginx ")
    assert hosts[lab.host("off1").ip]["open_ports"] == ["tcp/80"]     # drops ICMP: TCP ping found it
    assert summary["changes"]["new"] >= len(expected)


def test_the_run_is_in_duckdb(lab: Lab, first_run: tuple[Path, dict[str, Any]]) -> None:
    config, _ = first_run
    db = config.parent / "var" / "lanscope.duckdb"
    ssh = lab.host("ssh")
    [(ip, ipv4, hostname, active)] = rows(
        db, f"SELECT ip, ipv4, hostname, active FROM hosts WHERE mac = '{ssh.mac}'")
    assert (ip, hostname, active) == (ssh.ip, ssh.fqdn, True) and ipv4 == 3323068426
    [(state, product, version)] = rows(db, "SELECT state, product, version FROM host_ports "
                                           f"WHERE host_key = '{ssh.mac}' AND port = 22")
    assert (state, product) == ("open", "OpenSSH") and version
    fields = {f for (f,) in rows(db, f"SELECT DISTINCT field FROM history WHERE host_key = '{ssh.mac}'")}
    assert {"open_ports", "services", "hostname", "active"} <= fields
    # Leases outside the targets are stored as facts but never probed.
    assert rows(db, "SELECT count(*) FROM hosts WHERE dhcp_status IS NOT NULL")[0][0] > 0
    probed = {ip for (ip,) in rows(db, "SELECT DISTINCT h.ip FROM host_ports p JOIN hosts h "
                                       "ON p.host_key = h.host_key")}
    assert all(ip.startswith(("198.18.0.", "198.19.0.")) for ip in probed)


def test_a_second_run_changes_nothing(lab: Lab, first_run: tuple[Path, dict[str, Any]],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = first_run
    code, summary, _ = discover(config, lab.LIVE_24, "--json", capsys=capsys)
    assert code == 0
    assert "new" not in summary["changes"]
    db = config.parent / "var" / "lanscope.duckdb"
    assert rows(db, "SELECT count(*) FROM hosts WHERE host_key = "
                    f"'{lab.host('ssh').mac}'")[0][0] == 1


def test_register_creates_registry_entries(lab: Lab, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, lab, NO_REGISTRY)
    ssh = lab.host("ssh")
    code, summary, _ = discover(config, ssh.ip, "--register", "--json", capsys=capsys)
    assert code == 0 and summary["hosts_found"] == 1
    db = tmp_path / "var" / "lanscope.duckdb"
    entries = rows(db, "SELECT ip, hostname, services FROM registry")
    assert (ssh.ip, ssh.fqdn) in {(ip, name) for ip, name, _ in entries}
    assert (tmp_path / "var" / "registry.json").is_file()


def test_registry_off_without_register(lab: Lab, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, lab, NO_REGISTRY)
    code, _, _ = discover(config, lab.host("ssh").ip, "--json", capsys=capsys)
    assert code == 0
    assert rows(tmp_path / "var" / "lanscope.duckdb", "SELECT count(*) FROM registry")[0][0] == 0


def test_gateway_leases_with_the_password_from_env(lab: Lab, router: FakeRouterOS,  # noqa: F811
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E6_ROUTER_PASS", ROUTER_PASSWORD)
    # --gateway naming the configured router keeps its port and scheme (a fixed bug in `leases`).
    config = write_config(tmp_path, lab, {"producers": {"dhcp_leases": {
        "gateway": {"host": "127.0.0.1", "port": router.port, "scheme": "http"}, "lease_files": []}}})
    code, summary, err = discover(config, lab.host("ssh").ip, "--gateway", "127.0.0.1",
                                  "--gateway-user", "admin", "--gateway-pass-env", "E6_ROUTER_PASS",
                                  "--json", capsys=capsys)
    assert code == 0, err
    assert summary["dhcp_leases"] == 3 and summary["hosts_found"] == 1
    db = tmp_path / "var" / "lanscope.duckdb"
    [(status, comment)] = rows(db, "SELECT dhcp_status, dhcp_comment FROM hosts "
                                   "WHERE mac = '00:11:32:aa:bb:cc'")
    assert (status, comment) == ("waiting", "NAS")
    assert ROUTER_PASSWORD not in err


def test_gateway_error_is_a_warning(lab: Lab, router: FakeRouterOS, tmp_path: Path,  # noqa: F811
                                    capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E6_ROUTER_PASS", "wrong-" + ROUTER_PASSWORD)
    config = write_config(tmp_path, lab, {"producers": {"dhcp_leases": {
        "gateway": {"host": "127.0.0.1", "port": router.port, "scheme": "http"}}}})
    code, summary, err = discover(config, lab.host("ssh").ip, "--gateway-pass-env", "E6_ROUTER_PASS",
                                  "--json", capsys=capsys)
    assert code == 0
    assert "gateway 127.0.0.1" in err and "HTTP 401" in err and "continuing without" in err
    assert summary["hosts_found"] == 1 and summary["dhcp_leases"] > 0   # the lease file still read
    assert ROUTER_PASSWORD not in err


@pytest.mark.parametrize(("argv", "message"), [
    (["198.18.0.300"], "300 is out of range"),
    (["203.0.113.0/24"], "--allow-public"),
    (["198.18.0.10", "--gateway", "127.0.0.1", "--gateway-pass-env", "E6_SURELY_UNSET"],
     "--gateway-pass-env: environment variable E6_SURELY_UNSET is not set"),
])
def test_refusals_before_any_packet(lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    argv: list[str], message: str) -> None:
    code, _, err = discover(write_config(tmp_path, lab), *argv, capsys=capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "var" / "lanscope.duckdb").exists()


@pytest.fixture
def pipeline_sink(natsd: EmbeddedNats, tmp_path: Path, lab: Lab) -> Iterator[Path]:
    """`lanscope run --stage sinks.host_state` holding the DuckDB file, as a user runs it."""
    natsd.start()
    config = write_config(tmp_path, lab, {"nats": {"url": natsd.url}})
    proc = subprocess.Popen([sys.executable, "-m", "lanscope", "-c", str(config), "run", "--stage",
                             "sinks.host_state"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        yield config
    finally:
        proc.terminate()
        proc.wait(30)


async def test_refused_while_the_pipeline_owns_the_store(lab: Lab, pipeline_sink: Path) -> None:
    db = pipeline_sink.parent / "var" / "lanscope.duckdb"

    def locked() -> bool:
        try:
            duckdb.connect(str(db), read_only=True).close()
        except duckdb.Error:
            return db.exists()
        return False

    await eventually(locked, timeout=30, what="the pipeline's host_state to hold the DuckDB lock",
                     interval=0.1)
    result = subprocess.run([sys.executable, "-m", "lanscope", "-c", str(pipeline_sink), "discover",
                             lab.host("ssh").ip], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "locked by another process" in result.stderr and "lanscope run" in result.stderr
    assert "discovers continuously" in result.stderr.replace("\n", " ")


def test_table_output(lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = discover(write_config(tmp_path, lab), lab.host("ssh").ip, capsys=capsys)
    assert code == 0
    assert f"1 hosts up in {lab.host('ssh').ip} (from {lab.SCANNER_IP})" in out
    assert "tcp/22 ssh OpenSSH" in out and " new) in " in out
    assert "proxmox" not in err.lower()          # unconfigured Proxmox: skipped silently


class _CountingProbe:
    def __init__(self) -> None:
        self.probed: list[str] = []

    async def handle(self, event: Event) -> list[Event]:
        self.probed.append(event.ip)   # type: ignore[attr-defined]
        return []


async def test_the_port_probe_gate_probes_each_target_once_and_nothing_else() -> None:
    inner, progress = _CountingProbe(), []
    gate = _ProbeTargetsOnce(inner, parse_targets(["198.18.0.0/24"]), 2,
                             lambda done, total: progress.append((done, total)))
    sightings = [host_seen("198.18.0.10", "02:00:00:00:00:10"),
                 host_seen("198.18.0.10", None, source="icmp"),          # the same host again
                 host_seen("192.168.64.113", "00:1a:96:49:84:de", source="dhcp"),   # a lease elsewhere
                 host_seen("198.18.0.11", None, source="neighbour", alive=False),   # a STALE entry
                 host_seen("198.18.0.12", "02:00:00:00:00:12", source="dhcp")]
    for event in sightings:
        await gate.handle(event)
    assert inner.probed == ["198.18.0.10", "198.18.0.12"]
    assert progress == [(1, 2), (2, 2)]



@pytest.mark.lab
async def test_the_discovery_sweep_covers_exactly_what_it_probed(lab: Lab) -> None:
    """ARP on the lab /24 (not the scanner's own .1, not .0/.255), ping off-link."""
    from lanscope.commands._discovery import discover_sweep

    hosts, covered = await discover_sweep(parse_targets([lab.LIVE_24, lab.OFFLINK]), Config())
    assert lab.host("ssh").ip in {h.ip for h in hosts}
    asked = [ip_address(f"198.18.0.{i}") for i in range(2, 255)]
    asked += [ip_address(f"198.19.0.{i}") for i in range(1, 255)]
    assert covered == covered_cidrs(asked)
