"""Who is online (issue 15): ``watch`` answers the state of a list of cuids in one batch and
pushes ``presence`` as people sign in and out and enter and leave calls; a watcher learns
nothing of people it may not call. Run on the in-memory layer and on Redis (conftest)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.test.utils import CaptureQueriesContext

from directcall import presence, revocation, watch
from directcall.adapter import DefaultCallAdapter
from directcall.models import Block

from .wsclient import ANSWER, Client, answered_call, make_registration

pytestmark = [pytest.mark.django_db(transaction=True)]


class NobodyCallsGil(DefaultCallAdapter):
    def can_call(self, caller, callee):
        return not callee.cuid.startswith("grocer_")


@pytest.fixture(autouse=True)
def slow_look_ups(settings, channel_backend):
    """The hub looks everyone up again only every PRESENCE_TTL / 2 = 15 s: each change these
    tests wait for (5 s at most) has to be pushed. (A dead process's users, whose presence
    just expires, are seen by that periodic look-up: tests/test_multiprocess.py.)"""
    settings.DIRECTCALL = {**settings.DIRECTCALL, "PRESENCE_TTL": 30}


async def watching(client: Client, *cuids: str, ref: str = "w") -> dict[str, str]:
    """Send ``watch`` for ``cuids``; return the ``watching`` answer's states."""
    await client.send(type="watch", ref=ref, cuids=list(cuids))
    return (await client.next("watching", ref=ref))["presence"]


async def pushed(client: Client, timeout: float = 5) -> dict[str, str]:
    """The next ``presence`` frame's changes."""
    return (await client.next("presence", timeout=timeout))["presence"]


async def no_presence(client: Client) -> None:
    """No ``presence`` frame reached ``client`` (everything sent so far was handled)."""
    frames = await client.drain()
    assert [f for f in frames if f["type"] == "presence"] == []


async def test_a_batch_of_cuids_is_answered_at_once(clients, people):
    jane = await clients.sign_in(people["tutor_jane"])
    await clients.sign_in(people["student_sam"])
    await clients.sign_in(people["mallory_m"])  # another account's
    states = await watching(jane, "student_sam", "grocer_gil", "nobody_here", "mallory_m")
    assert states == {
        "student_sam": "online",
        "grocer_gil": "offline",
        "nobody_here": "offline",
        "mallory_m": "offline",  # only the watcher's account is looked at
    }


async def test_signing_in_and_out_is_pushed(clients, people):
    jane = await clients.sign_in(people["tutor_jane"])
    assert await watching(jane, "grocer_gil") == {"grocer_gil": "offline"}
    gil = await clients.sign_in(people["grocer_gil"])
    assert await pushed(jane) == {"grocer_gil": "online"}
    # A second tab of the same device changes nothing.
    second = await clients.sign_in(people["grocer_gil"])
    await second.close()
    await gil.alive()
    await no_presence(jane)
    await gil.close(1000)  # logout: offline at once
    assert await pushed(jane) == {"grocer_gil": "offline"}


async def test_a_cuid_nobody_used_yet_is_followed_once_someone_signs_in_as_it(
    clients, people, settings
):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "ADAPTER": f"{__name__}.NobodyCallsGil"}
    jane = await clients.sign_in(people["tutor_jane"])
    assert await watching(jane, "new_user_nina", "grocer_gus") == {
        "new_user_nina": "offline",
        "grocer_gus": "offline",
    }
    nina = await sync_to_async(make_registration)(people["tutor_jane"].account, "new_user_nina")
    await clients.sign_in(nina)
    assert await pushed(jane) == {"new_user_nina": "online"}
    # One the watcher may not call (NobodyCallsGil: no grocer_* either) stays offline.
    gus = await sync_to_async(make_registration)(people["tutor_jane"].account, "grocer_gus")
    gus_client = await clients.sign_in(gus)
    await gus_client.close(1000)
    await clients.sign_in(gus)
    await no_presence(jane)


async def test_a_reload_keeps_a_person_online_until_the_reservation_ends(clients, people, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "DEVICE_HOLD": 1}
    jane = await clients.sign_in(people["tutor_jane"])
    gil = await clients.sign_in(people["grocer_gil"])
    assert await watching(jane, "grocer_gil") == {"grocer_gil": "online"}
    started = asyncio.get_running_loop().time()
    await gil.close(1001)  # a page going away: its device holds the cuid for DEVICE_HOLD
    assert await pushed(jane) == {"grocer_gil": "offline"}
    assert asyncio.get_running_loop().time() - started >= 1


