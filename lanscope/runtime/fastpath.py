"""nats-py's receive and ack paths, made cheap for lanscope's pull consumers and PubAcks.

nats-py spends ~10 us per received message (the header block parsed by a
Python loop per line, a Msg built, queued, and handed to the subscription's
callback by a task): a quarter of what the host_state sink spends per event.
The data messages of a pull consumer's inbox, and PubAcks, need none of it but
the Msg. ``FastClient`` is nats-py's client plus three shortcuts:

- direct delivery: the data messages of a subscription registered with
  ``deliver_directly()`` go straight from the read loop to a plain function,
  as a ``Delivered`` (a Msg whose header block is parsed on first use);
- ``FastParser``: the read loop's protocol parser, which splits a MSG/HMSG
  control line itself instead of trying two regular expressions (and hands
  every other line to nats-py's parser, unchanged);
- ``ack_all()``: a batch's acks as one write instead of one ``Msg.ack()``
  (a flush future per call) each.

It reaches into nats-py's private names, all listed here and checked by
``missing_internals()`` (which tests/runtime/test_fastpath.py requires to be
empty, so a nats-py that changes them fails the suite instead of silently
slowing down):

- ``nats.aio.client.Client._process_msg(self, sid, subject, reply, data, headers)``:
  overridden (messages the direct path does not take go on to it);
- ``Client._ps``: the read loop's parser, replaced by a ``FastParser``;
- ``Client._send_command(cmd)``, ``Client._flush_pending()``, ``Client._flush_queue``:
  the raw acks are queued and flushed as ``publish()`` does it;
- ``nats.protocol.parser.Parser``: its attributes ``buf``, ``state``, ``nc``,
  its ``reset()``/``parse()`` and the state ``AWAITING_CONTROL_LINE``;
- ``nats.aio.subscription.Subscription._id``: the sid the read loop routes by;
- ``nats.aio.msg.Msg``: the dataclass fields ``_client``, ``_metadata``,
  ``_ackd``, ``_sid`` (set by ``Delivered`` and by ``ack_all``).

pyproject.toml pins the nats-py releases these were verified against (2.10.0
to 2.16.0: the runtime tests pass with each). With
any other nats-py in which one of them is missing or different, the client is
nats-py's own (every message through the subscription callback, ``Msg.ack()``
per message: slower, same behaviour) and ``Bus.connect`` logs one warning
naming what is missing.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from importlib.metadata import version

import nats.errors
import nats.protocol.parser
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.protocol.parser import Parser

log = logging.getLogger(__name__)

MSG_ID = "Nats-Msg-Id"
_PROCESS_MSG = ["self", "sid", "subject", "reply", "data", "headers"]
_STATUS_AT = len(b"NATS/1.0")    # a status reply's header line: "NATS/1.0 408 Request Timeout"


def _parameters(function: object) -> list[str] | None:
    try:
        return list(inspect.signature(function).parameters)   # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def missing_internals() -> list[str]:
    """The nats-py internals the fast path needs that this nats-py lacks or has otherwise."""
    missing: list[str] = []
    process = getattr(NatsClient, "_process_msg", None)
    if process is None or _parameters(process) != _PROCESS_MSG:
        missing.append(f"Client._process_msg({', '.join(_PROCESS_MSG[1:])})")
    send = getattr(NatsClient, "_send_command", None)
    if send is None or (_parameters(send) or [])[:2] != ["self", "cmd"]:
        missing.append("Client._send_command(cmd)")
    flush = getattr(NatsClient, "_flush_pending", None)
    if flush is None or any(p.default is inspect.Parameter.empty
                            for p in list(inspect.signature(flush).parameters.values())[1:]):
        missing.append("Client._flush_pending()")
    try:
        client = NatsClient()
    except Exception as exc:           # a constructor that wants arguments: nothing to patch
        return [*missing, f"Client() ({type(exc).__name__})"]
    for name in ("_ps", "_flush_queue", "stats"):
        if not hasattr(client, name):
            missing.append(f"Client.{name}")
    if type(getattr(client, "_ps", None)) is not Parser:
        missing.append("Client._ps as a nats.protocol.parser.Parser")
    if not hasattr(nats.protocol.parser, "AWAITING_CONTROL_LINE"):
        missing.append("nats.protocol.parser.AWAITING_CONTROL_LINE")
    parser = Parser(None)
    for name in ("buf", "state", "nc", "reset", "parse"):
        if not hasattr(parser, name):
            missing.append(f"Parser.{name}")
    if not isinstance(getattr(parser, "buf", None), bytearray):
        missing.append("Parser.buf as a bytearray")
    try:
        sid = Subscription(client, id=7, subject="x")._id
    except Exception:
        sid = None
    if sid != 7:
        missing.append("Subscription._id")
    fields = getattr(Msg, "__dataclass_fields__", {})
    for name in ("_client", "subject", "reply", "data", "headers", "_metadata", "_ackd", "_sid"):
        if name not in fields:
            missing.append(f"Msg.{name}")
    return missing


MISSING = missing_internals()     # empty where the fast path fits this nats-py
_warned = False


def warn_if_unfit() -> None:
    """Say once per process that this nats-py does not fit the fast path, and what is missing."""
    global _warned
    if MISSING and not _warned:
        _warned = True
        log.warning("nats-py %s lacks what lanscope's fast receive path uses (%s): using its "
                    "public API instead, which is slower; install the nats-py range pyproject.toml "
                    "pins", version("nats-py"), "; ".join(MISSING))


class FastClient(NatsClient):
    """nats-py's client with direct delivery, FastParser and ack_all (see the module).

    ``fast=False`` (or a nats-py the fast path does not fit: ``MISSING``) keeps
    nats-py's own behaviour throughout, through its public API."""

    def __init__(self, *, fast: bool = True) -> None:
        super().__init__()
        self.fast = fast and not MISSING
        self._direct: dict[int, tuple[Callable[[Msg], None], bool]] = {}
        if self.fast:
            self._ps = FastParser(self)

    def deliver_directly(self, sub: Subscription, handler: Callable[[Msg], None], *,
                         replies_only: bool = True) -> None:
        """Hand ``sub``'s data messages to ``handler`` (without the fast path they keep
        going to the subscription's callback). ``replies_only``: only messages with a
        reply subject (a pull consumer's), not the status replies of its requests."""
        if self.fast:
            self._direct[sub._id] = (handler, replies_only)

    def stop_delivering(self, sub: Subscription) -> None:
        if self.fast:
            self._direct.pop(sub._id, None)

    async def ack_all(self, msgs: Sequence[Msg]) -> None:
        """Ack every message (each its own ack, as Msg.ack() sends it), in one write."""
        if not self.fast or not self.is_connected:
            for msg in msgs:              # buffering while reconnecting: nats-py's rules
                await msg.ack()
            return
        await self._send_command(b"".join(b"PUB %b 0\r\n\r\n" % m.reply.encode() for m in msgs if m.reply))
        if self._flush_queue is not None and self._flush_queue.empty():   # as publish() kicks its flusher
            await self._flush_pending()
        for msg in msgs:
            msg._ackd = True

    def _deliver(self, sid: int, subject: bytes, reply: bytes, data: bytes,
                 headers: bytes | None) -> bool:
        """Hand a data message to its direct handler; False: it takes the usual way."""
        direct = self._direct.get(sid)
        if direct is None or (direct[1] and not reply) \
                or (headers and headers[_STATUS_AT:_STATUS_AT + 1] == b" "):
            return False
        handler = direct[0]
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        handler(Delivered(self, subject.decode(), reply.decode(), data, headers, sid))
        return True

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes,
                           headers: bytes) -> None:
        if not self._deliver(sid, subject, reply, data, headers):
            await super()._process_msg(sid, subject, reply, data, headers)


