"""Sign-in, bearer tokens, CSRF, DNS-rebinding defence, and refusing to start exposed."""

from __future__ import annotations

import inspect
import re
import socket
from pathlib import Path

import httpx
import msgspec
import pytest
import uvicorn

from lanscope.errors import UsageError
from lanscope.web.server import bind
from tests.web.conftest import serving, web_config

TOKEN = "s3cret-token-for-tests"
PASSWORD = "correct horse battery staple"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def test_an_exposed_address_without_a_secret_refuses_to_start(tmp_path: Path, store_file: Path) -> None:
    # config.yaml saying so is refused when it is read (tests/test_config.py); `lanscope web
    # --address` changes the address after that, and the server checks again.
    config = web_config(tmp_path, store_file)
    exposed = msgspec.structs.replace(config, web=msgspec.structs.replace(config.web, address="0.0.0.0"))
    with pytest.raises(UsageError, match=r"web.address: 0.0.0.0 is not a loopback address.*web.token or "
                                         r"web.password"):
        bind(exposed)


def test_a_taken_port_is_one_clear_error(tmp_path: Path, store_file: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=rf"web: 127.0.0.1:{port} is already in use.*set web.port"):
            bind(web_config(tmp_path, store_file, port=port))
    finally:
        taken.close()


def test_uvicorn_still_lets_lanscope_own_the_signals() -> None:
    # lanscope.web.server switches uvicorn's signal capture off by overriding this hook; if
    # uvicorn stops calling it, serve() would take SIGTERM from `lanscope run`.
    assert "capture_signals" in inspect.getsource(uvicorn.Server.serve)


async def test_loopback_without_a_secret_answers_only_loopback_host_names(tmp_path: Path,
                                                                          store_file: Path) -> None:
    async with serving(web_config(tmp_path, store_file)) as (_, url), \
            httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/hosts")).status_code == 200
        rebound = await client.get("/hosts", headers={"Host": "attacker.example:8080"})
        assert rebound.status_code == 421
        assert (await client.get("/hosts", headers={"Host": "localhost:8080"})).status_code == 200


async def test_with_a_password_every_page_needs_a_sign_in(tmp_path: Path, store_file: Path) -> None:
    config = web_config(tmp_path, store_file, password=PASSWORD, token=TOKEN, address="127.0.0.1")
    async with serving(config) as (_, url), httpx.AsyncClient(base_url=url) as client:
        page = await client.get("/hosts", headers={"Accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fhosts"
        assert (await client.get("/events")).status_code == 401
        assert (await client.get("/static/app.css")).status_code == 200      # assets are not secret
        form = await client.get("/login")
        origin = {"Origin": url}
        wrong = await client.post("/login", headers=origin,
                                  data={"csrf": csrf_of(form.text), "secret": "guess"})
        assert wrong.status_code == 401 and "Wrong token or password" in wrong.text
        assert "lanscope_session" not in wrong.cookies
        right = await client.post("/login?next=/findings", headers=origin,
                                  data={"csrf": csrf_of(form.text), "secret": PASSWORD})
        assert right.status_code == 303 and right.headers["location"] == "/findings"
        cookie = right.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        signed_in = await client.get("/hosts")
        assert signed_in.status_code == 200 and "Sign out" in signed_in.text
        await client.post("/logout", data={"csrf": csrf_of(signed_in.text)}, headers=origin)
        client.cookies.clear()
        assert (await client.get("/hosts")).status_code == 401


async def test_a_bearer_token_needs_no_cookie_and_no_csrf(tmp_path: Path, store_file: Path) -> None:
    config = web_config(tmp_path, store_file, token=TOKEN)
    async with serving(config) as (_, url), httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/hosts")).status_code == 401
        bad = await client.get("/hosts", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/hosts", headers=auth)).status_code == 200
        result = await client.post("/query", data={"sql": "SELECT 42 AS answer"}, headers=auth)
        assert result.status_code == 200 and "<td>42</td>" in result.text


async def test_failed_sign_ins_are_limited(tmp_path: Path, store_file: Path) -> None:
    config = web_config(tmp_path, store_file, password=PASSWORD)
    async with serving(config) as (_, url), httpx.AsyncClient(base_url=url) as client:
        token = csrf_of((await client.get("/login")).text)
        codes = [(await client.post("/login", data={"csrf": token, "secret": f"guess {i}"},
                                    headers={"Origin": url})).status_code for i in range(11)]
        assert codes[:10] == [401] * 10 and codes[10] == 429
        blocked = await client.post("/login", headers={"Origin": url},
                                    data={"csrf": token, "secret": PASSWORD})
        assert blocked.status_code == 429                      # even the right one, for a while


@pytest.mark.parametrize(("origin", "with_token", "expected"), [
    ("same", True, 200),
    ("same", False, 403),          # no CSRF token
    ("https://attacker.example", True, 403),
    (None, True, 403),             # neither Origin nor Referer
])
async def test_posts_must_be_same_origin_with_the_csrf_token(
        tmp_path: Path, store_file: Path, origin: str | None, with_token: bool, expected: int) -> None:
    async with serving(web_config(tmp_path, store_file)) as (_, url), \
            httpx.AsyncClient(base_url=url) as client:
        token = csrf_of((await client.get("/query")).text)
        headers = {} if origin is None else {"Origin": url if origin == "same" else origin}
        data = {"sql": "SELECT 1"} | ({"csrf": token} if with_token else {})
        response = await client.post("/query", data=data, headers=headers)
        assert response.status_code == expected


async def test_a_referer_stands_in_for_a_missing_origin(tmp_path: Path, store_file: Path) -> None:
    async with serving(web_config(tmp_path, store_file)) as (_, url), \
            httpx.AsyncClient(base_url=url) as client:
        token = csrf_of((await client.get("/query")).text)
        ok = await client.post("/query", data={"sql": "SELECT 1", "csrf": token},
                               headers={"Referer": f"{url}/query"})
        assert ok.status_code == 200
