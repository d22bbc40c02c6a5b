"""The leaf node link between a sensor's nats-server and its hub: credentials, permissions, config.

A sensor's embedded server is a NATS leaf node of the hub, with a JetStream
domain of its own (``lanscope-<site>``): its streams keep the site's events
while the hub is away, and the hub's streams copy them from there
(lanscope.runtime.layout). The sensor authenticates with its own NKEY (the seed
never leaves the sensor: ``<data_dir>/credentials/leaf.nk``, 0600, made on
first start; ``lanscope sensor --key`` prints the public key for the hub's
``hub.sites``).

What a sensor's connection may do at the hub is what copying its site's events
needs, and no more (the user's permissions, from the hub's side: *publish* is
what the sensor may send in, *subscribe* what the hub sends out to it):

- publish: deliveries of its streams on ``lanscope.<site>.sourced.>`` (the
  copied message's own subject rides inside the delivery, where no permission
  looks, so the hub also checks every copied event against the stream it came
  from: lanscope.runtime.delivery.site_problem); the replies and flow control of
  that copying; a consumer on the hub's probe requests filtered to its site
  (the filter is part of the allowed subject) and that consumer's flow control.
  Nothing else: not a sighting, a host change or a finding of its own site, and
  nothing of any other site.
- subscribe: the JetStream API calls that copy *its* streams (in its domain
  only), their flow control, and its site's probe requests.

The hub's server config therefore holds one NKEY user per site, allowed only
on leaf node connections (``site_users``), beside the users of lanscope's roles
(lanscope.runtime.auth: one NKEY user per role, on ordinary client connections
only, their seeds in ``<data_dir>/credentials`` with the sensor's ``leaf.nk``).
There is no user without credentials: a client or leaf node that presents none
is refused, on a hub and on a sensor alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lanscope.errors import LanscopeError
from lanscope.runtime.auth import CREDENTIALS_DIR, Credentials, authorization, make_seed, public_key, roles
from lanscope.runtime.layout import (
    SITE_REQUESTS,
    STANDALONE,
    Layout,
    requests_prefix,
    sensor_stream_names,
    sourced_prefix,
)
from lanscope.sites import site_domain
from schemas import site_subject
from schemas import subjects as subj

if TYPE_CHECKING:
    from lanscope.config import Config
    from lanscope.settings import TlsConfig
    from lanscope.sites import HubConfig

LEAF_SEED = "leaf.nk"                   # in <data_dir>/credentials, beside the roles' seeds


class LeafError(LanscopeError):
    """A sensor's leaf credentials or TLS settings cannot be used."""

    exit_code = 2


# ----------------------------------------------------------------- credentials


def seed_path(config: Config) -> Path:
    return Path(config.sensor.nkey_file) if config.sensor.nkey_file \
        else Path(config.data_dir) / CREDENTIALS_DIR / LEAF_SEED


def sensor_seed(config: Config) -> str:
    """The sensor's NKEY seed: ``sensor.nkey_file``, else the generated one (made if missing)."""
    path = seed_path(config)
    if not path.exists() and not config.sensor.nkey_file:
        make_seed(path)
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise LeafError(f"cannot read the sensor's NKEY seed {path}: {exc.strerror}") from None
    try:
        public_key(text)
    except Exception:                # nkeys raises its own error types for each flaw
        raise LeafError(f"{path} does not hold an NKEY user seed (SU...)") from None
    return text


# ----------------------------------------------------------------- permissions


def site_permissions(site: str, hub_domain: str) -> dict[str, Any]:
    """What a site's sensor may send to the hub (publish) and receive from it (subscribe)."""
    domain = site_domain(site)
    requests = subj.REQUESTS.name
    create = [f"$JS.{domain}.API.CONSUMER.CREATE.{name}" for name in sensor_stream_names(site)]
    return {
        "publish": {"allow": [
            f"{sourced_prefix(site)}.>",              # its streams, delivered to the hub's copies
            # Replies to the hub's consumer requests: their inboxes carry no site, and a user's
            # allow_responses does not reach leaf node connections (tried: the copy never starts).
            "$JSC.R.>",
            *(f"$JS.{hub_domain}.API.CONSUMER.CREATE.{requests}.*.{site_subject(site, wanted)}"
              for wanted in SITE_REQUESTS),          # its copies of its site's requests
            f"$JS.FC.{hub_domain}.>",                 # flow control of its copy of the requests
        ]},
        "subscribe": {"allow": [
            *create, *(f"{c}.>" for c in create),     # the hub asks for its streams, in its domain
            f"$JS.FC.{domain}.>",                     # flow control of the hub's copies
            f"{requests_prefix(site)}.>",             # its site's probe requests and presence checks
            "$JSC.R.>",                               # the reply to its consumer request
        ]},
    }


