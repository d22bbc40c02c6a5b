"""Issue 20, case 3: a full disk loses nothing that was acknowledged, and the pipeline resumes
by itself.

`lanscope run --stage host_state` with its data_dir (embedded NATS store and
DuckDB) on a 64 MiB tmpfs of the test's own; nats.max_bytes is the default
1 GiB, which the store cannot hold: start-up fits the streams and says so.
Sightings are published and stored by NATS while host_state is frozen
(SIGSTOP); the disk is filled to the last byte; host_state thaws and cannot
write DuckDB; more sightings are published into the full disk (NATS cannot
store them: they are not acknowledged, the publisher retries). Then the file
is deleted. Without restarting anything by hand, every sighting that was
acknowledged to the publisher ends up in DuckDB, none in a DLQ, and the
lanscope process is the one that started.

Before: host_state failed with `TransactionException: cannot rollback - no
transaction is active`, nothing happened for 90 s after the space came back,
and after a restart the events were neither in DuckDB nor in a DLQ; with the
default 1 GiB stream size start-up ended in a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from lanscope.runtime.auth import ADMIN, QUERY
from lanscope.runtime.bus import Bus
from schemas import HostSeen
from schemas import subjects as subj
from tests.e2e.running import Running
from tests.factories import host_seen
from tests.runtime.stages import eventually, subject_count

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (root)")]
DISK_MIB = 64


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m,mode=0700", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> int:
    """Write zeros to ``path`` until the disk is full; bytes written."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as out:
        with contextlib.suppress(OSError):
            while True:
                written += out.write(chunk)
        with contextlib.suppress(OSError):   # the last few blocks
            while out.write(b"\0" * 4096):
                written += 4096
    return written


def sightings(first: int, count: int) -> list[HostSeen]:
    return [host_seen(f"198.18.{i // 250}.{i % 250 + 1}", f"02:00:00:00:{i // 256:02x}:{i % 256:02x}")
            for i in range(first, first + count)]


async def hosts_stored(query: Bus) -> int | None:
    try:
        reply = await query.nc.request(subj.QUERY, b'{"sql": "SELECT count(*) FROM hosts"}', timeout=3)
    except Exception:
        return None
    tree = msgspec.json.decode(reply.data)
    return None if "error" in tree else int(tree["rows"][0][0])


async def test_a_full_disk_loses_no_acknowledged_event_and_the_pipeline_resumes_by_itself(
        disk: Path, tmp_path: Path) -> None:
    data_dir = disk / "var"
    config = tmp_path / "config.yaml"
    config.write_text(f"""
data_dir: {data_dir}
sinks:
  host_state: {{flush_ms: 100, compact_secs: 1}}
""")
    running = Running(config, data_dir, ("host_state",), tmp_path / "run.log").start()
    publisher = admin = query = None
    try:
        running.wait_serving()
        assert "nats.max_bytes asks 1.0 GiB" in running.text()        # fitted, said, no traceback
        publisher = await running.connect("arp_sweep")
        admin = await running.connect(ADMIN)
        query = await running.connect(QUERY)
        fitted = (await admin.js.stream_info(subj.FACTS.name)).config.max_bytes

        first = sightings(0, 10)
        await publisher.publish_events(first)
        await eventually(lambda: _equals(hosts_stored(query), 10), timeout=30, what="10 hosts stored",
                         context=running.tail)

        assert running.process is not None
        os.kill(running.process.pid, signal.SIGSTOP)        # host_state freezes; NATS goes on
        frozen = sightings(10, 20)
        acks = await publisher.publish_events(frozen)       # stored and acknowledged by NATS
        filler = data_dir / "filler"
        filled = fill(filler)
        os.kill(running.process.pid, signal.SIGCONT)        # ... and cannot write them to DuckDB
        await eventually(lambda: "cannot write (" in running.text(), timeout=30,
                         what="host_state holding its batch", context=running.tail)

        late = sightings(30, 10)                            # published into the full disk
        publishing = asyncio.create_task(publisher.publish_events(late))
        await asyncio.sleep(3)
        assert not publishing.done()                        # not acknowledged while the disk is full
        held_since = time.monotonic()
        filler.unlink()
        late_acks = await asyncio.wait_for(publishing, 90)
        await eventually(lambda: _equals(hosts_stored(query), 40), timeout=90,
                         what="every acknowledged sighting in DuckDB", context=running.tail)
        resumed_after = time.monotonic() - held_since
        dead = await subject_count(admin, subj.DEAD_LETTERS.name, "lanscope.dlq.>")
        log = running.text()
        print(f"\ncase 3: streams fitted to {fitted / (1 << 20):.1f} MiB each on a {DISK_MIB} MiB disk; "
              f"disk filled with {filled / (1 << 20):.1f} MiB; {10 + len(acks) + len(late_acks)} "
              f"acknowledged sightings, {await hosts_stored(query)} in DuckDB, {dead} dead-lettered, "
              f"resumed {resumed_after:.1f}s after space returned, lanscope pid {running.process.pid} "
              f"still running: {running.process.poll() is None}")
        assert dead == 0
        assert running.process.poll() is None                # never restarted
        assert log.count("cannot write (") == 1, log         # said once
        assert "storage is back: resumed" in log
        assert "Traceback" not in log and "cannot rollback" not in log
    finally:
        for bus in (publisher, admin, query):
            if bus is not None:
                await bus.close()
        running.stop()


async def _equals(count: object, wanted: int) -> bool:
    return await count == wanted  # type: ignore[misc]
