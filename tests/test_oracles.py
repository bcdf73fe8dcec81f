"""Issue 13, 6: what a signed-in client could learn about others without calling them.

- init without a name returned the name the cuid had signed in with: see
  ``test_api_init.py::test_init_without_a_name_does_not_return_the_stored_one``;
- one token answered presence probes for 15 minutes (40 probes in 0.5 s): every invite is
  counted against ``CALL_RATE`` (default 20 per minute) before presence is looked up;
- ``ERR_CALL_NOT_ALLOWED`` vs ``404`` told whether a user one may not call is online.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async

from directcall.adapter import DefaultCallAdapter
from directcall.models import Call, Registration

from .wsclient import OFFER, Client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("signaling")]


class NobodyCallsGil(DefaultCallAdapter):
    def can_call(self, caller, callee):
        return callee.cuid != "grocer_gil"


async def _registrations(make_account) -> dict[str, Registration]:
    def make():
        account, _key = make_account()
        return {
            cuid: Registration.objects.create(account=account, cuid=cuid)
            for cuid in ("tutor_jane", "grocer_gil", "student_sam")
        }

    return await sync_to_async(make)()


async def _outside_a_window_edge(window: float = 60, margin: float = 2) -> None:
    """Wait until the fixed ``CALL_RATE`` window has ``margin`` seconds left at least.

    At a window's edge the probes would be counted in two windows (up to twice the
    limit: still bounded, but not the count this test asserts).
    """
    while window - time.time() % window < margin:
        await asyncio.sleep(0.05)


async def test_forty_presence_probes_in_half_a_second_are_rate_limited(make_account):
    people = await _registrations(make_account)
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    try:
        await _outside_a_window_edge()
        # 40 probes at once, of 39 cuids nobody uses and one online user last.
        receivers = [f"probe_{n:03d}" for n in range(39)] + ["student_sam"]
        for n, receiver in enumerate(receivers):
            await jane.send(type="invite", ref=f"p{n}", receiver=receiver, context="?", sdp=OFFER)
        answers = [(await jane.next("error", ref=f"p{n}"))["code"] for n in range(40)]
        assert answers == [404] * 20 + ["ERR_RATE_LIMITED"] * 20
        # The online user's probe was refused like the offline ones: nothing rang.
        await jane.alive()
        assert [f for f in await sam.drain() if f["type"] == "incoming"] == []
        assert not await sync_to_async(Call.objects.exists)()
    finally:
        await jane.close()
        await sam.close()


async def test_a_refused_callee_looks_the_same_online_or_offline(make_account, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "ADAPTER": f"{__name__}.NobodyCallsGil"}
    people = await _registrations(make_account)
    jane = await Client.signed_in(people["tutor_jane"])
    try:
        await jane.send(type="invite", ref="off", receiver="grocer_gil", context="?", sdp=OFFER)
        offline = (await jane.next("error", ref="off"))["code"]
        gil = await Client.signed_in(people["grocer_gil"])
        try:
            await jane.send(type="invite", ref="on", receiver="grocer_gil", context="?", sdp=OFFER)
            online = (await jane.next("error", ref="on"))["code"]
        finally:
            await gil.close()
        assert offline == online == "ERR_CALL_NOT_ALLOWED"
    finally:
        await jane.close()
