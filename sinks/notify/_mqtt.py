"""MQTT targets: notifications on ``<topic_prefix>/notification`` and, for Home Assistant,
discovery configs, retained host states and counts (homeassistant.py says which).

One connection per target, kept by a task that reconnects with backoff. On every
(re)connect, and whenever Home Assistant announces itself on
``<discovery_prefix>/status``, the whole state is published again (discovery
configs, every host's state and attributes, the counts): states are retained and
idempotent, so a restart or an outage leaves nothing stale. Between those, only
what changed goes out. A notification is published at QoS 1 and counts as sent
once the broker acknowledged it. The availability topic is ``online`` while
connected and the broker's last will sets it ``offline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

import aiomqtt

from lanscope.net.tls import ssl_context

from . import homeassistant as ha
from .dispatch import DeliveryError
from .model import HostFacts, Note, OpenFinding
from .targets import MqttTarget

log = logging.getLogger(__name__)
QOS = 1
_BACKOFF_MAX_SECS = 30.0


class View:
    """What the sink knows that an MQTT target mirrors: hosts, open findings, who is known."""

    def __init__(self, hosts: Callable[[], dict[str, HostFacts]],
                 findings: Callable[[], dict[str, OpenFinding]],
                 known: Callable[[HostFacts], bool]) -> None:
        self.hosts = hosts
        self.findings = findings
        self.known = known


class MqttSender:
    """``view`` None: notifications only (``lanscope notify test``): no availability, no
    discovery, no states, which belong to the running stage."""

    kind = "mqtt"

    def __init__(self, name: str, target: MqttTarget, view: View | None) -> None:
        self.name = name
        self.target = target
        self.view = view
        self.topics = ha.Topics(target.topic_prefix, target.discovery_prefix)
        self.client_id = target.client_id or f"lanscope-notify-{name}-{socket.gethostname()}"[:64]
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._dirty: set[str] = set()          # host keys whose state changed
        self._dirty_stats = False
        self._wake = asyncio.Event()
        self._published: dict[str, bytes] = {}  # discovery topic -> the config published there
        self._task: asyncio.Task[None] | None = None
        self.last_error = "not connected yet"

    # ------------------------------------------------------------------ the stage's side

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_connected(), name=f"notify:{self.name}:mqtt")

    def changed(self, host_keys: set[str]) -> None:
        """These hosts' states (and the counts) are to be published."""
        if self.view is None:
            return
        self._dirty |= host_keys
        self._dirty_stats = True
        self._wake.set()

    async def send(self, note: Note) -> None:
        client = await self._connection()
        try:
            await client.publish(self.topics.notification, ha.notification(note), qos=QOS,
                                 timeout=self.target.connect_timeout_secs)
        except aiomqtt.MqttError as exc:
            raise DeliveryError(f"MQTT {self._where}: {exc}") from None

    async def close(self) -> None:
        client = self._client
        if client is not None and self._connected.is_set() and self.view is not None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await client.publish(self.topics.status, b"offline", qos=QOS, retain=True, timeout=3)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # ------------------------------------------------------------------ the connection

    @property
    def _view(self) -> View:
        assert self.view is not None
        return self.view

    @property
    def _where(self) -> str:
        return f"{self.target.host}:{self.target.port}"

    async def _connection(self) -> aiomqtt.Client:
        try:
            await asyncio.wait_for(self._connected.wait(), self.target.connect_timeout_secs)
        except TimeoutError:
            raise DeliveryError(f"MQTT {self._where}: not connected ({self.last_error})") from None
        assert self._client is not None
        return self._client

    def _client_for(self) -> aiomqtt.Client:
        t = self.target
        return aiomqtt.Client(
            t.host, t.port, username=t.user, password=str(t.password) if t.password else None,
            identifier=self.client_id, keepalive=t.keepalive_secs, timeout=float(t.connect_timeout_secs),
            will=aiomqtt.Will(self.topics.status, b"offline", qos=QOS, retain=True) if self.view else None,
            tls_context=ssl_context(t.tls) if t.tls is not None else None)

    async def _keep_connected(self) -> None:
        delay = 1.0
        while True:
            try:
                async with self._client_for() as client:
                    self._client = client
                    delay = 1.0
                    await self._session(client)
            except aiomqtt.MqttError as exc:
                if self._connected.is_set() or self.last_error == "not connected yet":
                    log.warning("notify: MQTT %s (target %s): %s; reconnecting", self._where, self.name, exc)
                self.last_error = str(exc)
            except Exception as exc:   # not the connection's: say so, and start over all the same
                log.error("notify: MQTT %s (target %s): %s: %s; reconnecting", self._where, self.name,
                          type(exc).__name__, exc, exc_info=True)
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                self._connected.clear()
                self._client = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX_SECS)

    async def _session(self, client: aiomqtt.Client) -> None:
        if self.view is None:
            self._connected.set()
            await asyncio.Event().wait()     # until closed: notifications only
        await client.publish(self.topics.status, b"online", qos=QOS, retain=True)
        if self.target.discovery:
            await client.subscribe(self.topics.birth, qos=QOS)
        self._published.clear()
        self._connected.set()
        log.info("notify: MQTT %s connected (target %s)", self._where, self.name)
        listener = asyncio.create_task(self._listen(client))
        try:
            await self._publish_all(client)
            while True:
                waker = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({waker, listener}, return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                if listener.done():
                    listener.result()      # the connection failed under it: raises
                self._wake.clear()
                await self._publish_dirty(client)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await listener

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if message.topic.matches(self.topics.birth) and message.payload == b"online":
                log.info("notify: Home Assistant came online; publishing discovery again (target %s)",
                         self.name)
                self._published.clear()
                self._dirty |= set(self._view.hosts())
                self._dirty_stats = True
                self._wake.set()
        raise aiomqtt.MqttError("the message stream ended")

    async def _publish_all(self, client: aiomqtt.Client) -> None:
        if self.target.discovery:
            for topic, payload in ha.hub_configs(self.topics):
                await self._publish(client, topic, payload)
        self._dirty |= set(self._view.hosts())
        self._dirty_stats = True
        await self._publish_dirty(client)

    async def _publish_dirty(self, client: aiomqtt.Client) -> None:
        hosts = self._view.hosts()
        keys, self._dirty = self._dirty, set()
        try:
            for key in sorted(keys):
                host = hosts.get(key)
                if host is not None and self._tracked(host):
                    await self._publish_host(client, host)
            if self._dirty_stats:
                self._dirty_stats = False
                findings = self._view.findings()
                await self._publish(client, self.topics.stats, ha.stats(hosts, findings))
                await self._publish(client, self.topics.findings, ha.findings_attributes(findings))
        except BaseException:
            self._dirty |= keys        # not all of them went out: again after the reconnect
            self._dirty_stats = True
            raise

    def _tracked(self, host: HostFacts) -> bool:
        mode = self.target.trackers
        return mode == "all" or (mode == "known" and self._view.known(host))

    async def _publish_host(self, client: aiomqtt.Client, host: HostFacts) -> None:
        if self.target.discovery:
            topic, config = ha.tracker(self.topics, host)
            if self._published.get(topic) != config:
                await self._publish(client, topic, config)
                self._published[topic] = config
        await self._publish(client, self.topics.host_attributes(host.host_key), ha.tracker_attributes(host))
        await self._publish(client, self.topics.host_state(host.host_key), ha.tracker_state(host))

    @staticmethod
    async def _publish(client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        await client.publish(topic, payload, qos=QOS, retain=True)
