"""The sweeper (directcall.sweeper): its owner and start, its tasks, the sweep it runs and
the connections it converges; and ``manage.py directcall_sweep``."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.utils import timezone

from directcall import presence, signin
from directcall.models import Call, CallStatus
from directcall.sweeper import Sweeper, running_sweeper, stop_running_sweeper
from tests.conftest import needs_redis_server

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def overdue_call(caller, callee) -> Call:
    return Call.objects.create(
        account=caller.account,
        caller=caller,
        callee=callee,
        context="hi",
        status=CallStatus.RINGING,
        deadline=timezone.now() - timedelta(seconds=1),
    )


async def test_shielded_work_outlives_the_task_that_awaits_it():
    sweeper = Sweeper()
    finished = asyncio.Event()

    async def work() -> str:
        await asyncio.sleep(0.05)
        finished.set()
        return "done"

    waiter = asyncio.ensure_future(sweeper.shielded(work()))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.wait_for(finished.wait(), 5)
    assert waiter.cancelled()
    await sweeper.stop()


async def test_stop_ends_the_loop_and_every_task():
    sweeper = Sweeper()
    sweeper.start()
    never = sweeper.spawn(asyncio.Event().wait())
    await sweeper.stop()
    assert never.cancelled() and sweeper.stopped


async def test_one_sweeper_per_event_loop_started_by_first_use():
    first = running_sweeper()
    assert running_sweeper() is first and not first.stopped
    await stop_running_sweeper()
    assert first.stopped
    second = running_sweeper()
    assert second is not first
    await stop_running_sweeper()
    await stop_running_sweeper()  # nothing left to stop: fine


class Connection:
    """Stands for a consumer's party: holds call ids, notes what it is told."""

    def __init__(self, call_ids: list[str]) -> None:
        self.held = call_ids
        self.told: list[tuple[str, str]] = []

    def call_ids(self) -> list[str]:
        return self.held

    async def converge(self, ended) -> None:
        self.told += [(call_id, ended[call_id].status) for call_id in self.held if call_id in ended]


async def test_a_sweep_ends_overdue_calls_tells_their_parties_and_converges(
    people, settings, channel_backend
):
    jane, sam = people["tutor_jane"], people["student_sam"]
    call = await overdue_call(jane, sam)
    layer = get_channel_layer()
    sam_channel = await layer.new_channel()
    await presence.aclaim(sam.account_id, sam.cuid, presence.Holder(sam_channel, "dev", "c"))
    sweeper = Sweeper()
    watched = Connection([str(call.pk)])
    sweeper.watch(watched)
    ended = await sweeper.sweep_once()
    assert [(c.pk, c.status) for c in ended] == [(call.pk, CallStatus.MISSED)]
    told = await asyncio.wait_for(layer.receive(sam_channel), 5)
    assert told["type"] == "dc.state" and told["frame"]["status"] == "missed"
    assert watched.told == [(str(call.pk), "missed")]
    sweeper.forget(watched)
    await sweeper.sweep_once()
    assert watched.told == [(str(call.pk), "missed")]  # forgotten: not told again
    await sweeper.stop()


def test_the_sweep_command(people, capsys):
    """One sweep by hand ends the call and tells its parties before the command returns."""
    sam = people["student_sam"]
    call = Call.objects.create(
        account=people["tutor_jane"].account,
        caller=people["tutor_jane"],
        callee=sam,
        context="hi",
        status=CallStatus.RINGING,
        deadline=timezone.now() - timedelta(seconds=1),
    )
    layer = get_channel_layer()
    sam_channel = async_to_sync(layer.new_channel)()
    presence.claim(sam.account_id, sam.cuid, presence.Holder(sam_channel, "dev", "c"))
    call_command("directcall_sweep")
    out = capsys.readouterr().out
    assert f"{call.pk}\tmissed\tinvite_timeout" in out and "Finalized 1 call(s)." in out
    told = async_to_sync(asyncio.wait_for)(layer.receive(sam_channel), 5)
    assert told["type"] == "dc.state" and told["frame"]["status"] == "missed"


# -- the connections' timers (one task for the process) ------------------------------------------


# Generous: the conditions below come true within a second on an idle machine.
WAIT = 10


