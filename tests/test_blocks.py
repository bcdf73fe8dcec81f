"""Issue 13, 4 — a way for the callee's side to block a caller: the ``block {cuid}`` frame
(``client.block(cuid)`` in the SDK), the adapter's ``is_blocked``/``block`` hooks and the
``Block`` table. A blocked caller's invites are refused exactly like ``can_call`` refusals
(``ERR_CALL_NOT_ALLOWED``, asked before presence), so they say nothing of being blocked or
of being online.

The consumer tests run on the in-memory layer + local-memory cache and on Redis for both.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from directcall.adapter import DefaultCallAdapter
from directcall.models import Block, Call

from .wsclient import OFFER

pytestmark = [pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def blocks() -> list[tuple[str, str, str]]:
    return [
        (b.account.account_id, b.blocker.cuid, b.blocked.cuid)
        for b in Block.objects.select_related("account", "blocker", "blocked")
    ]


async def invite_code(client, receiver: str, ref: str) -> str | int:
    """What an invite from ``client`` to ``receiver`` gets: the error code, or "invited"."""
    await client.send(type="invite", ref=ref, receiver=receiver, context="Hi", sdp=OFFER)
    while True:
        for index, seen in enumerate(client.inbox):
            if seen.get("ref") == ref and seen.get("type") in ("invited", "error"):
                client.inbox.pop(index)
                return "invited" if seen["type"] == "invited" else seen["code"]
        frame = await client._recv_frame(5)
        assert frame is not None, f"{client.cuid}: closed"
        client.inbox.append(frame)


@pytest.mark.usefixtures("signaling")
async def test_a_blocked_caller_cannot_call_whether_the_callee_is_online_or_not(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    gil = await clients.sign_in(people["grocer_gil"])
    await sam.send(type="block", ref="b1", cuid="tutor_jane")
    assert await sam.next("blocked") == {"type": "blocked", "ref": "b1", "cuid": "tutor_jane"}
    account = people["student_sam"].account.account_id
    assert await blocks() == [(account, "student_sam", "tutor_jane")]
    # Online: refused like a can_call refusal, and nothing rings.
    assert await invite_code(jane, "student_sam", "on") == "ERR_CALL_NOT_ALLOWED"
    await jane.alive()
    assert [f for f in await sam.drain() if f["type"] == "incoming"] == []
    await sam.close()
    # Offline: the very same answer (not 404): being blocked hides presence.
    assert await invite_code(jane, "student_sam", "off") == "ERR_CALL_NOT_ALLOWED"
    assert not await database_sync_to_async(Call.objects.exists)()
    # One way only: sam may still call jane, and others may call sam.
    sam = await clients.sign_in(people["student_sam"])
    assert await invite_code(sam, "tutor_jane", "back") == "invited"
    await sam.send(type="hangup", call_id=(await jane.next("incoming"))["call_id"])
    await sam.next("state", status="cancelled")
    assert await invite_code(gil, "student_sam", "gil") == "invited"


@pytest.mark.usefixtures("signaling")
async def test_blocking_twice_or_a_cuid_that_never_signed_in_answers_the_same(people, clients):
    sam = await clients.sign_in(people["student_sam"])
    await sam.send(type="block", ref="1", cuid="tutor_jane")
    await sam.send(type="block", ref="2", cuid="tutor_jane")
    await sam.send(type="block", ref="3", cuid="nobody_here")
    # A cuid of another account is no one here either.
    await sam.send(type="block", ref="4", cuid="mallory_m")
    for ref, cuid in [("1", "tutor_jane"), ("2", "tutor_jane"), ("3", "nobody_here")]:
        assert await sam.next("blocked", ref=ref) == {"type": "blocked", "ref": ref, "cuid": cuid}
    assert (await sam.next("blocked", ref="4"))["cuid"] == "mallory_m"
    assert len(await blocks()) == 1


@pytest.mark.usefixtures("signaling")
async def test_bad_block_frames_are_refused(people, clients):
    sam = await clients.sign_in(people["student_sam"])
    for ref, cuid in [("a", None), ("b", "x" * 51), ("c", "91_8899555"), ("d", ["tutor_jane"])]:
        await sam.send(type="block", ref=ref, cuid=cuid)
        assert (await sam.next("error", ref=ref))["code"] == "ERR_BAD_FRAME"
    await sam.send(type="block", ref="self", cuid="student_sam")
    assert (await sam.next("error", ref="self"))["code"] == "ERR_INVALID_CALL_PARAMETERS"
    assert await blocks() == []


@pytest.mark.usefixtures("signaling")
async def test_block_needs_a_signed_in_socket(people, clients):
    anonymous = await clients.anonymous()
    await anonymous.send(type="block", cuid="tutor_jane")
    assert (await anonymous.next("error"))["code"] == "ERR_NOT_AUTHENTICATED"
    assert await blocks() == []


class BlocksInMyOwnTable(DefaultCallAdapter):
    """A site that keeps blocks elsewhere (here: in a list)."""

    stored: list[tuple[str, str]] = []

    def block(self, blocker, blocked):
        self.stored.append((blocker.cuid, blocked.cuid))

    def is_blocked(self, caller, callee):
        return (callee.cuid, caller.cuid) in self.stored


@pytest.mark.usefixtures("signaling")
async def test_the_adapter_decides_where_blocks_live(people, clients, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "ADAPTER": f"{__name__}.BlocksInMyOwnTable"}
    BlocksInMyOwnTable.stored.clear()
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    await sam.send(type="block", ref="b", cuid="tutor_jane")
    await sam.next("blocked", ref="b")
    assert BlocksInMyOwnTable.stored == [("student_sam", "tutor_jane")]
    assert await blocks() == []
    assert await invite_code(jane, "student_sam", "r") == "ERR_CALL_NOT_ALLOWED"


# -- the admin ---------------------------------------------------------------------------------


def test_the_admin_lists_blocks_and_deleting_one_unblocks(admin_client, people):
    from django.urls import reverse

    block = Block.objects.create(
        account=people["student_sam"].account,
        blocker=people["student_sam"],
        blocked=people["tutor_jane"],
    )
    listing = admin_client.get(reverse("admin:directcall_block_changelist"))
    assert listing.status_code == 200
    html = listing.content.decode()
    assert "student_sam" in html and "tutor_jane" in html
    found = admin_client.get(reverse("admin:directcall_block_changelist"), {"q": "tutor_jane"})
    assert found.context["cl"].result_count == 1
    assert admin_client.get(reverse("admin:directcall_block_add")).status_code == 403
    delete = reverse("admin:directcall_block_delete", args=[block.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    assert not Block.objects.exists()