def site_users(hub: HubConfig) -> list[dict[str, Any]]:
    """One NKEY user per site, allowed on leaf node connections only."""
    return [{"nkey": entry.nkey, "permissions": site_permissions(site, hub.domain),
             "allowed_connection_types": ["LEAFNODE"]}
            for site, entry in sorted(hub.sites.items())]


# ----------------------------------------------------------------- server config


def _tls_block(tls: TlsConfig, *, server: bool) -> dict[str, Any]:
    if tls.fingerprint_sha256:
        raise LeafError("leaf node TLS: fingerprint_sha256 is not supported here; use ca_file")
    block: dict[str, Any] = {}
    for key in ("ca_file", "cert_file", "key_file"):
        value = getattr(tls, key)
        if value:
            block[key] = str(Path(value).resolve())
    if server:
        if "cert_file" not in block or "key_file" not in block:
            raise LeafError("hub.tls needs cert_file and key_file (the leaf node listener's certificate)")
        if "ca_file" in block:
            block["verify"] = True            # sensors must present a certificate from that CA
    elif not tls.verify:
        block["insecure"] = True
    return block


@dataclass(frozen=True)
class ServerRole:
    """What an embedded server needs besides its store and port: the layout whose roles it
    admits (lanscope.runtime.auth) and, for a hub or a sensor, its part of the leaf node link."""

    name: str = ""                     # server_name (JetStream across leaf nodes wants a stable one)
    domain: str = ""                   # JetStream domain
    blocks: list[str] = field(default_factory=list)   # more top-level config (leafnodes)
    users: list[dict[str, Any]] = field(default_factory=list)   # users beside the roles' (sites)
    layout: Layout = STANDALONE        # whose roles' users the server holds

    def lines(self) -> list[str]:
        return [f"server_name: {json.dumps(self.name)}"] if self.name else []


def server_role(config: Config) -> ServerRole:
    """The hub's or a sensor's part of its embedded server's config (the roles only, for
    role: all)."""
    layout = config.layout()
    if config.role == "sensor":
        seed = sensor_seed(config)
        remote: dict[str, Any] = {"urls": list(config.sensor.hub), "nkey": seed}
        if config.sensor.tls is not None:
            remote["tls"] = _tls_block(config.sensor.tls, server=False)
        block = "leafnodes: " + json.dumps({"remotes": [remote]}, indent=1) + "\n"
        return ServerRole(f"lanscope-sensor-{config.site}", site_domain(config.site), [block], layout=layout)
    if config.role == "hub":
        return ServerRole("lanscope-hub", config.hub.domain, [_leaf_listener(config.hub)],
                          site_users(config.hub), layout)
    return ServerRole(layout=layout)


def _leaf_listener(hub: HubConfig) -> str:
    listen: dict[str, Any] = {"host": hub.leaf_host, "port": hub.leaf_port}
    if hub.tls is not None:
        listen["tls"] = _tls_block(hub.tls, server=True)
    return "leafnodes: " + json.dumps(listen, indent=1) + "\n"


def hub_server_config(config: Config, credentials: Credentials) -> str:
    """The hub's part of a nats-server config, for a hub whose NATS is not embedded (a
    cluster: each node includes it): the leaf node listener, one NKEY user per role of a hub
    (its seed in ``credentials``, made if missing) and the sites' users. Each node's own
    config sets ``jetstream { domain: <hub.domain> }``."""
    hub_roles = roles(layout=config.layout())
    domain = config.hub.domain
    return (f"# lanscope hub (`lanscope hub-config`); each node: jetstream {{ domain: {domain} }}\n"
            + _leaf_listener(config.hub)
            + authorization(credentials.ensure(hub_roles), hub_roles, site_users(config.hub)))


__all__ = ["LeafError", "ServerRole", "hub_server_config", "public_key", "seed_path", "sensor_seed",
           "server_role", "site_permissions", "site_users"]
