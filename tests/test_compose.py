"""compose.yaml stays in step with the topology (Docker is not available here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import yaml

from lanscope.runtime.topology import STAGES, resolve
from lanscope.settings import Secret

ROOT = Path(__file__).resolve().parents[1]


def _services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services: dict[str, Any] = compose["services"]
    return services


def _stage_of(service: dict[str, Any]) -> str | None:
    command = service.get("command", [])
    if "--stage" in command:
        return str(command[command.index("--stage") + 1])
    return None


def test_every_stage_service_names_a_real_stage_and_every_stage_has_one() -> None:
    named = {}
    for name, service in _services().items():
        stage = _stage_of(service)
        if stage is not None:
            named[resolve(stage).name] = name  # resolve() raises on an unknown stage
    assert set(named) == set(STAGES)


def test_stage_services_share_one_image_and_wait_for_provisioning() -> None:
    services = _services()
    for name, service in services.items():
        if _stage_of(service) is None:
            continue
        assert service["image"] == services["provision"]["image"], name
        assert "provision" in service["depends_on"], name
    assert services["provision"]["command"] == ["provision"]
    assert "-js" in services["nats"]["command"]


def test_duckdb_owner_stays_single_and_raw_socket_stages_get_capabilities() -> None:
    for service in _services().values():
        stage = _stage_of(service)
        if stage is None:
            continue
        spec = resolve(stage)
        replicas = service.get("deploy", {}).get("replicas", 1)
        if spec.max_replicas is not None:
            assert replicas <= spec.max_replicas, stage
        caps = set(service.get("cap_add", []))
        assert ("NET_RAW" in caps) == spec.raw_sockets, stage


def test_every_variable_compose_sets_is_read_by_config_yaml_where_the_comment_says() -> None:
    from lanscope.config import parse

    text = (ROOT / "compose.yaml").read_text()
    env = yaml.safe_load(text)["x-lanscope"]["environment"]
    values = {name: f"value-of-{name.lower()}" for name in env}
    values["LANSCOPE_NATS_URL"] = "nats://127.0.0.1:4222"
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["proxmox"] |= {"token_name": "t", "token_value": "v"}     # a host needs credentials
    config = msgspec.to_builtins(parse(raw, env=values), builtin_types=(Secret,))
    for name in env:
        key = re.search(rf"^\s+{name}: .*# (\S+)$", text, re.MULTILINE)
        assert key is not None, f"compose.yaml: say which key {name} sets"
        node = config
        for part in key.group(1).split("."):
            node = node[part]
        assert node == values[name], (name, key.group(1))


# ---- compose.hub.yaml: a hub of many sites on a 3-node NATS cluster (README: Many sites) ----


def _hub() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "compose.hub.yaml").read_text())
    return compose


def test_the_hub_runs_every_stage_of_role_hub_and_no_sensor_stage() -> None:
    from lanscope.runtime.layout import Layout

    services = _hub()["services"]
    named = {resolve(stage).name for s in services.values() if (stage := _stage_of(s)) is not None}
    hub = Layout(role="hub")
    assert named == {name for name, spec in STAGES.items() if hub.runs(spec)}
    assert services["host_state"]["deploy"]["replicas"] == 1
    assert "provision" in services["host_state"]["depends_on"]


def test_the_hub_cluster_is_three_nodes_of_one_config_and_r3_streams() -> None:
    from lanscope.config import load

    services = _hub()["services"]
    nodes = {name: s for name, s in services.items() if s.get("image", "").startswith("nats:")}
    assert sorted(nodes) == ["nats1", "nats2", "nats3"]
    assert {s["environment"]["NATS_NAME"] for s in nodes.values()} == set(nodes)
    assert all(any("nats-hub.conf" in v for v in s["volumes"]) for s in nodes.values())
    config = load(ROOT / "deploy" / "hub.yaml")
    assert config.role == "hub" and config.nats.replicas == 3 and config.nats.user
    assert len(config.nats.url.split(",")) == 3


def test_the_shipped_hub_sites_conf_is_what_hub_config_prints(capsys: Any) -> None:
    from lanscope.cli import main

    assert main(["-c", str(ROOT / "deploy" / "hub.yaml"), "hub-config"]) == 0
    assert capsys.readouterr().out == (ROOT / "deploy" / "hub-sites.conf").read_text()


def test_nats_server_accepts_the_hub_node_config_with_sites(tmp_path: Path) -> None:
    import os
    import shutil
    import subprocess

    import nkeys

    from lanscope.config import parse
    from lanscope.runtime.embedded import find_binary
    from lanscope.runtime.leafnodes import hub_server_config

    raw = yaml.safe_load((ROOT / "deploy" / "hub.yaml").read_text())
    raw["hub"]["sites"] = {site: {"nkey": nkeys.from_seed(bytearray(nkeys.encode_seed(
        os.urandom(32), nkeys.PREFIX_BYTE_USER))).public_key.decode()} for site in ("paris", "berlin")}
    (tmp_path / "hub-sites.conf").write_text(hub_server_config(parse(raw, env={})))
    shutil.copy(ROOT / "deploy" / "nats-hub.conf", tmp_path)
    done = subprocess.run([str(find_binary()), "-t", "-c", str(tmp_path / "nats-hub.conf")],
                          capture_output=True, text=True, timeout=30,
                          env={"NATS_NAME": "nats1", "LANSCOPE_NATS_PASSWORD": "secret"})
    assert done.returncode == 0, done.stdout + done.stderr