class Delivered(Msg):
    """A message for a direct handler: a Msg built without the dataclass's keyword
    __init__, its header block parsed on first use (most handlers never look at it):
    ~0.2 us per message instead of ~1.3 for a Msg with its headers parsed."""

    def __init__(self, client: NatsClient, subject: str, reply: str, data: bytes,
                 block: bytes | None, sid: int) -> None:
        self._client = client
        self.subject = subject
        self.reply = reply
        self.data = data
        self._block = block
        self._parsed: dict[str, str] | None = None
        self._metadata = None
        self._ackd = False
        self._sid = sid

    @property
    def headers(self) -> dict[str, str] | None:
        if self._block is not None:
            self._parsed, self._block = parse_headers(self._block), None
        return self._parsed

    @headers.setter
    def headers(self, value: dict[str, str] | None) -> None:
        self._parsed, self._block = value, None


class FastParser(Parser):
    """nats-py's protocol parser with a fast path for messages (MSG, HMSG).

    nats-py tries up to two regular expressions per message and cuts the buffer
    after each (~2.5 us); this splits the control line and slices one immutable
    copy of what was read (~1.2 us), and hands a message straight to the
    client's direct delivery where that takes it. Any other line (INFO, PING,
    -ERR ...) goes to nats-py's parser on its own, so nats-py's handling of
    those is unchanged; a reset (reconnect) while a message is handled ends
    the pass."""

    def reset(self) -> None:
        super().reset()
        self._awaiting = 0             # bytes the message at the front needs in all

    async def parse(self, data: bytes = b"") -> None:
        buf = self.buf
        buf.extend(data)
        if self.state != nats.protocol.parser.AWAITING_CONTROL_LINE:
            await super().parse()      # not left so by this class; nats-py's way
            return
        if len(buf) < self._awaiting:  # a large message still arriving: no copy per read
            return
        self._awaiting = 0
        nc = self.nc
        view = bytes(buf)
        pos = 0
        try:
            while (eol := view.find(b"\r\n", pos)) >= 0:
                if view.startswith(b"HMSG ", pos):
                    args = view[pos + 5:eol].split()
                    headed = True
                elif view.startswith(b"MSG ", pos):
                    args = view[pos + 4:eol].split()
                    headed = False
                else:
                    await self._one_line(view[pos:eol + 2])
                    if self.buf is not buf:
                        return
                    pos = eol + 2
                    continue
                # subject sid [reply] [header size] total size
                named = len(args) - headed
                try:
                    if named not in (3, 4):
                        raise ValueError
                    sid, header_size = int(args[1]), int(args[-2]) if headed else 0
                    start = eol + 2
                    end = start + int(args[-1])
                except ValueError:
                    raise nats.errors.ProtocolError("nats: malformed MSG") from None
                if end + 2 > len(view):
                    self._awaiting = end + 2 - pos   # the rest of it is still on its way
                    break
                subject, reply = args[0], args[2] if named == 4 else b""
                headers = view[start:start + header_size] if header_size else None
                payload = view[start + header_size:end]
                pos = end + 2
                if not nc._deliver(sid, subject, reply, payload, headers):
                    await nc._process_msg(sid, subject, reply, payload, headers)
                    if self.buf is not buf:
                        return
        finally:
            if pos and self.buf is buf:
                del buf[:pos]

    async def _one_line(self, line: bytes) -> None:
        """nats-py's parser on this one control line (no payload follows any of them)."""
        own, self.buf = self.buf, bytearray(line)
        alone = self.buf
        try:
            await super().parse()
        finally:                       # also when nats-py rejects the line (ProtocolError)
            if self.buf is alone:      # else a reset replaced the buffer: keep the new one
                self.buf = own


_ID_BLOCK = b"NATS/1.0\r\n" + MSG_ID.encode() + b":"


def parse_headers(block: bytes) -> dict[str, str]:
    """A message's header block ("NATS/1.0\r\nName: value\r\n...\r\n\r\n") as a dict."""
    if block.startswith(_ID_BLOCK) and block.count(b"\r\n") == 3 and block.endswith(b"\r\n\r\n"):
        # What every lanscope message carries, alone: a third of the general loop's cost.
        return {MSG_ID: block[len(_ID_BLOCK):-4].strip().decode("utf-8", "replace")}
    found: dict[str, str] = {}
    for line in block.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            found[name.strip().decode("ascii", "replace")] = value.strip().decode("utf-8", "replace")
    return found
