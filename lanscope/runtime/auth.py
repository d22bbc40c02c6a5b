"""Who may do what on the bus: roles, their NATS permissions, and their credentials.

The bus is closed. Every client connects as a role, with that role's
credentials, and the server lets each role do only its job:

- one role per stage, named after it, from the topology: a producer publishes
  what it emits (its sightings) and nothing else; an enricher or sink also pulls
  and acks its own durable consumer, copies to its own dead-letter subject and,
  for port_probe, uses the claims bucket; host_state answers ``lanscope.query``;
- ``pipeline``: ``lanscope run`` with more than one stage in one process: every
  stage's rights (its sinks may read through consumers they share);
- ``query``: requests on ``lanscope.query`` (lanscope query/status, dashboards);
- ``watch``: host changes and findings, read-only (``lanscope watch``): core
  subscriptions and ephemeral ordered consumers on the CHANGES stream, no acks;
- ``web``: the dashboard: what ``query`` and ``watch`` may, plus the streams' and
  consumers' state (pipeline health, the last sweeps) and one publish: "probe now"
  requests (``lanscope.host.probe.requested``) for port_probe;
- ``admin``: everything (``lanscope provision``; ``lanscope run`` provisions with it).

Every role subscribes only to its own inbox prefix (``_INBOX_<role>``), so no
client can read the replies (query results, pull deliveries) meant for another.

Sites (lanscope.runtime.layout): on a standalone install or a hub, each subject
a role may use is allowed for the default site and every named one
(``lanscope.host.seen.>`` and ``lanscope.*.host.seen.>``: a hub's stages handle
every site's events). On a sensor, the roles are those of the stages it runs,
pinned to its site (``lanscope.paris.host.seen.>``, ``lanscope.paris.dlq.<stage>``,
consumers on its own streams ``LANSCOPE_FACTS-paris`` ...): a sensor's stage
cannot publish for another site. A hub's server also holds one user per site
for that site's sensor, on leaf node connections only
(lanscope.runtime.leafnodes.site_users); the roles' users are for ordinary
client connections only.

Credentials are NKEYs (ed25519): one seed file per role, ``<role>.nk``, 0600 in
a 0700 directory. The embedded server's are generated on first run into
``<data_dir>/credentials`` and every local command uses the one of its role;
its config holds only the public keys. For an external server,
``nats.credentials_dir`` names such a directory (``python -m
lanscope.runtime.auth DIR`` writes the seeds and the server's ``auth.conf``), or
``nats.user``/``password``/``token``/``creds_file``/``nkey_seed_file`` give the
one identity of the process.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from lanscope.config import NatsConfig
from lanscope.errors import LanscopeError
from lanscope.runtime.claims import CLAIMS_BUCKET
from lanscope.runtime.layout import STANDALONE, Layout
from lanscope.runtime.topology import STAGES, Kind, StageSpec, consumer_bindings
from schemas import ProbeRequested, dlq_subject, everywhere, site_subject
from schemas import subjects as subj

ADMIN = "admin"
PIPELINE = "pipeline"
QUERY = "query"
WATCH = "watch"
WEB = "web"
CREDENTIALS_DIR = "credentials"       # under data_dir, for the embedded server
_JS = "$JS.API"


class CredentialsError(LanscopeError):
    """A role's credentials are missing or unreadable."""

    exit_code = 2


@dataclass(frozen=True)
class Role:
    name: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...] = ()
    responses: bool = False           # may answer requests it received (allow_responses)

    @property
    def inbox(self) -> str:
        return inbox_prefix(self.name)

    def permissions(self) -> dict[str, object]:
        out: dict[str, object] = {"publish": {"allow": list(self.publish)},
                                  "subscribe": {"allow": [f"{self.inbox}.>", *self.subscribe]}}
        if self.responses:
            out["allow_responses"] = True
        return out


def inbox_prefix(role: str) -> str:
    """Where a role's replies arrive (nats-py's ``inbox_prefix``)."""
    return f"_INBOX_{role}"


def _claims_subjects() -> tuple[str, ...]:
    stream = f"KV_{CLAIMS_BUCKET}"
    return (f"$KV.{CLAIMS_BUCKET}.>", f"{_JS}.STREAM.INFO.{stream}", f"{_JS}.DIRECT.GET.{stream}",
            f"{_JS}.DIRECT.GET.{stream}.>", f"{_JS}.STREAM.MSG.GET.{stream}")


def _consumer_subjects(stream: str, durable: str) -> tuple[str, ...]:
    return (f"{_JS}.CONSUMER.MSG.NEXT.{stream}.{durable}", f"{_JS}.CONSUMER.INFO.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>")


