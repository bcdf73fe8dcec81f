"""Issue 13, 3 in a real browser: a caller's picture must not make the callee's browser
contact a server of the caller's choosing before the callee answers.

The attack: the caller (a plain WebSocket client here) invites with ``initiator_image``
pointing at a server it runs; the callee's incoming screen loaded it at once, handing that
server the callee's IP address and User-Agent 0.06 s after the invite (even with
relay-only ICE). A local HTTPS server on 127.0.0.1 (another port, a self-signed
certificate the callee's browser is told to accept) records every hit: HTTPS, because the
demo's Content-Security-Policy (``img-src 'self' https: data:``) would stop a plain-HTTP
picture from another origin by itself, and an attacker's server would use HTTPS anyway.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import expect

from directcall.models import Call
from tests.e2e.harness import INIT_SCRIPT, BrowserUser
from tests.e2e.sdk import click, events, raw_client, screen, sign_in

# A 1x1 transparent PNG.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)

# Every <img> of the call screens has finished (loaded or failed): had one of them the
# recording server's URL, its request would have been made by then.
_IMAGES_SETTLED = """() => {
  const host = document.querySelector('[data-directcall-screens]');
  if (!host || !host.shadowRoot) return false;
  const images = [...host.shadowRoot.querySelectorAll('img')];
  return images.length > 0 && images.every((img) => img.complete);
}"""


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, valid for a day (PEM files in ``directory``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "recorder.crt", directory / "recorder.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Recorder:
    """An HTTPS server on 127.0.0.1 that answers a pixel and records each request."""

    def __init__(self, certificate: tuple[Path, Path]) -> None:
        self.hits: list[dict[str, str | float]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server calls it by this name
                recorder.hits.append(
                    {
                        "path": self.path,
                        "client": self.client_address[0],
                        "user_agent": self.headers.get("User-Agent", ""),
                        "at": time.monotonic(),
                    }
                )
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PIXEL)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(PIXEL)

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(*certificate)
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for_hits(self, timeout: float = 10) -> list[dict[str, str | float]]:
        deadline = time.monotonic() + timeout
        while not self.hits and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.hits)


@pytest.fixture
def recorder(tmp_path) -> Iterator[Recorder]:
    rec = Recorder(self_signed_certificate(tmp_path))
    rec.thread.start()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


@pytest.fixture
def callee_browser(browser, e2e_server) -> Iterator[Callable[[], BrowserUser]]:
    """Like ``new_user``, with a context that accepts the recorder's self-signed certificate."""
    users: list[BrowserUser] = []

    def make() -> BrowserUser:
        context = browser.new_context(base_url=e2e_server.url, ignore_https_errors=True)
        context.grant_permissions(["microphone", "notifications"], origin=e2e_server.url)
        context.set_default_timeout(15_000)
        context.add_init_script(INIT_SCRIPT)
        user = BrowserUser("sam", context, context.new_page())
        user.watch(user.page)
        users.append(user)
        user.page.goto("/")
        return user

    yield make
    for user in users:
        user.context.close()


@contextlib.contextmanager
def ringing_with_the_callers_picture(e2e_server, new_user, account, recorder):
    """Sam's page rings for a call whose caller chose pictures on the recording server."""
    acct, key = account
    sam = new_user()
    assert sign_in(sam, acct, key, "student_sam", name="Sam Student") == {"ok": True}
    with raw_client(e2e_server, acct, key, "tutor_jane") as jane:
        jane.send(
            type="invite",
            ref="1",
            receiver="student_sam",
            context="Homework",
            sdp="v=0\r\n",  # never answered: an SDP is not needed to ring
            initiator_image=f"{recorder.url}/caller.png?who=tutor_jane",
            receiver_image=f"{recorder.url}/receiver.png?who=student_sam",
        )
        jane.next("invited")
        expect(screen(sam, "incoming")).to_be_visible()
        jane.next("state", status="ringing")  # sam's page reported that it rings
        sam.page.wait_for_function(_IMAGES_SETTLED)
        yield sam, jane


def test_the_callee_loads_no_picture_from_the_callers_server_before_answering(
    e2e_server, callee_browser, e2e_account, recorder
):
    account = e2e_account()  # a page account; no allowed origins: only the site's own
    with ringing_with_the_callers_picture(e2e_server, callee_browser, account, recorder) as (
        sam,
        jane,
    ):
        assert recorder.hits == []
        (incoming,) = events(sam, "incoming")
        assert incoming["from"]["image"] is None
        click(sam, "decline")
        jane.next("state", status="declined")
    assert recorder.hits == []
    assert Call.objects.get().caller_image == ""


def test_a_picture_from_an_origin_the_account_allows_is_shown(
    e2e_server, callee_browser, e2e_account, recorder
):
    # The control: the same invite, the recorder's origin allowed: its hit is seen (the
    # recorder would have caught the leak).
    account = e2e_account(allowed_origins=f"{e2e_server.url}\n{recorder.url}")
    with ringing_with_the_callers_picture(e2e_server, callee_browser, account, recorder) as (
        sam,
        jane,
    ):
        hits = recorder.wait_for_hits()
        assert [hit["path"] for hit in hits][:1] == ["/caller.png?who=tutor_jane"]
        assert "Chrome" in str(hits[0]["user_agent"])
        click(sam, "decline")
        jane.next("state", status="declined")
