"""The documented coturn configuration (``docs/coturn/turnserver.conf``) keeps the relay out
of the TURN server's own network.

Everyone who signs in gets TURN credentials (``directcall.ice``), and a TURN relay sends
UDP to whatever peer its client names. These tests start a real coturn with the shipped
file (only its ports, realm and secret replaced), take credentials the way init hands
them out, and ask the relay for loopback, private and link-local peers with a minimal
TURN client (``tests/turn_client.py``): CreatePermission and ChannelBind are refused
with 403 and a Send indication to a UDP socket on 127.0.0.1 never arrives. The control
is the configuration the browser TURN test runs with (the shipped file plus
``allow-loopback-peers`` and ``allowed-peer-ip=127.0.0.1``): there the very same requests
succeed and the datagram arrives, so the refusals come from the shipped rules.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from directcall.ice import ice_servers_for
from tests.coturn import LOOPBACK_RELAY_FOR_TESTS, Coturn, shipped_config, start_coturn
from tests.turn_client import IPV4, IPV6, TurnClient, TurnError

SECRET = "turn-peers-test-secret"


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


IPV6_LOOPBACK = _has_ipv6_loopback()
needs_ipv6 = pytest.mark.skipif(not IPV6_LOOPBACK, reason="this machine has no ::1")


def _start(name: str, tmp_path_factory, extra: list[str]) -> Coturn:
    relay_ips = ["127.0.0.1", "::1"] if IPV6_LOOPBACK else ["127.0.0.1"]
    workdir = tmp_path_factory.mktemp(f"coturn-{name}")
    return start_coturn(name, workdir, SECRET, extra=extra, relay_ips=relay_ips)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Iterator[Coturn]:
    """coturn with the shipped configuration."""
    server = _start("shipped", tmp_path_factory, [])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def allowing(tmp_path_factory) -> Iterator[Coturn]:
    """The control: the shipped configuration plus the browser TURN test's loopback lines."""
    server = _start("allowing", tmp_path_factory, LOOPBACK_RELAY_FOR_TESTS)
    yield server
    server.stop()


