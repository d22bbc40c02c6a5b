"""A small threaded HTTP(S) server base for the fake RouterOS and Proxmox APIs.

Real sockets on 127.0.0.1, HTTP/1.1 keep-alive (so connection pooling is
observable: ``connections`` counts TCP connections), optional TLS with a
per-connection handshake in the handler thread (a client that rejects the
certificate does not stall the accept loop), and a ``release`` event that
cuts "slow" replies short when the server stops.
"""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, host: str = "127.0.0.1",
                 port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        super().__init__((host, port), handler)
        self.tls = tls
        self.connections = 0
        self.handshake_failures = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,),
                                        name=type(self).__name__,
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up or reject our certificate are part of the tests.
        pass


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeServer

    def setup(self) -> None:
        with self.server.lock:
            self.server.connections += 1
        if self.server.tls is not None:
            try:
                self.request = self.server.tls.wrap_socket(self.request, server_side=True)
            except (ssl.SSLError, OSError):
                with self.server.lock:
                    self.server.handshake_failures += 1
                raise
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_json(self, status: int, body: Any, *, reason: str | None = None,
                  headers: dict[str, str] | None = None) -> None:
        self.send_raw(status, json.dumps(body).encode(), reason=reason, headers=headers)

    def send_raw(self, status: int, data: bytes, *, reason: str | None = None,
                 headers: dict[str, str] | None = None,
                 content_type: str = "application/json") -> None:
        self.send_response(status, reason)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context
