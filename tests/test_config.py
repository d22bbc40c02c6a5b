"""config.yaml loading: the shipped file stays valid, every error names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanscope.config import Config, ConfigError, Secret, expand, load, parse

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_is_valid_and_matches_the_defaults() -> None:
    shipped = load(ROOT / "config.yaml", env={})
    assert shipped == parse({}, env={}) == Config()


@pytest.mark.parametrize(("raw", "message"), [
    ({"natz": {}}, r"natz: unknown key"),
    ({"web": {"prot": 8080}}, r"web\.prot: unknown key"),
    ({"nats": {"urll": "x"}}, r"nats\.urll: unknown key"),
    ({"gateway": {"tls": {"verfy": True}}}, r"gateway\.tls\.verfy: unknown key"),
    ({"ports": {"tcp": 22}}, r"ports\.tcp: Expected `str`, got `int`"),
    ({"concurrency": {"hosts": 0}}, r"concurrency\.hosts: must be at least 1"),
    ({"nats": {"replicas": 2}}, r"nats\.replicas: must be 1, 3 or 5"),
    ({"registry": {"mode": "bogus"}}, r"registry\.mode: Invalid enum value 'bogus'"),
    ({"targets": "10.0.0.1"}, r"targets: Expected `array`, got `str`"),
    ({"schedules": {"arp_sweep_secs": -1}}, r"schedules\.arp_sweep_secs: must not be negative"),
    ({"proxmox": {"host": "pve", "token_name": "t"}}, r"proxmox\.token_value: required"),
    ([1, 2], r"top level must be a mapping"),
])
def test_errors_name_the_key(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(raw, env={})


def test_required_variable_without_value_fails_clearly() -> None:
    raw = {"gateway": {"pass": "${ROUTER_PASS:?set the router password}"}}
    with pytest.raises(ConfigError, match=r"gateway\.pass: \$\{ROUTER_PASS\} is required: "
                                          r"set the router password"):
        parse(raw, env={})


def test_plain_variable_must_exist() -> None:
    with pytest.raises(ConfigError, match=r"nats\.url: environment variable NATS_URL is not set"):
        parse({"nats": {"url": "${NATS_URL}"}}, env={})


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
    config = parse({"gateway": {"host": "192.168.88.1", "pass_file": "pw"}}, env={}, base=tmp_path)
    assert config.gateway.password == "s3cret"
    assert isinstance(config.gateway.password, Secret)
    assert "s3cret" not in repr(config)


def test_secret_and_secret_file_together_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gateway\.pass_file: set either pass or pass_file"):
        parse({"gateway": {"pass": "a", "pass_file": "b"}}, env={}, base=tmp_path)


def test_missing_secret_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"proxmox\.token_value_file: cannot read secret file"):
        parse({"proxmox": {"token_value_file": "nope"}}, env={}, base=tmp_path)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("nats:\n  url: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: not valid YAML \(line \d+"):
        load(bad)


def test_variables_cannot_inject_structure() -> None:
    config = parse({"nats": {"url": "${U}"}}, env={"U": "nats://x:4222\nevil: true"})
    assert config.nats.url == "nats://x:4222\nevil: true"
