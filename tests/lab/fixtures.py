"""pytest plugin: one lab per test session, with pytest itself inside it.

Load it with `pytest_plugins = ["tests.lab.fixtures"]` in tests/conftest.py.

- Marker `lab`: the test needs the lab. Tests that use the `lab` fixture get
  the marker automatically.
- After collection, if any selected test is marked `lab` (or
  LANSCOPE_LAB=always), the lab comes up once and the pytest process's main
  thread moves into the scanner namespace, so everything started later
  (threads, nats-server, `lanscope` CLI subprocesses) runs there.
- At session end the lab is torn down, unless LANSCOPE_LAB_KEEP=1 (then the
  next run reuses it if it is healthy).
- LANSCOPE_LAB=skip: the lab is not touched; `lab` tests are skipped.
- Not root: `lab` tests are skipped with the reason.
"""

from __future__ import annotations

import os
import signal
import types

import pytest

from .lab import Lab

_LAB_KEY = pytest.StashKey[Lab]()
_ERROR_KEY = pytest.StashKey[str]()
_SKIP_KEY = pytest.StashKey[str]()


def _skip_reason() -> str | None:
    if os.environ.get("LANSCOPE_LAB", "") == "skip":
        return "LANSCOPE_LAB=skip"
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces); run the tests as root"
    if not os.path.exists("/proc/self/ns/net"):
        return "no network namespace support"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: needs the virtual LAN of tests/lab (root, network namespaces)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)
    reason = _skip_reason()
    if reason is None:
        return
    config.stash[_SKIP_KEY] = reason
    for item in items:
        if item.get_closest_marker("lab"):
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Bring the lab up before the first test, in the main thread."""
    config = session.config
    if _SKIP_KEY in config.stash:
        return
    wanted = any(item.get_closest_marker("lab") for item in session.items)
    if not wanted and os.environ.get("LANSCOPE_LAB", "") != "always":
        return
    lab = Lab.from_env()
    config.stash[_LAB_KEY] = lab
    try:
        lab.up()
    except Exception as exc:  # reported by every test that asks for the lab
        config.stash[_ERROR_KEY] = f"lab failed to come up: {exc}"
        return
    lab.enter_scanner()
    _terminate_like_ctrl_c()


def _terminate_like_ctrl_c() -> None:
    """Let SIGTERM (CI timeouts, `kill`) unwind like Ctrl-C, so teardown runs."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def interrupt(signum: int, frame: types.FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Tear the lab down (runs on failures and Ctrl-C too)."""
    lab = session.config.stash.get(_LAB_KEY, None)
    if lab is None:
        return
    del session.config.stash[_LAB_KEY]
    lab.leave_scanner()
    if os.environ.get("LANSCOPE_LAB_KEEP", "") != "1":
        lab.down()


@pytest.fixture(scope="session")
def lab(pytestconfig: pytest.Config) -> Lab:
    """The running lab; the test process is already inside its scanner namespace."""
    if _SKIP_KEY in pytestconfig.stash:
        pytest.skip(pytestconfig.stash[_SKIP_KEY])
    if _ERROR_KEY in pytestconfig.stash:
        pytest.fail(pytestconfig.stash[_ERROR_KEY], pytrace=False)
    if _LAB_KEY not in pytestconfig.stash:
        pytest.fail("the lab was not started: mark the test with @pytest.mark.lab", pytrace=False)
    return pytestconfig.stash[_LAB_KEY]