class Calls(list):
    """What the timers called, and a way to wait for it."""

    def __init__(self) -> None:
        super().__init__()
        self.grew = asyncio.Event()

    def append(self, item: object) -> None:
        super().append(item)
        self.grew.set()

    async def reach(self, count: int) -> None:
        while len(self) < count:
            self.grew.clear()
            await asyncio.wait_for(self.grew.wait(), WAIT)


class Timed:
    """Records ``(name, when it was due, when it was called)``; ``again``: once more, later."""

    timer_slot = None

    def __init__(self, name: str, calls: list, again: float | None = None) -> None:
        self.name, self.calls, self.again = name, calls, again
        self.due = 0.0

    def at(self, timers, when: float) -> None:
        self.due = when
        timers.at(self, when)

    def on_timer(self, now: float) -> float | None:
        self.calls.append((self.name, self.due, now))
        again, self.again = self.again, None
        if again is None:
            return None
        self.due = now + again
        return self.due


async def test_timers_call_each_object_at_its_time_in_order():
    sweeper = Sweeper()
    sweeper.start()
    calls = Calls()
    now = asyncio.get_running_loop().time()
    late, soon, cancelled = Timed("late", calls), Timed("soon", calls, again=0.1), Timed("x", calls)
    late.at(sweeper.timers, now + 0.4)
    cancelled.at(sweeper.timers, now + 0.05)
    soon.at(sweeper.timers, now + 0.2)  # earlier than the task sleeps for: it wakes
    sweeper.timers.cancel(cancelled)
    await calls.reach(3)  # "soon" asks for once more, 0.1 s after it was called
    assert sorted(name for name, _, _ in calls) == ["late", "soon", "soon"]  # never "x"
    assert [due for _, due, _ in calls] == sorted(due for _, due, _ in calls)  # in order
    assert all(called >= due for _, due, called in calls)  # never before its time
    assert len(sweeper.timers) == 0 and late.timer_slot is None
    await sweeper.stop()


async def test_timers_move_an_object_and_batch_the_work_of_one_round():
    sweeper = Sweeper()
    sweeper.start()
    batches = Calls()

    async def run(items: list[str]) -> None:
        batches.append(items)

    class Batching(Timed):
        def on_timer(self, now: float) -> None:
            sweeper.timers.batch(run, self.name)

    now = asyncio.get_running_loop().time()
    a, b, moved = Batching("a", []), Batching("b", []), Batching("moved", [])
    for item in (a, b, moved):
        sweeper.timers.at(item, now + 0.1)
    sweeper.timers.at(moved, now + 0.3)  # moved later: a round of its own
    await batches.reach(2)
    assert batches == [["a", "b"], ["moved"]]
    assert len(sweeper.timers) == 0
    await sweeper.stop()


async def test_a_signed_in_connection_is_renewed_by_the_process_timers(
    people, clients, settings, monkeypatch
):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "PRESENCE_TTL": 0.6}  # renewed every 0.2 s
    renew_many, renewals = presence.arenew_many, Calls()

    async def counted(people):
        outcomes = await renew_many(people)
        renewals.append(outcomes)
        return outcomes

    monkeypatch.setattr(presence, "arenew_many", counted)
    jane_reg = people["tutor_jane"]
    jane = await clients.sign_in(jane_reg)
    await renewals.reach(7)  # six intervals after the first: past PRESENCE_TTL twice
    assert all(outcomes == [True] for outcomes in renewals)
    assert await presence.alookup(jane_reg.account_id, jane_reg.cuid) is not None
    await jane.alive()
    # Its entry lapses and another device signs in between two renewals: it closes (4002).
    while True:
        await presence.arelease(jane_reg.account_id, jane_reg.cuid, _holder_of(jane), hold=False)
        phone = presence.Holder("chan-phone", "phone-0001", "conn-phone")
        claimed = await presence.aclaim(jane_reg.account_id, jane_reg.cuid, phone)
        if claimed[0] is presence.Claim.CLAIMED:
            break
    assert (await jane.next("error"))["code"] == "ERR_ALREADY_SIGNEDIN"
    assert await jane.closed() == 4002


