"""The node API: HTTP on api_address:api_port, served by `watch` from daemon threads beside the HA loop.

GET, HEAD and OPTIONS (HAProxy's default `option httpchk` sends OPTIONS): the role endpoints answer 200 or
503 with one line (api_verdicts.py), `/status` this node's view as JSON, `/metrics` Prometheus text.
The one POST, `/failsafe`, is the primary's signed request for a promise (failsafe_keeper.PromiseDesk);
it changes nothing but that promise. Nothing served holds a secret. The server never holds up the HA loop: a
port it cannot bind is retried from its own thread while the loop runs on.
"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from . import api_verdicts
from .api_view import NodeSource
from .failsafe_keeper import SIGNATURE

log = logging.getLogger(__name__)

BIND_RETRY = 5.0                  # seconds between attempts to bind a port that is taken
REQUEST_TIMEOUT = 5.0             # a client that sends nothing is dropped after this (slow clients hold a thread)
ALLOW = "GET, HEAD, OPTIONS"
MAX_BODY = 4096


class Handler(BaseHTTPRequestHandler):
    server_version = "mysqlpilot"
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT

    def do_GET(self) -> None:        # noqa: N802 - http.server's naming
        self._answer(body=True)

    def do_HEAD(self) -> None:       # noqa: N802
        self._answer(body=False)

    def do_OPTIONS(self) -> None:    # noqa: N802 - a health check like GET (Patroni answers OPTIONS the same)
        self._answer(body=True)

    def _refuse(self) -> None:
        self._send(405, "text/plain", f"method {self.command} not allowed: the node API is read-only ({ALLOW})\n",
                   True)

    do_PUT = do_DELETE = do_PATCH = _refuse

    def do_POST(self) -> None:       # noqa: N802
        app: "NodeAPI" = self.server.app      # type: ignore[attr-defined]
        if urlsplit(self.path).path.rstrip("/") != "/failsafe" or app.desk is None:
            return self._refuse()
        try:
            size = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            size = -1
        if not 0 < size <= MAX_BODY:
            return self._send(400, "text/plain", f"a failsafe request has a body of 1 to {MAX_BODY} bytes\n", True)
        try:
            status, text = app.desk.answer(self.rfile.read(size), self.headers.get(SIGNATURE, ""))
        except Exception as exc:  # noqa: BLE001 - a refusal; the primary fences as it would without failsafe
            log.exception("node API: failsafe request failed: %s", exc)
            status, text = 500, "internal error; see the node's log"
        self._send(status, "text/plain", text + "\n", True)

    def _answer(self, body: bool) -> None:
        app: "NodeAPI" = self.server.app      # type: ignore[attr-defined]
        try:
            status, ctype, text = app.respond(self.path)
        except Exception as exc:  # noqa: BLE001 - a bug answers 500 in one line; the HA loop is not affected
            log.exception("node API: %s %s failed: %s", self.command, self.path, exc)
            status, ctype, text = 500, "text/plain", "internal error; see the node's log\n"
        self._send(status, ctype, text, body)

    def _send(self, status: int, ctype: str, text, body: bool) -> None:
        data = text if isinstance(text, bytes) else text.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            if self.command == "OPTIONS" or status == 405:
                self.send_header("Allow", ALLOW)
            self.end_headers()
            if body:
                self.wfile.write(data)
        except (ConnectionResetError, BrokenPipeError):
            # HAProxy's checks close (often with a reset) once they have the status line: not an error.
            self.close_connection = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - health checks every second: debug only
        log.debug("node API %s: " + format, self.address_string(), *args)


class NodeAPI:
    """Routes a request path to a verdict, /status or /metrics; owns the private metrics registry."""

    def __init__(self, source: NodeSource, desk=None):
        self.source = source
        self.desk = desk                  # failsafe_keeper.PromiseDesk: answers POST /failsafe
        self._registry = None
        self._lock = threading.Lock()

    def registry(self):
        with self._lock:
            if self._registry is None:
                from .api_metrics import registry_for       # prometheus_client only where it is served
                self._registry = registry_for(self.source)
            return self._registry

    def respond(self, raw_path: str) -> Tuple[int, str, object]:
        parts = urlsplit(raw_path)
        path = parts.path.rstrip("/") or "/"
        try:
            query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError:
            return 400, "text/plain", f"malformed query string {parts.query[:80]!r}\n"
        if path == "/status":
            return 200, "application/json", json.dumps(self.source.status(), sort_keys=True) + "\n"
        if path == "/metrics":
            from .api_metrics import CONTENT_TYPE, exposition
            return 200, CONTENT_TYPE, exposition(self.registry())
        v = api_verdicts.decide(path, query, self.source.facts())
        return v.status, "text/plain", v.reason + "\n"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: Tuple[str, int], app: NodeAPI):
        if ":" in address[0]:
            import socket
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.app = app


def bind(address: str, port: int, app: NodeAPI) -> Server:
    """The listening server; OSError (one line via describe_bind_error) when the port cannot be had."""
    host = address.strip("[]")
    return Server(("" if host == "*" else host, port), app)      # "" and "*": every interface


def describe_bind_error(address: str, port: int, exc: OSError) -> str:
    return (f"node API: cannot listen on {address}:{port} ({exc.strerror or exc}); set api_address/api_port "
            f"(MYSQLPILOT_API_ADDRESS/MYSQLPILOT_API_PORT) to a free address and port, or api_port 0 to disable "
            f"it; retrying every {BIND_RETRY:g}s")


def start(node, address: Optional[str] = None, port: Optional[int] = None) -> "Runner":
    """Serve `node`'s API from daemon threads (returns at once). For `watch`, not for Node's passes."""
    r = Runner(NodeAPI(NodeSource(node), getattr(node, "promises", None)), node.cfg.api_address if address is None else address,
               node.cfg.api_port if port is None else port)
    r.start()
    return r


class Runner(threading.Thread):
    """Binds (retrying while the port is taken) and serves until stopped."""

    def __init__(self, app: NodeAPI, address: str, port: int):
        super().__init__(name="node-api", daemon=True)
        self.app, self.address, self.port = app, address, port
        self.server: Optional[Server] = None
        self.bound = threading.Event()
        self.bind_failed = threading.Event()       # set once a bind failed (it is retried)
        self._stop_ev = threading.Event()

    def run(self) -> None:
        said = False
        while not self._stop_ev.is_set():
            try:
                self.server = bind(self.address, self.port, self.app)
                break
            except OSError as exc:
                if not said:
                    log.error("%s", describe_bind_error(self.address, self.port, exc))
                    said = True
                    self.bind_failed.set()
                self._stop_ev.wait(BIND_RETRY)
        if self.server is None:
            return
        host, port = self.server.server_address[:2]
        log.info("node API listening on %s:%s", host, port)
        self.bound.set()
        self.server.serve_forever(poll_interval=0.5)

    @property
    def port_bound(self) -> int:
        return self.server.server_address[1] if self.server is not None else 0

    def stop(self) -> None:
        self._stop_ev.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
