"""The ``site``, ``role``, ``sensor:`` and ``hub:`` settings of config.yaml: many segments and sites.

ARP stops at a router, so each segment (or site) runs a *sensor* (``role:
sensor``, or ``lanscope sensor``): the producers and port_probe, with its
embedded nats-server as a NATS **leaf node** of the *hub* (``role: hub``: the
enrichers and sinks). A sensor's events carry its ``site``; its JetStream
(domain ``lanscope-<site>``) keeps them while the hub is away, and the hub's
streams copy them from there when it is back (stream sourcing: no replication
of lanscope's own). The default ``role: all`` runs everything in one place, as
a single-site install always did.

Each sensor authenticates to the hub with its own NKEY (its seed stays on the
sensor; the hub lists the public keys in ``hub.sites``), and may do only what
copying its site's events needs (lanscope.runtime.leafnodes).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from lanscope.settings import Problems, Section, TlsConfig
from schemas import check_site

# A JetStream domain: a subject token ($JS.<domain>.API).
Domain = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
HUB_DOMAIN = "lanscope-hub"
LEAF_PORT = 7422

Role = Literal["all", "sensor", "hub"]


def site_domain(site: str) -> str:
    """The JetStream domain of a site's sensor."""
    return f"lanscope-{site}"


def _nkey_problem(key: str) -> str | None:
    """Why ``key`` is not an NKEY user public key (None if it is one)."""
    if len(key) != 56 or not key.startswith("U"):
        return "not an NKEY user public key (56 characters starting with U; `lanscope sensor --key` " \
               "on the sensor prints it)"
    import base64
    import binascii

    import nkeys

    try:
        raw = base64.b32decode(key)
    except (binascii.Error, ValueError):
        return "not a valid NKEY public key (characters)"
    if raw[0] != nkeys.PREFIX_BYTE_USER or nkeys.crc16_checksum(raw[:-2]) != raw[-2:]:
        return "not a valid NKEY public key (bad checksum)"
    return None


class SiteConfig(Section):
    """One site whose sensor connects to this hub."""

    nkey: str                              # the sensor's NKEY public key (U...)


class HubConfig(Section):
    """role: hub: where sensors connect (leaf nodes) and which sites may."""

    domain: Domain = HUB_DOMAIN            # this hub's JetStream domain
    leaf_host: str = "0.0.0.0"             # the leaf node listener (sensors connect here)
    leaf_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = LEAF_PORT
    tls: TlsConfig | None = None           # cert_file/key_file: the listener's TLS (ca_file: verify sensors)
    sites: dict[str, SiteConfig] = {}      # site id -> its sensor's key

    def check(self) -> Problems:
        for site, entry in self.sites.items():
            try:
                check_site(site)
            except ValueError as exc:
                yield f"sites.{site}", str(exc)
            if not site:
                yield "sites", "a site id cannot be empty"
            problem = _nkey_problem(entry.nkey)
            if problem:
                yield f"sites.{site}.nkey", problem


class SensorConfig(Section):
    """role: sensor: the hub this sensor's NATS server joins as a leaf node."""

    hub: list[str] = []                    # nats-leaf://hub.example.net:7422 (every hub node)
    hub_domain: Domain = HUB_DOMAIN        # the hub's JetStream domain (hub.domain there)
    nkey_file: str = ""                    # the sensor's NKEY seed; empty: <data_dir>/credentials/leaf.nk,
                                           # generated on first start
    tls: TlsConfig | None = None           # ca_file: verify the hub; cert_file/key_file: client cert

    def check(self) -> Problems:
        for i, url in enumerate(self.hub):
            if not url.startswith(("nats-leaf://", "tls://", "nats://", "ws://", "wss://")):
                yield f"hub[{i}]", f"{url!r}: expected a leaf node URL, nats-leaf://host:{LEAF_PORT}"
            if "@" in url:
                yield f"hub[{i}]", "no credentials in the URL: the sensor authenticates with its NKEY"


def check_roles(site: str, role: Role, sensor: SensorConfig) -> Problems:
    """The top-level rules: a valid site id; a sensor needs one and a hub to join."""
    try:
        check_site(site)
    except ValueError as exc:
        yield "site", str(exc)
    if role == "sensor":
        if not site:
            yield "site", "role: sensor needs a site id (its events are that site's)"
        if not sensor.hub:
            yield "sensor.hub", "role: sensor needs the hub's leaf node URL(s)"


__all__ = ["HUB_DOMAIN", "LEAF_PORT", "HubConfig", "Role", "SensorConfig", "SiteConfig", "check_roles",
           "site_domain"]
