"""Presence (directcall.presence): who is online where, in the cache every process shares.

Runs on the test settings' cache: Redis when REDIS_URL is set (as scripts/test.sh does).
"""

from __future__ import annotations

import asyncio

from directcall import presence
from directcall.presence import Claim, Holder

LAPTOP = Holder("chan-laptop", "laptop-0001", "conn-1")
LAPTOP_AGAIN = Holder("chan-laptop-2", "laptop-0001", "conn-2")
PHONE = Holder("chan-phone", "phone-00001", "conn-3")


def test_the_first_device_claims_and_is_found():
    assert presence.claim(1, "tutor_jane", LAPTOP) == (Claim.CLAIMED, None)
    assert presence.lookup(1, "tutor_jane") == LAPTOP
    assert presence.lookup(2, "tutor_jane") is None  # another account's tutor_jane


def test_the_same_device_takes_over_and_another_is_refused():
    presence.claim(1, "tutor_jane", LAPTOP)
    assert presence.claim(1, "tutor_jane", LAPTOP_AGAIN) == (Claim.TAKEN_OVER, LAPTOP)
    assert presence.claim(1, "tutor_jane", PHONE) == (Claim.REFUSED, LAPTOP_AGAIN)
    assert presence.lookup(1, "tutor_jane") == LAPTOP_AGAIN


def test_renew_keeps_or_re_adds_its_own_entry_only():
    assert presence.renew(1, "tutor_jane", LAPTOP)  # lapsed (never there): re-added
    assert presence.lookup(1, "tutor_jane") == LAPTOP
    assert presence.renew(1, "tutor_jane", LAPTOP)
    presence.claim(1, "tutor_jane", LAPTOP_AGAIN)
    assert not presence.renew(1, "tutor_jane", LAPTOP)  # replaced: step aside


def test_release_drops_only_its_own_entry():
    presence.claim(1, "tutor_jane", LAPTOP_AGAIN)
    presence.release(1, "tutor_jane", LAPTOP)  # an older connection of the device
    assert presence.lookup(1, "tutor_jane") == LAPTOP_AGAIN
    presence.release(1, "tutor_jane", LAPTOP_AGAIN)
    assert presence.lookup(1, "tutor_jane") is None


def test_lookups_of_many_people_at_once():
    presence.claim(1, "tutor_jane", LAPTOP)
    presence.claim(2, "student_sam", PHONE)
    assert presence.lookup_many(1, ["tutor_jane", "student_sam"]) == {"tutor_jane": LAPTOP}
    assert presence.online([(1, "tutor_jane"), (2, "student_sam"), (2, "tutor_jane")]) == {
        (1, "tutor_jane"): LAPTOP,
        (2, "student_sam"): PHONE,
    }
    assert presence.online([]) == {}


def test_gone_marks():
    since = presence.mark_gone("call-1", 7)
    assert presence.mark_gone("call-1", 7) == since  # the first mark wins
    assert presence.gone_since("call-1", 7) == since
    assert presence.gone_since_many([("call-1", 7), ("call-1", 8)]) == {("call-1", 7): since}
    presence.mark_back("call-1", 7)
    assert presence.gone_since("call-1", 7) is None


def test_a_presence_ttl_under_a_second_still_holds(settings):
    settings.DIRECTCALL = {"PRESENCE_TTL": 0.5}
    presence.claim(1, "tutor_jane", LAPTOP)
    assert presence.lookup(1, "tutor_jane") == LAPTOP


async def test_the_async_twins_match():
    assert await presence.aclaim(1, "tutor_jane", LAPTOP) == (Claim.CLAIMED, None)
    assert await presence.alookup(1, "tutor_jane") == LAPTOP
    assert await presence.alookup_many(1, ["tutor_jane"]) == {"tutor_jane": LAPTOP}
    assert await presence.arenew(1, "tutor_jane", LAPTOP)
    since = await presence.amark_gone("call-1", 7)
    assert presence.gone_since("call-1", 7) == since
    await presence.amark_back("call-1", 7)
    await presence.arelease(1, "tutor_jane", LAPTOP)
    assert await presence.alookup(1, "tutor_jane") is None


async def test_akeep_renews_until_another_connection_holds_the_entry(settings):
    settings.DIRECTCALL = {"PRESENCE_TTL": 0.6}  # renewed every 0.2 s
    await presence.aclaim(1, "tutor_jane", LAPTOP)
    keeping = asyncio.ensure_future(presence.akeep(1, "tutor_jane", LAPTOP))
    await presence.arelease(1, "tutor_jane", LAPTOP)

    async def re_added() -> None:
        while await presence.alookup(1, "tutor_jane") is None:
            assert not keeping.done()
            await asyncio.sleep(0.05)

    await asyncio.wait_for(re_added(), 5)  # the renewal put the lapsed entry back
    await presence.aclaim(1, "tutor_jane", LAPTOP_AGAIN)  # the device came back elsewhere
    await asyncio.wait_for(keeping, 5)  # returns: the connection should step aside
    assert await presence.alookup(1, "tutor_jane") == LAPTOP_AGAIN
