"""The sweeper (directcall.sweeper): its owner and start, its tasks, the sweep it runs and
the connections it converges; and ``manage.py directcall_sweep``."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.utils import timezone

from directcall import presence
from directcall.models import Call, CallStatus
from directcall.sweeper import Sweeper, running_sweeper, stop_running_sweeper

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
    call = Call.objects.create(
        account=people["tutor_jane"].account,
        caller=people["tutor_jane"],
        callee=people["student_sam"],
        context="hi",
        status=CallStatus.RINGING,
        deadline=timezone.now() - timedelta(seconds=1),
    )
    call_command("directcall_sweep")
    out = capsys.readouterr().out
    assert f"{call.pk}\tmissed\tinvite_timeout" in out and "Finalized 1 call(s)." in out
