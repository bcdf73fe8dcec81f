"""Redis outages, with a real redis-server of the test's own that is killed (SIGKILL) and
started again empty:

- the HTTP API answers ``ERR_SERVICE_UNAVAILABLE`` (503) while Redis is down, not a 500;
- a consumer outlives a Redis restart: the state of a change made just after it reaches
  both parties (the first send on a stale pooled connection fails and is retried);
- daphne processes: no consumer crashes, a connection that closed during the outage is
  not shown online again (its presence renewal ended with it), one that stayed open is
  online again and callable, and new sign-ins and calls work once Redis is back.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from .conftest import needs_redis_server
from .test_faults import PrivateRedis

pytestmark = needs_redis_server()


class KillableRedis(PrivateRedis):
    """A private redis-server that a test kills (SIGKILL: no goodbye to its clients)."""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def private_redis(tmp_path) -> Iterator[KillableRedis]:
    server = KillableRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def use_redis(settings, url: str, prefix: str) -> None:
    """Point this process's cache and channel layer at ``url``."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
        }
    }
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": url, "socket_timeout": None}], "prefix": prefix},
        }
    }


# -- the HTTP API -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_init_and_session_answer_503_while_redis_is_down(
    private_redis, settings, make_account, api_client
):
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    use_redis(settings, private_redis.url, "dco")
    account, key = make_account()
    session_account, _key = make_account(name="Sessions", identity="verified")
    settings.DIRECTCALL = {**settings.DIRECTCALL, "SESSION_ACCOUNT": session_account.account_id}
    user = get_user_model().objects.create_user("sam", password="pw-for-tests")
    logged_in = APIClient()
    logged_in.force_login(user)
    body = {"accountId": account.account_id, "apikey": key, "cuid": "tutor_jane"}
    private_redis.kill()
    for response in (
        api_client.post("/directcall/v1/init", body, format="json"),
        logged_in.post("/directcall/v1/session", {}, format="json"),
    ):
        assert response.status_code == 503, response.content
        assert response.json()["code"] == "ERR_SERVICE_UNAVAILABLE"
        assert response.json()["message"] and response["Retry-After"].isdigit()
    # A page of another origin: its preflight is answered (a refused one could not be read),
    # and the request's 503 can be read, Retry-After included.
    origin = {"HTTP_ORIGIN": "https://shop.example"}
    preflight = api_client.options("/directcall/v1/init", **origin)
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "https://shop.example"
    response = api_client.post("/directcall/v1/init", body, format="json", **origin)
    assert response.status_code == 503
    assert response["Access-Control-Allow-Origin"] == "https://shop.example"
    assert response["Access-Control-Expose-Headers"] == "Retry-After"
    private_redis.start()
    assert api_client.post("/directcall/v1/init", body, format="json").status_code == 200


# -- one process: the consumers outlive a restart ----------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_change_made_after_a_restart_reaches_both_parties(
    private_redis, settings, people, monkeypatch
):
    from directcall import presence, transport
    from directcall.sweeper import stop_running_sweeper

    from .conftest import SIGNALING_SETTINGS
    from .wsclient import Clients, answered_call

    # Every message crosses Redis, as between two server processes (not the same-process
    # path, which would tell both parties here without it).
    monkeypatch.setattr(transport, "same_process_path", False)
    use_redis(settings, private_redis.url, f"dco{uuid.uuid4().hex[:6]}")
    # No sweep in the way: it would converge both parties without the retried send.
    settings.DIRECTCALL = {**SIGNALING_SETTINGS, "SWEEP_INTERVAL": 60}
    clients = Clients()
    try:
        jane = await clients.sign_in(people["tutor_jane"])
        sam = await clients.sign_in(people["student_sam"])
        call_id = await answered_call(jane, sam)
        await asyncio.to_thread(private_redis.kill)
        await asyncio.to_thread(private_redis.start)  # empty: presence and queues are gone
        await jane.send(type="hangup", call_id=call_id)
        await jane.next("state", call_id=call_id, status="over", reason="user_hangup")
        await sam.next("state", call_id=call_id, status="over", reason="user_hangup")
        assert [f for f in await jane.drain() if f["type"] == "error"] == []
        # Both connections carried on: their presence is renewed, and they call again.
        jane_reg = people["tutor_jane"]
        await until(
            lambda: presence.lookup(jane_reg.account_id, jane_reg.cuid) is not None,
            SIGNALING_SETTINGS["PRESENCE_TTL"] + 2,
            "jane online again",
        )
        call_id = (await sam.invite("tutor_jane"))["call_id"]
        await jane.next("incoming", call_id=call_id)
    finally:
        await clients.close_all()
        await stop_running_sweeper()


# -- daphne processes ---------------------------------------------------------------------------