async def test_renewals_fall_on_a_grid(people, clients, settings, monkeypatch):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "PRESENCE_TTL": 3}  # every 1 s, 0.1 s grid
    batches, renew = Calls(), signin.renew

    async def counted(conns):
        batches.append([(conn.party.session.cuid, conn.renew_at) for conn in conns])
        await renew(conns)

    monkeypatch.setattr(signin, "renew", counted)
    for cuid in ("tutor_jane", "student_sam", "grocer_gil"):
        await clients.sign_in(people[cuid])
    await batches.reach(4)
    renewed = [cuid for batch in batches for cuid, _ in batch]
    assert {"tutor_jane", "student_sam", "grocer_gil"} <= set(renewed)
    # Each next renewal on the grid (a tenth of the interval): connections signed in at
    # different moments fall on a few moments, each renewed as one batch by the timers.
    for batch in batches:
        for _, renew_at in batch:
            assert renew_at * 10 == pytest.approx(round(renew_at * 10), abs=1e-6)


def _holder_of(client) -> presence.Holder:
    """The presence holder of a signed-in client's connection (read from its entry)."""
    account, cuid, device = client.device
    entry = presence.held(account, cuid)
    conn, channel = next(iter(entry.conns.items()))
    return presence.Holder(channel, device, conn, entry.key)


async def test_an_idle_connection_is_closed_and_a_talking_one_is_not(people, clients, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "IDLE_TIMEOUT": 0.8}
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    started = asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() - started < 1.2:
        await sam.alive()  # a ping every 0.2 s keeps sam's connection
        await asyncio.sleep(0.2)
    assert await jane.closed(timeout=1) == 4008
    assert asyncio.get_running_loop().time() - started >= 0.8
    await sam.alive()


@pytest.fixture
def hung_redis(tmp_path, settings, monkeypatch) -> Iterator[Any]:
    """channels_redis's layer on a private redis-server that stops answering (SIGSTOP:
    its socket accepts and reads nothing back, like a Redis that hangs or a network that
    drops packets without a reset); the channel layer sends to it from a connection made
    before it stopped."""
    from directcall import transport
    from tests.test_faults import PrivateRedis

    hung = PrivateRedis(tmp_path)
    hung.start()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": hung.url, "socket_timeout": None}]},
        }
    }
    monkeypatch.setattr(transport, "same_process_path", False)
    try:
        yield hung
    finally:
        if hung.proc is not None and hung.proc.poll() is None:
            hung.proc.send_signal(signal.SIGCONT)
        hung.stop()


@needs_redis_server()
async def test_a_channel_layer_that_hangs_holds_up_no_sweep(
    people, settings, monkeypatch, hung_redis
):
    """The parties of a call the sweep ended cannot be told, and the sweeps go on ending
    overdue calls all the same: the telling runs apart from them (a send here never
    gives up, so only that keeps the sweeps going)."""
    from directcall import transport

    settings.DIRECTCALL = {**settings.DIRECTCALL, "SWEEP_INTERVAL": 0.05}
    monkeypatch.setattr(transport, "SEND_TIMEOUT", 3600)
    jane, sam = people["tutor_jane"], people["student_sam"]
    sam_channel = await get_channel_layer().new_channel()  # in another process, say
    await presence.aclaim(sam.account_id, sam.cuid, presence.Holder(sam_channel, "d", "c"))
    first = await overdue_call(jane, sam)
    hung_redis.proc.send_signal(signal.SIGSTOP)
    sweeper = Sweeper()
    sweeper.start()
    try:
        await until_ended(first)
        second = await overdue_call(jane, sam)
        await until_ended(second)  # the first call's telling still hangs
    finally:
        await sweeper.stop()


@needs_redis_server()
async def test_a_send_the_channel_layer_does_not_answer_gives_up(monkeypatch, caplog, hung_redis):
    """After SEND_TIMEOUT, once: a layer silent that long is not back a moment later."""
    from directcall import transport

    monkeypatch.setattr(transport, "SEND_TIMEOUT", 0.3)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    assert await transport.send(channel, {"type": "dc.ping"})  # Redis answers
    hung_redis.proc.send_signal(signal.SIGSTOP)
    sent = await asyncio.wait_for(
        transport.send(channel, {"type": "dc.ping"}, transport.STATE_RETRY_DELAYS), WAIT
    )
    assert sent is False
    assert "after 1 attempt(s) (no answer from the channel layer within 0.3 s)" in caplog.text


async def until_ended(call: Call) -> None:
    """Wait (at most WAIT seconds) until ``call`` has ended in the database."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while (await Call.objects.aget(pk=call.pk)).status in (CallStatus.RINGING,):
        assert asyncio.get_running_loop().time() < deadline, f"call {call.pk} still rings"
        await asyncio.sleep(0.05)