def site_forms(layout: Layout, *patterns: str) -> tuple[str, ...]:
    """The subjects a role of ``layout`` may use for ``patterns`` (the default site's): a
    sensor's site's only; elsewhere the default site's and every named site's."""
    if layout.sensor:
        return tuple(site_subject(layout.site, pattern) for pattern in patterns)
    return everywhere(*patterns)


def stage_role(spec: StageSpec, layout: Layout = STANDALONE) -> Role:
    """What one stage needs: publish what it emits; consume its own durables; its DLQ.
    ``spec`` as ``layout`` binds it (Layout.spec: a sensor's stages consume their site's)."""
    publish: list[str] = list(site_forms(layout, *(subj.SUBJECTS[t][0] for t in spec.emits)))
    for stream in consumer_bindings(spec, layout.streams):
        publish += _consumer_subjects(stream, spec.durable)
    if spec.consumes:
        publish += site_forms(layout, dlq_subject(spec.name))
    if spec.uses_claims:
        publish += _claims_subjects()
    return Role(spec.name, tuple(dict.fromkeys(publish)), subscribe=spec.answers,
                responses=bool(spec.answers))


def pipeline_role(specs: Iterable[StageSpec], layout: Layout = STANDALONE) -> Role:
    """Every stage's rights in one process; its sinks may share a consumer (topology.sink_feeds),
    so any durable of the lanscope streams."""
    specs = list(specs)
    publish: list[str] = []
    subscribe: list[str] = []
    for spec in specs:
        role = stage_role(spec, layout)
        publish += role.publish
        subscribe += role.subscribe
    for stream in {name for spec in specs if spec.kind is Kind.SINK
                   for name in consumer_bindings(spec, layout.streams)}:
        publish += _consumer_subjects(stream, "*")
    return Role(PIPELINE, tuple(dict.fromkeys(publish)), tuple(dict.fromkeys(subscribe)),
                responses=any(spec.answers for spec in specs))


def roles(stages: Iterable[StageSpec] | None = None, layout: Layout = STANDALONE) -> dict[str, Role]:
    """Every role of ``layout``, by name: the fixed ones and one per stage it runs (of the
    topology, or of ``stages``)."""
    specs = [layout.spec(s) for s in (STAGES.values() if stages is None else stages) if layout.runs(s)]
    changes = subj.CHANGES.name
    facts = next(s.name for s in layout.streams if s.name.startswith(subj.FACTS.name))
    # Ephemeral consumers only: the server refuses a durable name on this subject.
    follow_changes = (f"{_JS}.CONSUMER.CREATE.{changes}", f"$JS.FC.{changes}.>")
    conclusions = site_forms(layout, subj.HOST_CHANGED, subj.FINDING)
    fixed = [
        Role(ADMIN, (">",), (">",), responses=True),
        pipeline_role(specs, layout),
        Role(QUERY, (subj.QUERY,)),
        Role(WATCH, follow_changes, conclusions),
        Role(WEB, (subj.QUERY, *site_forms(layout, subj.SUBJECTS[ProbeRequested][0]), *follow_changes,
                   f"{_JS}.STREAM.INFO.*", f"{_JS}.CONSUMER.LIST.*", f"{_JS}.STREAM.MSG.GET.{facts}"),
             conclusions),
    ]
    out = {role.name: role for role in fixed}
    for spec in specs:
        if spec.name in out:
            raise ValueError(f"stage {spec.name} has the name of a fixed role")
        out[spec.name] = stage_role(spec, layout)
    return out


def role_for(specs: Iterable[StageSpec]) -> str:
    """The role of a process running ``specs``: the stage's own, or the pipeline's for several."""
    names = [spec.name for spec in specs]
    return names[0] if len(names) == 1 else PIPELINE


# ----------------------------------------------------------------- credentials


def make_seed(path: Path) -> None:
    """A new NKEY user seed in ``path`` (0600, its directory 0700) unless there is one."""
    import nkeys

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if path.exists():
        return
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:     # another process made it meanwhile
        return
    with os.fdopen(fd, "wb") as out:
        out.write(seed + b"\n")


def public_key(seed: bytes | str) -> str:
    """The public key of an NKEY seed."""
    import nkeys

    raw = seed.encode() if isinstance(seed, str) else seed
    key: bytes = nkeys.from_seed(bytearray(raw)).public_key
    return key.decode()