async def test_a_user_logged_out_of_the_site_is_offline_at_once(clients, people, settings):
    """Issue 15: a user who logged out of the host site (the session revoked, the socket
    closed with 4011) was still online to watchers for DEVICE_HOLD, as after a reload."""
    settings.DIRECTCALL = {**settings.DIRECTCALL, "DEVICE_HOLD": 30}
    jane = await clients.sign_in(people["tutor_jane"])
    gil = await clients.sign_in(people["grocer_gil"])
    assert await watching(jane, "grocer_gil") == {"grocer_gil": "online"}
    started = asyncio.get_running_loop().time()
    logged_out = revocation.revoke_registration
    await sync_to_async(logged_out)(people["grocer_gil"].pk, revocation.LOGGED_OUT, deny=False)
    assert (await gil.next("error"))["code"] == "ERR_SESSION_REVOKED"
    assert await gil.closed() == 4011
    await gil.close(4011)  # the browser's side of the closing handshake
    assert await pushed(jane) == {"grocer_gil": "offline"}
    assert asyncio.get_running_loop().time() - started < 5  # not DEVICE_HOLD (30 s)
    # Nothing is reserved for that device: the cuid is free, as after logout().
    assert await presence.aheld(people["grocer_gil"].account_id, "grocer_gil") is None


async def test_calls_make_both_parties_busy_until_they_end(clients, people):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    gil = await clients.sign_in(people["grocer_gil"])
    assert await watching(jane, "student_sam", "grocer_gil") == {
        "student_sam": "online",
        "grocer_gil": "online",
    }
    call_id = (await sam.invite("grocer_gil"))["call_id"]
    changes = await pushed(jane)
    if len(changes) < 2:
        changes |= await pushed(jane)
    assert changes == {"student_sam": "busy", "grocer_gil": "busy"}
    await gil.next("incoming", call_id=call_id)
    await gil.send(type="accept", call_id=call_id, sdp=ANSWER)
    await sam.next("state", call_id=call_id, status="answered")
    await no_presence(jane)  # answered: still busy
    await sam.send(type="hangup", call_id=call_id)
    changes = await pushed(jane)
    if len(changes) < 2:
        changes |= await pushed(jane)
    assert changes == {"student_sam": "online", "grocer_gil": "online"}


async def test_a_person_already_in_a_call_is_busy(clients, people):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    gil = await clients.sign_in(people["grocer_gil"])
    await answered_call(sam, gil)
    assert await watching(jane, "student_sam", "grocer_gil") == {
        "student_sam": "busy",
        "grocer_gil": "busy",
    }


async def test_a_cuid_one_may_not_call_is_offline_whatever_it_does(clients, people, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "ADAPTER": f"{__name__}.NobodyCallsGil"}
    jane = await clients.sign_in(people["tutor_jane"])
    # Offline, then online: the same answer as a cuid nobody uses.
    assert await watching(jane, "grocer_gil", "nobody_here", ref="a") == {
        "grocer_gil": "offline",
        "nobody_here": "offline",
    }
    gil = await clients.sign_in(people["grocer_gil"])
    assert await watching(jane, "grocer_gil", "nobody_here", ref="b") == {
        "grocer_gil": "offline",
        "nobody_here": "offline",
    }
    # Nothing Gil does reaches Jane: signing in again, calls, signing out.
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await gil.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await gil.send(type="cancel", call_id=call_id)
    await gil.next("state", call_id=call_id, status="cancelled")
    await gil.close(1000)
    await sam.alive()
    await no_presence(jane)


async def test_a_block_turns_the_blocker_offline_for_the_blocked(clients, people):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    assert await watching(jane, "student_sam") == {"student_sam": "online"}
    await sam.send(type="block", ref="b", cuid="tutor_jane")
    await sam.next("blocked", ref="b")
    assert await pushed(jane) == {"student_sam": "offline"}
    # From now on Jane hears nothing of Sam, and a new watch says the same.
    await sam.close(1000)
    await clients.sign_in(people["student_sam"])
    await no_presence(jane)
    assert await watching(jane, "student_sam", ref="again") == {"student_sam": "offline"}
    assert await sync_to_async(Block.objects.count)() == 1


async def test_unwatch_stops_the_pushes(clients, people):
    jane = await clients.sign_in(people["tutor_jane"])
    assert await watching(jane, "grocer_gil", "student_sam") == {
        "grocer_gil": "offline",
        "student_sam": "offline",
    }
    await jane.send(type="unwatch", ref="u", cuids=["grocer_gil"])
    assert (await jane.next("unwatched", ref="u"))["cuids"] == ["grocer_gil"]
    await clients.sign_in(people["grocer_gil"])
    await clients.sign_in(people["student_sam"])
    assert await pushed(jane) == {"student_sam": "online"}
    await jane.send(type="unwatch", ref="all")
    assert (await jane.next("unwatched", ref="all"))["cuids"] == ["student_sam"]


async def test_a_connection_watches_a_bounded_number_of_cuids(clients, people, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "WATCH_MAX": 3}
    jane = await clients.sign_in(people["tutor_jane"])
    await jane.send(type="watch", ref="big", cuids=["user_aaa1", "user_aaa2", "b_x1x", "c_y1y"])
    error = await jane.next("error", ref="big")
    assert error["code"] == "ERR_WATCH_LIMIT" and error["in_reply_to"] == "watch"
    assert len(await watching(jane, "student_sam", "grocer_gil")) == 2
    await jane.send(type="watch", ref="more", cuids=["nobody_1", "nobody_2"])
    assert (await jane.next("error", ref="more"))["code"] == "ERR_WATCH_LIMIT"
    # Duplicates count once; a cuid watched already is answered again.
    assert await watching(jane, "grocer_gil", "grocer_gil", "nobody_1", ref="dup") == {
        "grocer_gil": "offline",
        "nobody_1": "offline",
    }


