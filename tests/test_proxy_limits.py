"""The proxy's own limits (deploy/nginx.conf.template), with a real nginx.

directcall's per-address socket cap (``MAX_CONNECTIONS_PER_IP``) counts per server
process; the template caps open signaling sockets per client address over all of them.
nginx runs the rendered template on 127.0.0.1 in front of a stub upstream that accepts
every WebSocket handshake and holds the connection (the cap is nginx's, not a worker's).
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.topology import free_port, make_certificate, render_nginx_config

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")

WS_PATH = "/ws/directcall/v1/"
CAP = 3


class _Upstream(socketserver.ThreadingTCPServer):
    """Answers a WebSocket handshake with 101 and holds the socket; anything else with 200."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)
        self.held = 0
        self.lock = threading.Lock()


class _UpstreamHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        buffered = b""
        while True:
            while b"\r\n\r\n" not in buffered:
                data = self.request.recv(4096)
                if not data:
                    return
                buffered += data
            head, buffered = buffered.split(b"\r\n\r\n", 1)
            if b"upgrade: websocket" in head.lower():
                self.request.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"
                )
                with self.server.lock:
                    self.server.held += 1
                while self.request.recv(4096):  # held until nginx closes it
                    pass
                with self.server.lock:
                    self.server.held -= 1
                return
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[int]:
    """nginx with the template (the cap set to CAP) on a free port; yields that port."""
    upstream = _Upstream()
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    prefix = tmp_path / "nginx"
    for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (prefix / sub).mkdir(parents=True)
    cert, key = make_certificate(tmp_path)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        render_nginx_config(
            {
                "user": getpass.getuser(),
                "worker_processes": 2,
                "prefix": prefix,
                "mime_types": "/etc/nginx/mime.types",
                "upstream_servers": f"        server 127.0.0.1:{upstream.server_address[1]};",
                "listen": f"127.0.0.1:{port}",
                "listen_http": f"127.0.0.1:{free_port()}",
                "https_port": port,
                "server_name": "127.0.0.1",
                "certificate": cert,
                "certificate_key": key,
                "static_root": tmp_path / "static",
                "extra_server_lines": "",
                "max_sockets_per_ip": CAP,
            }
        )
    )
    command = ["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    process = subprocess.Popen([*command, "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)
        upstream.shutdown()
        upstream.server_close()


def _request(port: int, path: str, upgrade: bool) -> tuple[int, ssl.SSLSocket]:
    """Send one request over TLS; the answer's status and the open connection."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), 5)
    sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
    extra = (
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        if upgrade
        else "Connection: close\r\n"
    )
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
    head = b""
    while b"\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            break
        head += data
    return int(head.split(b" ", 2)[1]), sock


def test_the_proxy_caps_open_sockets_per_address(proxy):
    """One address may hold CAP signaling sockets through the proxy, over every worker
    process; one more is refused with 429 at the handshake; pages are not counted; a
    socket that closes frees its place."""
    sockets = []
    try:
        for _ in range(CAP):
            status, sock = _request(proxy, WS_PATH, upgrade=True)
            sockets.append(sock)
            assert status == 101
        status, refused = _request(proxy, WS_PATH, upgrade=True)
        refused.close()
        assert status == 429
        status, page = _request(proxy, "/", upgrade=False)
        page.close()
        assert status == 200
        sockets.pop().close()
        deadline = time.monotonic() + 5
        while True:  # nginx counts the socket as closed once it has seen the close
            status, sock = _request(proxy, WS_PATH, upgrade=True)
            if status == 101 or time.monotonic() > deadline:
                break
            sock.close()
            time.sleep(0.05)
        sockets.append(sock)
        assert status == 101
    finally:
        for sock in sockets:
            sock.close()
