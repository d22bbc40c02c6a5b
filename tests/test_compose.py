"""compose.yaml stays in step with the topology (Docker is not available here)."""

from __future__ import annotations

import re
import subprocess
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
    assert services["nats"]["command"] == ["-c", "/etc/nats/nats.conf"]
    assert "./deploy/nats.conf:/etc/nats/nats.conf:ro" in services["nats"]["volumes"]


def test_each_service_holds_only_its_own_roles_key() -> None:
    """Issue 20: the bus is closed in compose too; a stage's container gets its role's NKEY
    seed and no other (a stage without the admin key does not provision)."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert _roles_keys(compose, "./nats-credentials") == {"admin", "web", *STAGES} == set(compose["secrets"])
    setup = services["credentials"]
    assert setup["entrypoint"] == ["python", "-m", "lanscope.runtime.auth", "/credentials"]
    assert setup["profiles"] == ["setup"]
    assert "./nats-credentials/auth.conf:/etc/nats/credentials/auth.conf:ro" in services["nats"]["volumes"]


def _roles_keys(compose: dict[str, Any], directory: str) -> set[str]:
    """The role each service holds a key of, checking that it holds only that one (the
    stage's; admin for `provision`, web for `web`; none for the others) from ``directory``."""
    held = set()
    for name, service in compose["services"].items():
        stage = _stage_of(service)
        role = resolve(stage).name if stage else {"provision": "admin", "web": "web"}.get(name)
        if role is None:
            assert "secrets" not in service, name
            continue
        assert service["secrets"] == [{"source": role, "target": f"{role}.nk"}], name
        assert compose["secrets"][role] == {"file": f"{directory}/{role}.nk"}
        held.add(role)
    return held


def test_the_compose_nats_config_is_valid_with_the_generated_users(tmp_path: Path) -> None:
    from lanscope.runtime.auth import main
    from lanscope.runtime.embedded import find_binary

    assert main([str(tmp_path / "credentials")]) == 0
    conf = (ROOT / "deploy" / "nats.conf").read_text().replace("/data", str(tmp_path / "data"))
    assert "include ./credentials/auth.conf" in conf and "jetstream" in conf
    (tmp_path / "nats.conf").write_text(conf)
    checked = subprocess.run([str(find_binary()), "-c", str(tmp_path / "nats.conf"), "-t"],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


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
    for node in nodes.values():
        assert "./deploy/nats-hub.conf:/etc/nats/nats-hub.conf:ro" in node["volumes"]
        assert "./nats-credentials-hub/auth.conf:/etc/nats/credentials/auth.conf:ro" in node["volumes"]
    config = load(ROOT / "deploy" / "hub.yaml")
    assert config.role == "hub" and config.nats.replicas == 3
    assert len(config.nats.url.split(",")) == 3
    # The closed bus of issue 20: each process connects with its role's key, no shared password.
    assert config.nats.credentials_dir == "/run/secrets" and not config.nats.user


def test_each_hub_service_holds_only_its_own_roles_key() -> None:
    """compose.hub.yaml follows compose.yaml's model: a service gets its role's NKEY seed and
    no other, and `credentials` (hub-config) writes every seed and the nodes' users."""
    from lanscope.config import load
    from lanscope.runtime.auth import roles

    compose = _hub()
    services = compose["services"]
    hub_roles = roles(layout=load(ROOT / "deploy" / "hub.yaml").layout())
    held = _roles_keys(compose, "./nats-credentials-hub")
    assert held <= set(hub_roles) and set(compose["secrets"]) == held
    setup = services["credentials"]
    assert setup["command"] == ["hub-config", "/credentials"] and setup["profiles"] == ["setup"]
    assert "./nats-credentials-hub:/credentials" in setup["volumes"]


def test_nats_server_accepts_the_hub_node_config_with_sites(tmp_path: Path, capsys: Any) -> None:
    import os
    import shutil
    import subprocess

    import nkeys

    from lanscope.cli import main
    from lanscope.runtime.embedded import find_binary

    raw = yaml.safe_load((ROOT / "deploy" / "hub.yaml").read_text())
    keys = {site: nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)))
            .public_key.decode() for site in ("paris", "berlin")}
    raw["hub"]["sites"] = {site: {"nkey": key} for site, key in keys.items()}
    (tmp_path / "hub.yaml").write_text(yaml.safe_dump(raw))
    assert main(["-c", str(tmp_path / "hub.yaml"), "hub-config", str(tmp_path / "credentials")]) == 0
    assert "2 sites" in capsys.readouterr().out
    auth = (tmp_path / "credentials" / "auth.conf").read_text()
    assert all(key in auth for key in keys.values()) and "no_auth_user" not in auth
    assert '"port": 7422' in auth
    for seed in (tmp_path / "credentials").glob("*.nk"):
        assert seed.read_text().strip() not in auth
    shutil.copy(ROOT / "deploy" / "nats-hub.conf", tmp_path)
    done = subprocess.run([str(find_binary()), "-t", "-c", str(tmp_path / "nats-hub.conf")],
                          capture_output=True, text=True, timeout=30, env={"NATS_NAME": "nats1"})
    assert done.returncode == 0, done.stdout + done.stderr
