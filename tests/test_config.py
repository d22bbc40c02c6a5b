"""config.yaml loading: the shipped file stays valid, every problem names its key, all at once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import yaml

from lanscope.config import Config, ConfigError, Enrichers, Producers, Secret, Sinks, expand, load, parse
from lanscope.config_moved import MOVED
from lanscope.runtime.topology import STAGES, Kind

ROOT = Path(__file__).resolve().parents[1]
OLD_LAYOUT = Path(__file__).parent / "data" / "config.old-layout.yaml"   # before one section per stage


def test_shipped_config_is_valid_and_matches_the_defaults() -> None:
    shipped = load(ROOT / "config.yaml", env={})
    assert shipped == parse({}, env={}) == Config()


def test_lab_config_is_valid() -> None:
    config = load(ROOT / "tests" / "lab" / "lanscope.yaml", env={})
    assert config.enrichers.port_probe.reprobe_secs == 600 and config.dns.servers == ["198.18.0.53"]


def test_topology_and_config_sections_name_the_same_stages() -> None:
    sections = {Kind.PRODUCER: Producers, Kind.ENRICHER: Enrichers, Kind.SINK: Sinks}
    assert [f.name for f in msgspec.structs.fields(Config)][-3:] == [k.value for k in sections]
    for kind, section in sections.items():
        fields = {f.name: f.type for f in msgspec.structs.fields(section)}
        assert fields == {s.name: s.config for s in STAGES.values() if s.kind is kind}, kind


@pytest.mark.parametrize(("raw", "message"), [
    ({"natz": {}}, r"natz: unknown key; did you mean nats\?"),
    ({"web": {"prot": 8080}}, r"web\.prot: unknown key; did you mean port\?"),
    ({"web": {"address": "0.0.0.0"}}, r"web\.address: 0\.0\.0\.0 is not a loopback address.*web\.token"),
    ({"nats": {"urll": "x"}}, r"nats\.urll: unknown key; did you mean url\?"),
    ({"proxmox": {"tls": {"verfy": True}}}, r"proxmox\.tls\.verfy: unknown key; did you mean verify\?"),
    ({"enrichers": {"port_probe": {"tcp": 22}}}, r"enrichers\.port_probe\.tcp: Expected `str`, got `int`"),
    ({"enrichers": {"port_probe": {"hosts": 0}}}, r"enrichers\.port_probe\.hosts: Expected `int` >= 1"),
    ({"nats": {"replicas": 2}}, r"nats\.replicas: must be 1, 3 or 5"),
    ({"sinks": {"registry": {"mode": "bogus"}}}, r"sinks\.registry\.mode: Invalid enum value 'bogus'"),
    ({"targets": "10.0.0.1"}, r"targets: Expected `array`, got `str`"),
    ({"producers": {"arp_sweep": {"interval_secs": -1}}},
     r"producers\.arp_sweep\.interval_secs: Expected `float` > 0"),
    ({"producers": {"port_probe": {}}},
     r"producers\.port_probe: unknown key; the port_probe stage's section is enrichers\.port_probe"),
    ({"port_probe": {}}, r"port_probe: unknown key; the port_probe stage's section is enrichers\.port_probe"),
    ({"producers": []}, r"producers: Expected `object`, got `array`"),
    ([1, 2], r"top level must be a mapping"),
])
def test_errors_name_the_key(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(raw, env={})


@pytest.mark.parametrize(("targets", "message"), [
    (["198.18.0.300/24"], r"targets\[0\]: '198\.18\.0\.300/24': octet 4: 300 is out of range"),
    (["198.18.0.0/24", "10.0.0"], r"targets\[1\]: '10\.0\.0': an IPv4 address needs 4 octets"),
    (["10.0.0.0/8"], r"targets: 16777216 addresses is more than scope\.max_addresses \(65536\)"),
])
def test_targets_are_parsed_at_load_time(targets: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({"targets": targets}, env={})


def test_hostname_targets_are_checked_for_syntax_only() -> None:
    assert parse({"targets": ["nas.lan", "192.168.1.0/24"]}, env={}).targets == ["nas.lan", "192.168.1.0/24"]


def test_every_problem_is_reported_at_once() -> None:
    raw = {"targets": ["198.18.0.300/24"], "nats": {"urll": "x", "replicas": 2},
           "scope": {"allow": ["lan.example"]},
           "producers": {"arp_sweep": {"interval_sec": 3, "retries": -1}},
           "enrichers": {"port_probe": {"tcp": "22,70000", "concurency": 3}},
           "sinks": {"host_state": {"presence": {"missed_sweeps": 0}}}}
    with pytest.raises(ConfigError) as caught:
        parse(raw, source="c.yaml", env={})
    keys = [p.split(": ")[1] for p in caught.value.problems]
    assert sorted(keys) == sorted([
        "nats.urll", "producers.arp_sweep.interval_sec", "producers.arp_sweep.retries",
        "enrichers.port_probe.concurency", "sinks.host_state.presence.missed_sweeps", "targets[0]",
        "scope.allow[0]", "nats.replicas", "enrichers.port_probe.tcp"])
    assert all(p.startswith("c.yaml: ") for p in caught.value.problems)


def test_an_old_layout_names_the_new_place_of_every_key() -> None:
    old = yaml.safe_load(OLD_LAYOUT.read_text())
    with pytest.raises(ConfigError) as caught:
        parse(old, env={})
    said = {p.split(": ")[1]: p.split(": ", 2)[2] for p in caught.value.problems}
    shared = {"data_dir", "targets", "nats", "scope", "logging"}
    used = {f"{section}.{key}" for section, keys in old.items() if section not in shared
            for key in keys if f"{section}.{key}" in MOVED or section not in ("proxmox", "dns")}
    assert used and set(said) == used
    for key, message in said.items():
        assert message.startswith(("moved", "removed")), (key, message)
        assert message == MOVED[key]
    assert said["schedules.arp_sweep_secs"].startswith("moved to producers.arp_sweep.interval_secs")
    assert said["duckdb.batch_size"] == "moved to sinks.host_state.batch_size"
    assert said["timeouts.dns_ms"].startswith("moved to dns.timeout_ms")
    assert said["presence.grace_secs"] == "moved to sinks.host_state.presence.grace_secs"


def test_every_place_the_moved_table_names_exists() -> None:
    config = msgspec.to_builtins(Config())
    for message in MOVED.values():
        for path in re.findall(r"\b((?:producers|enrichers|sinks|dns|proxmox)\.[a-z_.]*[a-z_])", message):
            node = config
            path = re.sub(r"\.(pass|password|token_value)_file$", r".\1", path)   # pass_file: where pass is
            for part in path.split("."):
                assert isinstance(node, dict) and part in node, (path, message)
                node = node[part]


def test_an_empty_section_is_the_defaults() -> None:
    assert parse(yaml.safe_load("producers:\nsinks:\n  host_state:\n"), env={}) == Config()


def test_required_variable_without_value_fails_clearly() -> None:
    raw = {"nats": {"password": "${NATS_PASS:?set the NATS password}"}}
    with pytest.raises(ConfigError, match=r"nats\.password: \$\{NATS_PASS\} is required: "
                                          r"set the NATS password"):
        parse(raw, env={})


def test_plain_variable_must_exist() -> None:
    with pytest.raises(ConfigError, match=r"nats\.url: environment variable NATS_URL is not set"):
        parse({"nats": {"url": "${NATS_URL}"}}, env={})


def test_an_empty_variable_leaves_an_optional_key_unset() -> None:
    config = parse({"proxmox": {"host": "${PVE:-}"}}, env={})
    assert config.proxmox.host is None


@pytest.mark.parametrize(("text", "env", "expected"), [
    ("${A}", {"A": "1"}, "1"),
    ("${A:-x}", {}, "x"),
    ("${A:-x}", {"A": ""}, "x"),
    ("${A:-x}", {"A": "y"}, "y"),
    ("pre-${A}-${B:-b}", {"A": "a"}, "pre-a-b"),
    ("$${A}", {"A": "1"}, "${A}"),
    ("${A:?}", {"A": "v"}, "v"),
])
def test_expand(text: str, env: dict[str, str], expected: str) -> None:
    assert expand(text, "k", env) == expected


def test_secret_from_file_is_read_and_masked(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    config = parse({"nats": {"password_file": "pw"}, "proxmox": {"host": "pve", "token_name": "t",
                                                                 "token_value_file": str(tmp_path / "pw")}},
                   env={}, base=tmp_path)
    assert config.nats.password == "s3cret" and isinstance(config.nats.password, Secret)
    assert config.proxmox.token_value == "s3cret" and isinstance(config.proxmox.token_value, Secret)
    assert "s3cret" not in repr(config)


def test_secret_and_secret_file_together_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"producers\.dhcp_leases\.gateway\.pass_file: set either pass or "
                                          r"pass_file"):
        parse({"producers": {"dhcp_leases": {"gateway": {"pass": "a", "pass_file": "b"}}}}, env={},
              base=tmp_path)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("nats:\n  url: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: not valid YAML \(line \d+"):
        load(bad)


def test_variables_cannot_inject_structure() -> None:
    config = parse({"nats": {"url": "${U}"}}, env={"U": "nats://x:4222\nevil: true"})
    assert config.nats.url == "nats://x:4222\nevil: true"


def test_every_config_key_is_read_somewhere() -> None:
    """A key nobody reads is a lie in config.yaml (timeouts.dns_ms was one)."""
    sources = "\n".join(p.read_text() for pkg in ("lanscope", "producers", "enrichers", "sinks")
                        for p in (ROOT / pkg).rglob("*.py"))
    unread = set()

    def walk(struct: type[msgspec.Struct]) -> None:
        for info in msgspec.structs.fields(struct):
            if not re.search(rf"\.{info.name}\b", sources):
                unread.add(f"{struct.__name__}.{info.name}")
            if isinstance(info.type, type) and issubclass(info.type, msgspec.Struct):
                walk(info.type)

    walk(Config)
    assert not unread


def test_reading_the_config_loads_no_heavy_io_library() -> None:
    heavy = ("duckdb", "proxmoxer", "dns", "httpx", "requests", "nats", "netaddr")
    code = ("import sys, lanscope.config as c; c.load('config.yaml', env={}); "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
