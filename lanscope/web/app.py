"""The ASGI application: routes, the guard in front of them, templates and static files.

Starlette: a small, well-kept ASGI toolkit (routing, requests/responses,
streaming for server-sent events, static files) without an ORM or a front-end
build; Jinja2 renders every page with autoescape on, so hostnames, banners, VM
names and lease comments (attacker-controlled text) are data, never markup.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lanscope.config import Config
from lanscope.web import format as fmt
from lanscope.web.auth import CSRF_FIELD, SESSION_COOKIE, Guard, same_origin
from lanscope.web.live import Broadcaster, FeedItem
from lanscope.web.source import Source

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
_HEADERS = [(b"content-security-policy", _CSP.encode()), (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]
_OPEN_PATHS = ("/login", "/static/")


@dataclass
class Dashboard:
    """Everything the views share: configuration, data, live events, guard, templates."""

    config: Config
    source: Source
    live: Broadcaster
    guard: Guard
    templates: Environment

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        session = request.cookies.get(SESSION_COOKIE)
        page = self.templates.get_template(name).render(
            request=request, path=request.url.path, csrf=self.guard.csrf_token(session),
            csrf_field=CSRF_FIELD, signed_in=self.guard.required and self.guard.session_ok(session),
            mode=self.source.mode, connected=self.source.bus is not None, **context)
        # X-Lanscope-Data: what answered this page's queries (the pipeline, or the file read-only).
        return Response(page, status_code=status, media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store", "X-Lanscope-Data": self.source.mode})


def templates() -> Environment:
    env = Environment(loader=PackageLoader("lanscope.web", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(ago=fmt.ago, when=fmt.when, value=fmt.value, urlkey=lambda k: quote(str(k), safe=""))
    return env


def render_item(env: Environment) -> Callable[[FeedItem], str]:
    template = env.get_template("_event.html")

    def render(item: FeedItem) -> str:
        return template.render(item=item)

    return render


class Protect:
    """ASGI middleware: security headers on every response, the Host check of an open
    loopback dashboard, sign-in when a secret is set, same-origin browser POSTs."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                # Server-Timing: the server's time to the response's start (the whole page,
                # which is rendered before it is sent); bench.web reads it.
                timing = f"app;dur={(time.perf_counter() - started) * 1000:.2f}".encode()
                message["headers"] = [*message.get("headers", []), *_HEADERS, (b"server-timing", timing)]
            await send(message)

        request = Request(scope)
        refusal = self._refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, request: Request) -> Response | None:
        guard = self.guard
        if not guard.host_allowed(request.headers.get("host")):
            return PlainTextResponse("This dashboard answers only to loopback host names (localhost, "
                                     "127.0.0.1, [::1]); set web.token or web.password to serve others.\n",
                                     status_code=421)
        path = request.url.path
        bearer = guard.bearer_ok(request.headers.get("authorization"))
        request.scope["lanscope.bearer"] = bearer
        if guard.required and not bearer and not path.startswith(_OPEN_PATHS) \
                and not guard.session_ok(request.cookies.get(SESSION_COOKIE)):
            if request.method == "GET" and "text/html" in request.headers.get("accept", "") \
                    and "hx-request" not in request.headers:
                target = path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
            return PlainTextResponse("sign in first (or send Authorization: Bearer <web.token>)\n",
                                     status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if request.method not in ("GET", "HEAD") and not bearer and not same_origin(
                request.headers.get("origin"), request.headers.get("referer"), request.url.scheme,
                request.headers.get("host")):
            return PlainTextResponse("cross-origin request refused\n", status_code=403)
        return None


def create_app(dashboard: Dashboard) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    from lanscope.web import views

    routes = [
        Route("/", views.overview),
        Route("/overview/panels", views.overview_panels),
        Route("/hosts", views.hosts),
        # A host key may hold a '/' (a site's host: paris/02:00:...), so {key:path}; probe first.
        Route("/hosts/{key:path}/probe", views.probe, methods=["POST"]),
        Route("/hosts/{key:path}/probe", views.probe_status, methods=["GET"]),
        Route("/hosts/{key:path}", views.host),
        Route("/live", views.live),
        Route("/events", views.events),
        Route("/findings", views.findings),
        Route("/query", views.query, methods=["GET", "POST"]),
        Route("/login", views.login, methods=["GET", "POST"]),
        Route("/logout", views.logout, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("lanscope.web", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={404: views.not_found})
    app.state.dashboard = dashboard
    return Protect(app, dashboard.guard)
