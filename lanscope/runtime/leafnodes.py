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
on leaf node connections. Local clients of an embedded hub connect as the user
``local``, allowed only on ordinary client connections and given to those that
present no credentials (``no_auth_user``), so a leaf node without credentials
is refused instead of getting local rights.

Reconciling with per-role credentials for local clients (the embedded server's
``authorization`` block made of NKEY users with permissions): the site users of
``site_users()`` join that block's users unchanged; ``local`` and
``no_auth_user`` then go (``authorization_block``'s ``local`` argument).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lanscope.errors import LanscopeError
from lanscope.runtime.layout import requests_prefix, sensor_stream_names, sourced_prefix
from lanscope.sites import site_domain
from schemas import site_subject
from schemas import subjects as subj

if TYPE_CHECKING:
    from lanscope.config import Config
    from lanscope.settings import TlsConfig
    from lanscope.sites import HubConfig

CREDENTIALS_DIR = "credentials"         # under data_dir
LEAF_SEED = "leaf.nk"
LOCAL_USER = "local"


class LeafError(LanscopeError):
    """A sensor's leaf credentials or TLS settings cannot be used."""

    exit_code = 2


# ----------------------------------------------------------------- credentials


def seed_path(config: Config) -> Path:
    return Path(config.sensor.nkey_file) if config.sensor.nkey_file \
        else Path(config.data_dir) / CREDENTIALS_DIR / LEAF_SEED


def sensor_seed(config: Config, *, create: bool = True) -> str:
    """The sensor's NKEY seed: ``sensor.nkey_file``, else the generated one (made if missing)."""
    import nkeys

    path = seed_path(config)
    if not path.exists() and create and not config.sensor.nkey_file:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:      # another process made it meanwhile
            pass
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(seed + b"\n")
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise LeafError(f"cannot read the sensor's NKEY seed {path}: {exc.strerror}") from None
    try:
        nkeys.from_seed(bytearray(text.encode()))
    except Exception:                # nkeys raises its own error types for each flaw
        raise LeafError(f"{path} does not hold an NKEY user seed (SU...)") from None
    return text


def public_key(seed: str) -> str:
    import nkeys

    key: bytes = nkeys.from_seed(bytearray(seed.encode())).public_key
    return key.decode()


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
            f"$JS.{hub_domain}.API.CONSUMER.CREATE.{requests}.*.{site_subject(site, subj.PROBE_REQUESTED)}",
            f"$JS.FC.{hub_domain}.>",                 # flow control of its copy of the requests
        ]},
        "subscribe": {"allow": [
            *create, *(f"{c}.>" for c in create),     # the hub asks for its streams, in its domain
            f"$JS.FC.{domain}.>",                     # flow control of the hub's copies
            f"{requests_prefix(site)}.>",             # its site's probe requests
            "$JSC.R.>",                               # the reply to its consumer request
        ]},
    }


def site_users(hub: HubConfig) -> list[dict[str, Any]]:
    """One NKEY user per site, allowed on leaf node connections only."""
    return [{"nkey": entry.nkey, "permissions": site_permissions(site, hub.domain),
             "allowed_connection_types": ["LEAFNODE"]}
            for site, entry in sorted(hub.sites.items())]


def authorization_block(users: list[dict[str, Any]], *, local: bool = True) -> str:
    """The server's ``authorization`` (and ``no_auth_user``) for ``users``; ``local``: plus a
    user for this machine's clients without credentials, on ordinary connections only."""
    everyone = list(users)
    if local:
        everyone.insert(0, {"user": LOCAL_USER, "password": secrets.token_urlsafe(24),
                            "allowed_connection_types": ["STANDARD", "WEBSOCKET"]})
    text = "authorization: " + json.dumps({"users": everyone}, indent=1) + "\n"
    return text + (f"no_auth_user: {LOCAL_USER}\n" if local else "")


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
    """What an embedded server needs besides its store and port to be a hub or a sensor."""

    name: str = ""                     # server_name (JetStream across leaf nodes wants a stable one)
    domain: str = ""                   # JetStream domain
    blocks: list[str] = field(default_factory=list)   # more top-level config (leafnodes, authorization)

    def lines(self) -> list[str]:
        return [f"server_name: {json.dumps(self.name)}"] if self.name else []


def server_role(config: Config) -> ServerRole:
    """The hub's or a sensor's part of its embedded server's config (nothing for role: all)."""
    if config.role == "sensor":
        seed = sensor_seed(config)
        remote: dict[str, Any] = {"urls": list(config.sensor.hub), "nkey": seed}
        if config.sensor.tls is not None:
            remote["tls"] = _tls_block(config.sensor.tls, server=False)
        block = "leafnodes: " + json.dumps({"remotes": [remote]}, indent=1) + "\n"
        return ServerRole(f"lanscope-sensor-{config.site}", site_domain(config.site), [block])
    if config.role == "hub":
        hub = config.hub
        listen: dict[str, Any] = {"host": hub.leaf_host, "port": hub.leaf_port}
        if hub.tls is not None:
            listen["tls"] = _tls_block(hub.tls, server=True)
        blocks = ["leafnodes: " + json.dumps(listen, indent=1) + "\n",
                  authorization_block(site_users(hub))]
        return ServerRole("lanscope-hub", hub.domain, blocks)
    return ServerRole()


def hub_server_config(config: Config) -> str:
    """The hub's part of a nats-server config, for a hub whose NATS is not embedded (a
    cluster: each node includes it): the leaf node listener, the user of lanscope's hub
    processes (``nats.user``, password from the node's environment) and the sites' users.
    Each node's own config sets ``jetstream { domain: <hub.domain> }``."""
    role = server_role(config)
    own = {"user": config.nats.user, "password": "$LANSCOPE_NATS_PASSWORD",
           "allowed_connection_types": ["STANDARD", "WEBSOCKET"]}
    block = authorization_block([own, *site_users(config.hub)], local=False)
    # An unquoted $NAME is the node's environment variable (nats-server's config syntax).
    block = block.replace('"$LANSCOPE_NATS_PASSWORD"', "$LANSCOPE_NATS_PASSWORD")
    return (f"# lanscope hub (`lanscope hub-config`); each node: jetstream {{ domain: {role.domain} }}\n"
            + role.blocks[0] + block)


__all__ = ["LeafError", "ServerRole", "authorization_block", "hub_server_config", "public_key",
           "seed_path", "sensor_seed", "server_role", "site_permissions", "site_users"]
