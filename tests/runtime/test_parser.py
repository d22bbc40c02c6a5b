"""The fast path's protocol parser against nats-py's own, on the same bytes cut every way."""

from __future__ import annotations

import random
from typing import Any

import nats.errors
import pytest
from nats.protocol.parser import Parser

from lanscope.runtime.fastpath import FastParser

HEADER = b"NATS/1.0\r\nNats-Msg-Id: abc\r\n\r\n"
STATUS = b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 3\r\n\r\n"
STREAM = b"".join([
    b"INFO {\"server_id\":\"x\",\"max_payload\":1048576}\r\n",
    b"HMSG _INBOX.a 5 $JS.ACK.S.c.1.1.1.1.0 %d %d\r\n%bone\r\n" % (len(HEADER), len(HEADER) + 3, HEADER),
    b"MSG greet 2 4\r\nhi\r\n\r\n",                    # a payload holding CRLF
    b"PING\r\n",
    b"MSG _INBOX.b  7  reply.to  0\r\n\r\n",           # extra blanks, empty payload
    b"+OK\r\n",
    b"HMSG _INBOX.a 5 %d %d\r\n%b\r\n" % (len(STATUS), len(STATUS), STATUS),
    b"PONG\r\n",
    b"HMSG _INBOX.a 5 $JS.ACK.S.c.1.2.2.1.0 %d %d\r\n%b%b\r\n" % (
        len(HEADER), len(HEADER) + 40_000, HEADER, b"x" * 40_000),
    b"-ERR 'Stale Connection'\r\n",
    b"MSG a.b 3 3\r\nend\r\n",
])


class Recorder:
    """The client side of a parser: records every call; sid 5 is delivered directly;
    the parser is reset when a message makes the call count `reset_after`."""

    def __init__(self, direct: bool = False, reset_after: int | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.direct = direct
        self.reset_after = reset_after
        self.parser: Parser | None = None

    def _deliver(self, sid: int, subject: bytes, reply: bytes, data: bytes,
                 headers: bytes | None) -> bool:
        if not (self.direct and sid == 5 and reply):
            return False
        self.calls.append(("msg", sid, bytes(subject), bytes(reply), bytes(data), headers))
        return True

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes,
                           headers: bytes | None) -> None:
        self.calls.append(("msg", sid, bytes(subject), bytes(reply), bytes(data), headers))
        if self.reset_after is not None and len(self.calls) == self.reset_after:
            assert self.parser is not None
            self.parser.reset()

    async def _process_ping(self) -> None:
        self.calls.append(("ping",))

    async def _process_pong(self) -> None:
        self.calls.append(("pong",))

    async def _process_info(self, info: dict[str, Any]) -> None:
        self.calls.append(("info", info))

    async def _process_err(self, err: str) -> None:
        self.calls.append(("err", err))


async def feed(kind: type[Parser], chunks: list[bytes], **options: Any) -> Recorder:
    nc = Recorder(**options)
    parser = nc.parser = kind(nc)
    for chunk in chunks:
        await parser.parse(chunk)
    return nc


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, at = [], 0
    for size in sizes:
        chunks.append(data[at:at + size])
        at += size
    return [*chunks, data[at:]]


async def test_every_message_and_line_comes_out_as_nats_py_parses_it() -> None:
    expected = (await feed(Parser, [STREAM])).calls
    assert [c[0] for c in expected] == [
        "info", "msg", "msg", "ping", "msg", "msg", "pong", "msg", "err", "msg"]
    assert expected[2] == ("msg", 2, b"greet", b"", b"hi\r\n", None)
    assert (await feed(FastParser, [STREAM])).calls == expected
    assert (await feed(FastParser, [STREAM], direct=True)).calls == expected


async def test_reads_cut_anywhere_change_nothing() -> None:
    expected = (await feed(Parser, [STREAM])).calls
    head = len(STREAM) - 40_100
    for at in range(1, head):              # every cut in the small messages, one byte at a time
        assert (await feed(FastParser, [STREAM[:at], STREAM[at:]], direct=True)).calls == expected, at
    assert (await feed(FastParser, [bytes([b]) for b in STREAM])).calls == expected
    rng = random.Random(7)
    for _ in range(200):
        sizes = [rng.randrange(1, 5000) for _ in range(rng.randrange(1, 30))]
        assert (await feed(FastParser, cut(STREAM, sizes), direct=True)).calls == expected


async def test_a_reset_while_a_message_is_handled_drops_the_rest_as_nats_py_does() -> None:
    for after in (2, 3, 5, 6):            # calls: the INFO, then messages (and lines)
        expected = (await feed(Parser, [STREAM], reset_after=after)).calls
        assert len(expected) == after
        assert (await feed(FastParser, [STREAM], reset_after=after)).calls == expected


@pytest.mark.parametrize("line", [b"MSG a\r\n", b"HMSG a 1 x 5\r\n", b"MSG a b 3\r\n",
                                  b"MSG a 1 r s t 3\r\n"])
async def test_a_malformed_message_line_is_a_protocol_error(line: bytes) -> None:
    with pytest.raises(nats.errors.ProtocolError):
        await feed(FastParser, [line + b"abc\r\n"])


async def test_a_line_nats_py_rejects_leaves_the_buffer_as_nats_py_does() -> None:
    for kind in (Parser, FastParser):
        parser = kind(Recorder())
        with pytest.raises(nats.errors.ProtocolError):
            await parser.parse(b"MSG a 1 2\r\nhi\r\nBOGUS\r\nPING\r\n")
        assert parser.buf == bytearray(b"BOGUS\r\nPING\r\n"), kind