@pytest.fixture
def connect(settings):
    """Factory: ``connect(server) -> TurnClient`` with the credentials init would hand out."""
    clients: list[TurnClient] = []

    def make(server: Coturn) -> TurnClient:
        settings.DIRECTCALL = {
            **settings.DIRECTCALL,
            "ICE_SERVERS": [{"urls": [f"turn:127.0.0.1:{server.port}?transport=tcp"]}],
            "TURN_SECRET": server.secret,
            "TURN_TTL": 600,
        }
        [entry] = ice_servers_for("tutor_jane")
        client = TurnClient("127.0.0.1", server.port, entry["username"], entry["credential"])
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def udp_peer() -> Iterator[socket.socket]:
    """A UDP socket on 127.0.0.1 standing for a service on the TURN server's host."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def refused(call, *args) -> int:
    """The error code a TURN request got (0 if it succeeded)."""
    try:
        call(*args)
    except TurnError as error:
        return error.code
    return 0


def arrived(sock: socket.socket) -> list[bytes]:
    """The datagrams already waiting on a non-blocking socket."""
    datagrams = []
    while True:
        try:
            datagrams.append(sock.recv(2048))
        except BlockingIOError:
            return datagrams


def test_the_shipped_config_denies_what_the_docs_say():
    lines = shipped_config()
    assert "allow-loopback-peers" not in lines
    assert not [line for line in lines if line.startswith("allowed-peer-ip")]
    for needed in [
        "use-auth-secret",
        "no-multicast-peers",
        "no-tcp-relay",
        "no-cli",
        "denied-peer-ip=0.0.0.0-0.255.255.255",
        "denied-peer-ip=10.0.0.0-10.255.255.255",
        "denied-peer-ip=100.64.0.0-100.127.255.255",
        "denied-peer-ip=127.0.0.0-127.255.255.255",
        "denied-peer-ip=169.254.0.0-169.254.255.255",
        "denied-peer-ip=172.16.0.0-172.31.255.255",
        "denied-peer-ip=192.168.0.0-192.168.255.255",
        "denied-peer-ip=::1",
        "denied-peer-ip=::ffff:0.0.0.0-::ffff:255.255.255.255",
        "denied-peer-ip=fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "denied-peer-ip=fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ]:
        assert needed in lines, needed


def test_a_shipped_relay_cannot_reach_127_0_0_1(shipped, connect, udp_peer):
    port = udp_peer.getsockname()[1]
    client = connect(shipped)
    relay_ip, _relay_port = client.allocate()
    assert relay_ip == "127.0.0.1"  # the credentials work: a relay was allocated
    assert refused(client.create_permission, "127.0.0.1") == 403
    client.send("127.0.0.1", port, b"reached the server's loopback")
    # coturn handles one connection's messages in order: once the Refresh is answered,
    # the Send indication before it has been relayed or dropped (the control below
    # finds its datagram at this very point).
    assert client.refresh() > 0
    assert arrived(udp_peer) == []
    assert refused(client.channel_bind, "127.0.0.1", port) == 403


def test_control_the_test_config_lets_the_same_requests_through(allowing, connect, udp_peer):
    port = udp_peer.getsockname()[1]
    client = connect(allowing)
    client.allocate()
    assert refused(client.create_permission, "127.0.0.1") == 0
    client.send("127.0.0.1", port, b"reached the server's loopback")
    assert client.refresh() > 0
    assert arrived(udp_peer) == [b"reached the server's loopback"]
    # Both ways: the peer's answer comes back through the relay (a Data indication).
    udp_peer.sendto(b"pong", client.relayed)
    assert client.data_from("127.0.0.1") == b"pong"
    assert refused(client.channel_bind, "127.0.0.1", port) == 0
    # Only the one address is allowed; the rest of 127.0.0.0/8 stays refused.
    assert refused(client.create_permission, "127.0.0.2") == 403


@pytest.mark.parametrize(
    "peer",
    [
        "127.0.0.1",  # loopback
        "127.45.6.7",
        "0.0.0.0",  # noqa: S104 (a peer, not a bind: CVE-2020-26262 reached loopback so)
        "0.1.2.3",
        "10.0.0.1",  # private
        "10.255.255.254",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "169.254.169.254",  # link-local: the cloud metadata service
        "100.64.0.1",  # carrier-grade NAT
        "198.18.0.1",  # benchmarking
        "224.0.0.251",  # multicast (no-multicast-peers)
        "255.255.255.255",  # broadcast
    ],
)
def test_loopback_private_and_link_local_ipv4_peers_are_refused(shipped, connect, peer):
    client = connect(shipped)
    client.allocate(IPV4)
    assert refused(client.create_permission, peer) == 403


@needs_ipv6
@pytest.mark.parametrize(
    "peer",
    [
        "::1",  # loopback
        "::",  # unspecified (CVE-2020-26262)
        "fc00::1",  # unique local (fc00::/7)
        "fd12:3456::1",
        "fe80::1",  # link-local (fe80::/10)
        "febf::1",
        "::ffff:127.0.0.1",  # IPv4-mapped forms of refused IPv4 peers
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a00:1",  # NAT64 form of 10.0.0.1
        "2002:a00:1::1",  # 6to4 form of 10.0.0.1
    ],
)
def test_loopback_private_and_link_local_ipv6_peers_are_refused(shipped, connect, peer):
    client = connect(shipped)
    relay_ip, _port = client.allocate(IPV6)
    assert relay_ip == "::1"
    assert refused(client.create_permission, peer) == 403


def test_public_peers_are_permitted(shipped, connect):
    """The refusals are about ranges: a public peer gets its permission (nothing is sent)."""
    client = connect(shipped)
    client.allocate(IPV4)
    assert refused(client.create_permission, "8.8.8.8") == 0
    if IPV6_LOOPBACK:
        client6 = connect(shipped)
        client6.allocate(IPV6)
        assert refused(client6.create_permission, "2001:4860:4860::8888") == 0