class Credentials:
    """A directory of NKEY seed files, one per role (``<role>.nk``), created 0600 in 0700."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @classmethod
    def embedded(cls, data_dir: str | Path) -> Credentials:
        return cls(Path(data_dir) / CREDENTIALS_DIR)

    def seed_file(self, role: str) -> Path:
        return self.dir / f"{role}.nk"

    def ensure(self, names: Iterable[str]) -> dict[str, str]:
        """Each role's public key, generating the seeds that are missing."""
        public: dict[str, str] = {}
        for name in names:
            path = self.seed_file(name)
            make_seed(path)
            public[name] = public_key(self._read(path))
        return public

    def _read(self, path: Path) -> bytes:
        try:
            return path.read_bytes().strip()
        except OSError as exc:
            raise CredentialsError(f"cannot read NATS credentials {path}: {exc.strerror} (run lanscope "
                                   "as the user that owns the data directory)") from None

    def find(self, role: str) -> Path:
        """The credentials file of ``role`` (``<role>.nk`` or ``<role>.creds``)."""
        for path in (self.seed_file(role), self.dir / f"{role}.creds"):
            if path.is_file():
                if not os.access(path, os.R_OK):
                    self._read(path)
                return path
        raise CredentialsError(f"no NATS credentials for role {role!r} in {self.dir} (the embedded "
                               "server's are created by `lanscope run`; for another server see "
                               "README, Security)")


# A role is a lanscope process's client connection: never a leaf node, route or gateway.
_CLIENT_CONNECTIONS = ["STANDARD"]


def authorization(names_to_keys: dict[str, str], all_roles: dict[str, Role],
                  more_users: Iterable[dict[str, Any]] = ()) -> str:
    """The nats-server ``authorization`` block: one NKEY user per role with its permissions,
    on client connections; ``more_users`` as they are (a hub's sites' leaf node users,
    lanscope.runtime.leafnodes.site_users). No user without credentials and no
    ``no_auth_user``: a client that presents none is refused."""
    users = [f"    # {name}\n    " + json.dumps({"nkey": key, "permissions": all_roles[name].permissions(),
                                                 "allowed_connection_types": _CLIENT_CONNECTIONS})
             for name, key in names_to_keys.items()]
    users += ["    " + json.dumps(user) for user in more_users]
    return ("# lanscope's roles (lanscope.runtime.auth): one NKEY user each, with its permissions.\n"
            "authorization {\n  users = [\n" + ",\n".join(users) + "\n  ]\n}\n")


def embedded_authorization(data_dir: str | Path, layout: Layout = STANDALONE,
                           more_users: Iterable[dict[str, Any]] = ()) -> str:
    """The embedded server's block for ``layout``, generating missing seeds in
    ``<data_dir>/credentials``. The permissions are computed from the topology at every start."""
    all_roles = roles(layout=layout)
    return authorization(Credentials.embedded(data_dir).ensure(all_roles), all_roles, more_users)


def client_config(config: NatsConfig, data_dir: str | Path, role: str) -> NatsConfig:
    """The settings a process of ``role`` connects with: with the embedded server (no
    ``nats.url``) or ``nats.credentials_dir``, that role's credentials file; else the
    configured identity as it is."""
    if config.url and not config.credentials_dir:
        return config
    store = Credentials(Path(config.credentials_dir)) if config.url else Credentials.embedded(data_dir)
    path = store.find(role)
    if path.suffix == ".creds":
        return msgspec.structs.replace(config, creds_file=str(path), nkey_seed_file=None)
    return msgspec.structs.replace(config, nkey_seed_file=str(path), creds_file=None)


def main(argv: list[str]) -> int:
    """``python -m lanscope.runtime.auth DIR``: seeds for every role (kept if present) and
    ``DIR/auth.conf``, the authorization block for a nats-server config to include."""
    if len(argv) != 1:
        print(__doc__.split("\n\n")[0], "\nusage: python -m lanscope.runtime.auth DIR", file=sys.stderr)
        return 2
    directory = Path(argv[0])
    all_roles = roles()
    block = authorization(Credentials(directory).ensure(all_roles), all_roles)
    (directory / "auth.conf").write_text(block)
    print(f"{len(all_roles)} roles: seeds {directory}/<role>.nk, server block {directory}/auth.conf")
    return 0


__all__ = ["ADMIN", "PIPELINE", "QUERY", "WATCH", "WEB", "Credentials", "CredentialsError", "Role",
           "authorization", "client_config", "embedded_authorization", "inbox_prefix",
           "make_seed", "public_key", "role_for", "roles", "site_forms", "stage_role"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