@pytest.fixture(params=["redis", "dclayer"])  # the servers' channel layer (mp.LAYERS)
def cluster(request, tmp_path) -> Iterator[tuple[object, KillableRedis]]:
    """Two daphne servers (tests/mp_settings.py) on a private Redis and a database of theirs."""
    from . import test_multiprocess as mp

    redis_server = KillableRedis(tmp_path)
    redis_server.start()
    try:
        with mp.start_cluster(
            tmp_path,
            ("o1", "o2"),
            redis_url=redis_server.url,
            prefix=f"dco{uuid.uuid4().hex[:8]}",
            extra_env={"DIRECTCALL_MP_LAYER": request.param},
        ) as cluster:
            yield cluster, redis_server
    finally:
        redis_server.stop()


def present(redis_server: KillableRedis, prefix: str, cuid: str) -> bool:
    """Whether the servers' cache holds a presence entry for ``cuid``."""
    with redis.Redis.from_url(redis_server.url) as client:
        pattern = f"{prefix}:*:directcall:presence:*:{cuid}"
        return any(True for _ in client.scan_iter(match=pattern, count=1000))


async def until(condition, timeout: float, what: str) -> float:
    """Poll ``condition`` (bounded); return the seconds it took."""
    started = time.monotonic()
    while not await asyncio.to_thread(condition):
        assert time.monotonic() - started < timeout, f"not within {timeout:.1f}s: {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_consumers_and_presence_after_a_redis_restart(cluster):
    from . import test_multiprocess as mp

    cluster, redis_server = cluster
    o1, o2 = cluster.servers["o1"], cluster.servers["o2"]
    gone = await mp.Peer.sign_in(cluster, o1, mp._cuid("gone"), "Gone")
    stays = await mp.Peer.sign_in(cluster, o2, mp._cuid("stays"), "Stays")
    caller = None
    try:
        await asyncio.to_thread(redis_server.kill)
        await gone.close()  # closes while Redis is down: its disconnect cannot reach it
        await asyncio.to_thread(redis_server.start)
        restarted = time.monotonic()
        # The connection that stayed renews its presence (every PRESENCE_TTL/3) ...
        took = await until(
            lambda: present(redis_server, cluster.prefix, stays.cuid),
            mp.PRESENCE_TTL + mp.MARGIN,
            "the open connection is online again",
        )
        # ... and the closed one is not brought back by a renewal that outlived it.
        while time.monotonic() - restarted < mp.PRESENCE_TTL + mp.MARGIN:
            assert not present(redis_server, cluster.prefix, gone.cuid), "gone shows online"
            await asyncio.sleep(0.1)
        await stays.send(type="ping")
        await stays.next("pong")
        # New sign-ins work, and the connection that stayed open is called across processes.
        caller = await mp.Peer.sign_in(cluster, o1, mp._cuid("caller"), "Caller")
        call_id = await mp._ring(caller, stays)
        await caller.send(type="cancel", call_id=call_id)
        await stays.next("state", call_id=call_id, status="cancelled")
        print(f"\n[outages] open connection online again {took:.2f}s after the restart")
        for server in cluster.servers.values():
            assert server.proc.poll() is None, f"{server.name} died:\n{server.tail()}"
            log = server.log.read_text(errors="replace")
            assert "Exception inside application" not in log, server.tail(80)
            assert " 500 " not in log, server.tail(80)
    finally:
        for peer in (gone, stays, caller):
            if peer is not None:
                await peer.close()


async def test_a_party_whose_process_died_is_gone_though_its_device_is_online(cluster):
    """The callee's process dies mid-call and the callee's device signs in again at once on
    the other process — with its device key (so its cuid never leaves presence), but
    without the call: its page never got the call key (the process died before telling
    it), or it is another tab. No connection holds the call on the callee's side, and the
    caller, who still does, must be told that the call ended (connection_lost) within
    the grace, as when the callee is gone altogether.
    """
    from websockets.asyncio.client import connect

    from . import test_multiprocess as mp

    cluster, _redis = cluster
    o1, o2 = cluster.servers["o1"], cluster.servers["o2"]
    caller = await mp.Peer.sign_in(cluster, o1, mp._cuid("caller"), "Caller")
    callee = await mp.Peer.sign_in(cluster, o2, mp._cuid("callee"), "Callee")
    again = None
    try:
        call_id = await mp._ring(caller, callee)
        await mp._answer(caller, callee, call_id)
        await asyncio.to_thread(o2.kill)
        killed = time.monotonic()
        init = await asyncio.to_thread(cluster.init, o1, callee.cuid, "Callee")
        ws = await asyncio.wait_for(connect(init["websocketUrl"], origin=o1.base), 10)
        again = mp.Peer(ws, callee.cuid)
        device_key = callee.ready["device_key"]
        await again.send(type="auth", token=init["token"], device_key=device_key, resume=[call_id])
        assert (await again.next("ready"))["calls"] == []  # the call is not handed back
        bound = mp.PRESENCE_TTL * 4 / 3 + mp.RECONNECT_GRACE + 2 * mp.SWEEP_INTERVAL + mp.MARGIN
        state = await caller.next("state", timeout=bound, call_id=call_id, status="over")
        assert state["reason"] == "connection_lost"
        print(f"\n[outages] caller told {time.monotonic() - killed:.2f}s after the kill")
        assert cluster.db.call(call_id) == ("over", "connection_lost")
    finally:
        for peer in (caller, callee, again):
            if peer is not None:
                await peer.close()
