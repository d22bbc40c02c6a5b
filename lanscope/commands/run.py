"""``lanscope run``: the continuous pipeline, every stage of the role or the ones named with --stage.

With no ``nats.url`` the bundled nats-server is started first (and stopped
last); then streams and consumers are provisioned and the stages run until
SIGTERM/SIGINT. ``--once`` runs each producer once and exits when every
consumer has caught up. ``role:`` picks the stages (lanscope.runtime.layout):
``all`` every one, ``sensor`` the producers and port_probe (``lanscope sensor``),
``hub`` the rest; a hub's or sensor's embedded server is a leaf node hub or
leaf (lanscope.runtime.leafnodes).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
from typing import Any

from lanscope.config import Config
from lanscope.errors import LanscopeError, UsageError
from lanscope.output import print_line, print_table
from lanscope.runtime.auth import CredentialsError, client_config, role_for
from lanscope.runtime.bus import Bus
from lanscope.runtime.datadir import StageLocks, private, starting
from lanscope.runtime.delivery import dead_letters
from lanscope.runtime.embedded import EmbeddedNats, guard_store
from lanscope.runtime.layout import Layout
from lanscope.runtime.leafnodes import server_role
from lanscope.runtime.locate import configured_url
from lanscope.runtime.provisioning import connect_admin
from lanscope.runtime.runner import Runner, RunnerOptions
from lanscope.runtime.stage import StageContext, StageDisabled
from lanscope.runtime.topology import STAGES, StageSpec, resolve, sink_feeds
from lanscope.sites import site_domain

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", action="append", metavar="NAME", default=[],
                        help="run only this stage (port_probe or enrichers.port_probe); repeatable")
    parser.add_argument("--once", action="store_true",
                        help="run each producer once, exit when every consumer has caught up")
    parser.add_argument("--no-web", action="store_true",
                        help="do not serve the dashboard (served when every stage runs and web.enabled)")


def selected_stages(names: list[str], layout: Layout | None = None) -> list[StageSpec]:
    """The stages to run: the named ones, else every one of the role (``layout``)."""
    if not names:
        return [spec for spec in STAGES.values() if layout is None or layout.runs(spec)]
    specs: list[StageSpec] = []
    for name in names:
        try:
            spec = resolve(name)
        except KeyError as exc:
            raise UsageError(str(exc.args[0])) from None
        if layout is not None and not layout.runs(spec):
            raise UsageError(f"stage {spec.qualified} does not run with role: {layout.role} (a sensor runs "
                             "the producers and the stages that talk to its segment; a hub the others)")
        if spec not in specs:
            specs.append(spec)
    return specs


def main(args: argparse.Namespace, config: Config) -> int:
    """Every failure before the stages run is one line and exit code 2 (StartupError)."""
    layout = config.layout()
    configured = config.stage_specs()
    specs = [layout.spec(configured[spec.name]) for spec in selected_stages(args.stage, layout)]
    with private(config.data_dir):
        # Before anything else: a sink already running on this data_dir is said in one line.
        locks = StageLocks(config.data_dir).take(specs)
        try:
            return _serve(args, config, layout, specs)
        finally:
            locks.release()


def _serve(args: argparse.Namespace, config: Config, layout: Layout, specs: list[StageSpec]) -> int:
    # The dashboard's port first: a taken port is one clear error, before NATS starts.
    web = _web_socket(config) if config.web.enabled and not args.stage and not args.no_web \
        and not args.once and not layout.sensor else None
    embedded: EmbeddedNats | None = None
    try:
        with starting("NATS"):
            # A second `lanscope run --stage X` on the same data_dir joins the first one's server.
            url = configured_url(config.nats, config.data_dir)
            where = "configured" if config.nats.url else "embedded server of another lanscope run"
            if not url:
                # Started here, in the main thread, so the server dies with this process.
                embedded = EmbeddedNats.from_config(config.nats, config.data_dir, role=server_role(config))
                url = embedded.start()
                where = f"embedded, store {embedded.store_dir}"
        print_line(f"NATS:   {url} ({where})")
        if layout.role != "all" or layout.site:
            print_line(f"Site:   {_describe_site(config)}")
        if not layout.sensor:
            print_line(f"DuckDB: {config.duckdb_path}")
        if layout.role != "hub":
            print_line(f"Targets: {_describe_targets(config)}")
        return asyncio.run(_run(config, url, specs, once=args.once, embedded=embedded, web=web))
    finally:
        if web is not None:
            web.close()
        if embedded is not None:
            embedded.stop()


def _web_socket(config: Config) -> socket.socket:
    from lanscope.web.server import bind, url_of

    sock = bind(config)
    print_line(f"Web:    {url_of(sock)} (dashboard)")
    return sock


def _describe_site(config: Config) -> str:
    site = config.site or "(default site)"
    if config.role == "sensor":
        return (f"{site}, sensor of {' '.join(config.sensor.hub)} "
                f"(JetStream domain {site_domain(config.site)})")
    if config.role == "hub":
        sites = ", ".join(sorted(config.hub.sites)) or "none yet (hub.sites)"
        return (f"hub: sensors connect to {config.hub.leaf_host}:{config.hub.leaf_port}; "
                f"sites {sites}")
    return site


def _describe_targets(config: Config) -> str:
    """What the sweeps will cover, so an empty default is said, not silently swept."""
    if config.targets:
        return " ".join(config.targets)
    from lanscope.net.interfaces import default_target_networks

    networks = default_target_networks()
    if not networks:
        log.warning("no targets: no private IPv4 subnet is attached to this machine and the "
                    "config has no `targets:`; the sweeps will find nothing")
        return "none"
    return " ".join(str(n) for n in networks) + " (attached private subnets)"


def build_stages(specs: list[StageSpec], config: Config,
                 ctx: StageContext) -> tuple[list[tuple[StageSpec, Any]], dict[str, str]]:
    """Build each stage from its section; a disabled one is reported and skipped."""
    built: list[tuple[StageSpec, Any]] = []
    skipped: dict[str, str] = {}
    for spec in specs:
        try:
            built.append((spec, spec.instantiate(config.stage_config(spec.name), ctx)))
        except StageDisabled as exc:
            skipped[spec.name] = f"disabled: {exc}"
    return built, skipped


def _start_dashboard(config: Config, url: str, sock: socket.socket | None) -> tuple[Any, asyncio.Task[None]] \
        | None:
    if sock is None:
        return None
    from lanscope.web.server import WebServer

    server = WebServer(config, sock, url=url)
    return server, asyncio.create_task(server.run(), name="web")


async def _stop_dashboard(server: Any, task: asyncio.Task[None]) -> None:
    server.stop()
    try:
        await task
    except Exception as exc:   # the pipeline's shutdown goes on
        log.error("web: the dashboard stopped with %s: %s", type(exc).__name__, exc)


async def _run(config: Config, url: str, specs: list[StageSpec], *, once: bool,
               embedded: EmbeddedNats | None = None, web: socket.socket | None = None) -> int:
    # Each process connects as its role (lanscope.runtime.auth): one stage, its own; several,
    # the pipeline's. Provisioning needs the admin role: held for the embedded server (and for
    # an external one with one identity, or admin.nk in nats.credentials_dir); without it the
    # streams and consumers must exist (`lanscope provision`).
    role = role_for(specs)
    layout = config.layout()
    admin: Bus | None = None
    bus: Bus | None = None
    try:
        with starting():
            uses_claims = any(spec.uses_claims for spec in specs)
            try:
                admin = await connect_admin(config, url, claims=uses_claims)
            except CredentialsError:
                admin = None
            bus = await Bus.connect(client_config(config.nats, config.data_dir, role), url=url, role=role)
            bus.layout = layout
            ctx = config.stage_context(claims=await bus.claims() if uses_claims else None,
                                       dead_letter=dead_letters(bus))
            built, skipped = build_stages(specs, config, ctx)
            if admin is not None:
                # Sinks run here together share their streams' deliveries (topology.Feed): no
                # consumer of their own on those streams, which nothing would read.
                await admin.provision(config.stage_specs().values(),
                                      feeds=sink_feeds((s for s, _ in built), layout.streams))
                await admin.close()
                admin = None
            else:
                log.info("no admin credentials: the streams and consumers must exist (`lanscope provision`)")
            rows = [(s.qualified, "runs", s.description) for s, _ in built]
            rows += [(STAGES[name].qualified, "skipped", why) for name, why in skipped.items()]
            print_table(["stage", "status", "detail"], rows)
            if not built:
                raise LanscopeError("no stage to run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
            runner = Runner(bus, RunnerOptions.from_config(config.nats, once=once))
            for spec, stage in built:
                runner.add(spec, stage, flush_ms=spec.flush_ms)
            await runner.start()              # a sink's store opens here (DuckDB's lock ...)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.stop)
        # The server this process started: restarted if a full disk stopped its store.
        guard = asyncio.create_task(guard_store(embedded, runner.stopping)) if embedded else None
        dashboard = _start_dashboard(config, url, web)
        try:
            await runner.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if dashboard is not None:
                await _stop_dashboard(*dashboard)
            if guard is not None:
                guard.cancel()
                await asyncio.gather(guard, return_exceptions=True)
        return 0
    finally:
        if admin is not None:
            await admin.close()
        if bus is not None:
            await bus.close()