@pytest.mark.parametrize(
    "cuids", [None, "student_sam", ["student_sam", 5], ["12_34"], ["x" * 51], [{"cuid": "a"}]]
)
async def test_malformed_watch_frames_are_refused(clients, people, cuids):
    jane = await clients.sign_in(people["tutor_jane"])
    await jane.send(type="watch", ref="bad", cuids=cuids)
    assert (await jane.next("error", ref="bad"))["code"] == "ERR_BAD_FRAME"
    await jane.alive()


async def test_watch_frames_are_rate_limited_per_cuid(clients, people, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "WATCH_RATE": "2/day"}
    jane = await clients.sign_in(people["tutor_jane"])
    other_tab = await clients.sign_in(people["tutor_jane"])
    await watching(jane, "student_sam", ref="1")
    await watching(other_tab, "student_sam", ref="2")  # counted across tabs
    await jane.send(type="watch", ref="3", cuids=["student_sam"])
    error = await jane.next("error", ref="3")
    assert error["code"] == "ERR_RATE_LIMITED"


async def test_a_connection_that_ends_leaves_nothing_behind(clients, people):
    jane = await clients.sign_in(people["tutor_jane"])
    await watching(jane, "student_sam")
    assert watch.hub().watchers
    await jane.close()
    await asyncio.sleep(0)
    assert watch.hub().watchers == {} and watch.hub()._tasks == []


def test_states_are_looked_up_in_one_query(people, django_assert_num_queries):
    everyone = {p.pk: (p.account_id, p.cuid) for p in people.values()}
    with django_assert_num_queries(1):
        found = watch.states(everyone)
    assert set(found.values()) == {"offline"}


def test_who_may_be_watched_takes_a_fixed_number_of_queries(people):
    jane = people["tutor_jane"]
    cuids = ["student_sam", "grocer_gil", "mallory_m", "nobody"] + [f"x_y{n}z" for n in range(50)]
    with CaptureQueriesContext(connection) as queries:
        allowed, unknown = watch.callable_people(jane.pk, [*cuids, "tutor_jane"])
    assert allowed == {
        "student_sam": people["student_sam"].pk,
        "grocer_gil": people["grocer_gil"].pk,
    }
    assert unknown == {"mallory_m", "nobody"} | set(cuids[4:])  # mallory is another account's
    assert len(queries) == 3  # the watcher, the registrations, the blocks


async def test_a_transition_does_not_wait_for_its_announcement(monkeypatch):
    """A call's start or end is announced from the database thread without a round trip to
    the loop: in a hop of dbthread.run it rides back with the result, in another hop
    (database_sync_to_async) it is handed to the loop; outside any loop it is made in place."""
    import threading

    from channels.db import database_sync_to_async

    from directcall import dbthread

    sent: list[tuple[tuple, int]] = []
    release = asyncio.Event()  # announcements wait for it: a hop that waited would hang

    async def changed(*people):
        await release.wait()
        sent.append((people, threading.get_ident()))

    monkeypatch.setattr(watch, "changed", changed)

    def announce(name: str) -> None:
        watch.changed_from_thread((1, name))

    layer = get_channel_layer()
    for name in ("rides_back", "handed_over"):  # someone watches them
        await layer.group_add(watch.group((1, name)), await layer.new_channel())
    await asyncio.wait_for(dbthread.run(announce, "rides_back"), 5)
    await asyncio.wait_for(database_sync_to_async(announce)("handed_over"), 5)
    release.set()
    for _ in range(200):
        if len(sent) == 2:
            break
        await asyncio.sleep(0.01)
    loop_thread = threading.get_ident()
    assert sorted(sent) == [
        (((1, "handed_over"),), loop_thread),
        (((1, "rides_back"),), loop_thread),
    ]

    # A thread of its own (no loop hands it work): made in place, before it returns.
    thread = threading.Thread(target=announce, args=("in_place",))
    thread.start()
    await asyncio.get_running_loop().run_in_executor(None, thread.join)
    assert sent[2][0] == ((1, "in_place"),)


async def test_nobody_watching_in_this_process_costs_no_announcement(channel_backend, monkeypatch):
    """On the in-memory layer a person nobody joined the group of is not announced: no task
    (two per call otherwise). Any other layer announces: a watcher may be in another process."""
    from directcall import dbthread

    sent = []

    async def changed(*people):
        sent.append(people)

    monkeypatch.setattr(watch, "changed", changed)
    tasks = len(asyncio.all_tasks())
    await dbthread.run(watch.changed_from_thread, (1, "nobody_watches"))
    if channel_backend == "memory":
        # The hop's callbacks (the announcement) ran before its result came back: a task
        # they made would be listed, or have run (it appends at once) before this line.
        assert len(asyncio.all_tasks()) == tasks
        assert sent == []
    else:
        for _ in range(200):
            if sent:
                break
            await asyncio.sleep(0.01)
        assert sent == [((1, "nobody_watches"),)]
