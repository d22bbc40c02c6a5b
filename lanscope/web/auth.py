"""Who may use the dashboard, and the protection of its forms.

- Bound to a loopback address with no secret configured, anyone on this
  machine may read; the Host header must then name a loopback host, so a web
  page elsewhere cannot reach the dashboard by rebinding its DNS name to
  127.0.0.1. Bound anywhere else, the dashboard refuses to start without
  ``web.token`` or ``web.password``.
- With a secret, every request needs it: ``Authorization: Bearer <token>``
  (API clients, no cookie), or a session cookie from the login form
  (HttpOnly, SameSite=Strict). Sessions live in memory for
  ``web.session_hours``; repeated failed logins from one client are slowed.
- Every POST from a browser (login, logout, query, probe now) must come from
  this origin (Origin, else Referer) and carry the CSRF token of its session
  (a hidden field or the X-CSRF-Token header). A bearer-token request carries
  no ambient credential, so it needs neither.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from urllib.parse import urlsplit

from lanscope.errors import UsageError
from lanscope.web.config import WebConfig, is_loopback

SESSION_COOKIE = "lanscope_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
_LOGIN_FAILURES = 10            # per client within _FAILURE_WINDOW_SECS, then refused for a while
_FAILURE_WINDOW_SECS = 300.0
_MAX_SESSIONS = 10_000


def check_settings(web: WebConfig) -> None:
    """Refuse settings the dashboard must not start with (also those a command line changed
    after the file was checked); the message says what to set."""
    for key, problem in web.check():
        raise UsageError(f"web.{key}: {problem}")


class Guard:
    """Sessions, bearer tokens and CSRF tokens of one dashboard process."""

    def __init__(self, web: WebConfig) -> None:
        self._secrets = [str(s).encode() for s in (web.token, web.password) if s]
        self._token = str(web.token).encode() if web.token else None
        self.required = bool(self._secrets)
        self.session_secs = web.session_hours * 3600
        self._key = secrets.token_bytes(32)          # per process: a restart ends every session
        self._sessions: dict[str, float] = {}        # session id -> expiry (time.time)
        self._failures: dict[str, deque[float]] = {}

    # ------------------------------------------------------------------ who

    def bearer_ok(self, authorization: str | None) -> bool:
        if self._token is None or not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self._token)

    def session_ok(self, session_id: str | None) -> bool:
        if not session_id:
            return False
        expiry = self._sessions.get(session_id)
        if expiry is None:
            return False
        if expiry < time.time():
            del self._sessions[session_id]
            return False
        return True

    def blocked(self, client: str) -> bool:
        """Too many failed logins from this client lately."""
        recent = self._failures.get(client)
        now = time.time()
        while recent and recent[0] < now - _FAILURE_WINDOW_SECS:
            recent.popleft()
        return recent is not None and len(recent) >= _LOGIN_FAILURES

    def login(self, secret: str, client: str) -> str | None:
        """A new session id if ``secret`` is the token or the password; None otherwise."""
        given = secret.encode()
        if any(hmac.compare_digest(given, s) for s in self._secrets):
            self._failures.pop(client, None)
            self._expire()
            session_id = secrets.token_urlsafe(32)
            self._sessions[session_id] = time.time() + self.session_secs
            return session_id
        self._failures.setdefault(client, deque()).append(time.time())
        return None

    def logout(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def _expire(self) -> None:
        now = time.time()
        for sid in [s for s, until in self._sessions.items() if until < now]:
            del self._sessions[sid]
        while len(self._sessions) >= _MAX_SESSIONS:      # oldest first (dicts keep insertion order)
            del self._sessions[next(iter(self._sessions))]

    # ------------------------------------------------------------------ CSRF

    def csrf_token(self, session_id: str | None) -> str:
        """The token forms of this session carry (anonymous on an open loopback dashboard)."""
        binding = (session_id or "anonymous").encode()
        return hmac.new(self._key, b"csrf:" + binding, hashlib.sha256).hexdigest()

    def csrf_ok(self, session_id: str | None, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session_id), token or "")

    # ------------------------------------------------------------------ where from

    def host_allowed(self, host_header: str | None) -> bool:
        """Without a secret, only loopback host names (no DNS rebinding onto 127.0.0.1)."""
        if self.required:
            return True
        host = _host_only(host_header or "")
        return is_loopback(host)


def _host_only(host: str) -> str:
    """``[::1]:8080`` -> ``::1``; ``localhost:8080`` -> ``localhost``."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def same_origin(origin: str | None, referer: str | None, scheme: str, host: str | None) -> bool:
    """The request came from a page of this dashboard (Origin, else Referer, names it)."""
    if not host:
        return False
    own = f"{scheme}://{host}".lower()
    if origin and origin != "null":
        return origin.lower().rstrip("/") == own
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}".lower() == own
    return False
