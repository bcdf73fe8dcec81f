"""Presence (directcall.presence): who is online where, in the cache every process shares.

One entry per cuid: the device that holds it, its key's hash, and one connection per tab.
Runs on the test settings' cache: Redis when REDIS_URL is set (as scripts/test.sh does).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from directcall import presence
from directcall.caching import get_cache
from directcall.presence import Claim, Holder

LAPTOP = Holder("chan-laptop", "laptop-0001", "conn-1")
LAPTOP_TAB2 = Holder("chan-laptop-2", "laptop-0001", "conn-2")
PHONE = Holder("chan-phone", "phone-00001", "conn-3")


def signed_in(holder: Holder, device_key: str) -> Holder:
    """``holder`` as the consumer keeps it once signed in: with its device key's hash."""
    return replace(holder, key=presence.hash_key(device_key))


def claim_laptop() -> str:
    """The laptop's first tab claims tutor_jane; return the device key it was given."""
    outcome, device_key = presence.claim(1, "tutor_jane", LAPTOP)
    assert outcome is Claim.CLAIMED and isinstance(device_key, str) and len(device_key) >= 32
    return device_key


def test_the_first_device_claims_and_is_found():
    claim_laptop()
    found = presence.lookup(1, "tutor_jane")
    assert (found.device, dict(found.conns)) == ("laptop-0001", {"conn-1": "chan-laptop"})
    assert found.channels == ["chan-laptop"]
    assert presence.lookup(2, "tutor_jane") is None  # another account's tutor_jane


def test_tabs_of_the_device_join_with_its_key_and_nobody_else_does():
    key = claim_laptop()
    assert presence.claim(1, "tutor_jane", LAPTOP_TAB2, key) == (Claim.JOINED, None)
    assert presence.lookup(1, "tutor_jane").channels == ["chan-laptop", "chan-laptop-2"]
    # Another device, with or without the key; the same device id without the key or
    # with a wrong one: refused (a device id is the client's choice, the key is proof).
    tab3 = Holder("chan-3", "laptop-0001", "conn-9")
    for holder, presented in [
        (PHONE, None),
        (PHONE, key),
        (tab3, None),
        (tab3, "x" * 43),
        (tab3, key.upper() if key.upper() != key else key.lower()),
    ]:
        assert presence.claim(1, "tutor_jane", holder, presented) == (Claim.REFUSED, None)
    assert set(presence.lookup(1, "tutor_jane").conns) == {"conn-1", "conn-2"}


def test_the_last_tab_leaving_reserves_the_cuid_for_its_device(settings):
    settings.DIRECTCALL = {"DEVICE_HOLD": 30}
    key = claim_laptop()
    presence.release(1, "tutor_jane", signed_in(LAPTOP, key))
    assert presence.lookup(1, "tutor_jane") is None  # offline: nobody to call
    assert presence.held(1, "tutor_jane").device == "laptop-0001"
    assert presence.claim(1, "tutor_jane", PHONE)[0] is Claim.REFUSED
    assert presence.claim(1, "tutor_jane", replace(LAPTOP, conn="conn-new"))[0] is Claim.REFUSED
    assert presence.claim(1, "tutor_jane", LAPTOP_TAB2, key) == (Claim.JOINED, None)
    assert presence.lookup(1, "tutor_jane").channels == ["chan-laptop-2"]


def test_a_logout_gives_the_cuid_up_at_once():
    key = claim_laptop()
    presence.release(1, "tutor_jane", signed_in(LAPTOP, key), hold=False)
    assert presence.held(1, "tutor_jane") is None
    assert presence.claim(1, "tutor_jane", PHONE)[0] is Claim.CLAIMED


def test_the_reservation_ends_after_device_hold(settings):
    settings.DIRECTCALL = {"DEVICE_HOLD": 1}
    key = claim_laptop()
    presence.release(1, "tutor_jane", signed_in(LAPTOP, key))
    deadline = time.monotonic() + 5
    while presence.claim(1, "tutor_jane", PHONE)[0] is Claim.REFUSED:
        assert time.monotonic() < deadline, "the reservation outlived DEVICE_HOLD"
        time.sleep(0.1)
    assert presence.lookup(1, "tutor_jane").device == "phone-00001"


def test_release_takes_out_only_its_own_connection():
    key = claim_laptop()
    presence.claim(1, "tutor_jane", LAPTOP_TAB2, key)
    presence.release(1, "tutor_jane", signed_in(LAPTOP, key))
    assert presence.lookup(1, "tutor_jane").channels == ["chan-laptop-2"]
    presence.release(1, "tutor_jane", signed_in(PHONE, "y" * 43))  # not in the entry
    assert presence.lookup(1, "tutor_jane").channels == ["chan-laptop-2"]


def test_renew_puts_its_connection_back_and_refuses_another_device():
    key = claim_laptop()
    tab2 = signed_in(LAPTOP_TAB2, key)
    assert presence.renew(1, "tutor_jane", tab2)  # left out by a race: put back
    assert set(presence.lookup(1, "tutor_jane").conns) == {"conn-1", "conn-2"}
    presence.release(1, "tutor_jane", signed_in(LAPTOP, key), hold=False)
    presence.release(1, "tutor_jane", tab2, hold=False)
    assert presence.renew(1, "tutor_jane", tab2)  # lapsed: re-added with the same key
    assert presence.claim(1, "tutor_jane", LAPTOP, key) == (Claim.JOINED, None)
    presence.release(1, "tutor_jane", tab2, hold=False)
    presence.release(1, "tutor_jane", signed_in(LAPTOP, key), hold=False)
    phone_key = presence.claim(1, "tutor_jane", PHONE)[1]
    assert phone_key and not presence.renew(1, "tutor_jane", tab2)  # another device now


def test_connections_that_stop_renewing_are_dropped(settings):
    settings.DIRECTCALL = {"PRESENCE_TTL": 1}
    key = claim_laptop()
    presence.claim(1, "tutor_jane", LAPTOP_TAB2, key)
    tab2 = signed_in(LAPTOP_TAB2, key)
    deadline = time.monotonic() + 5
    # Only tab 2 renews (tab 1's process died): tab 1 leaves the entry.
    while "conn-1" in presence.lookup(1, "tutor_jane").conns:
        assert time.monotonic() < deadline, "a dead connection stayed in the entry"
        assert presence.renew(1, "tutor_jane", tab2)
        time.sleep(0.2)
    assert presence.lookup(1, "tutor_jane").channels == ["chan-laptop-2"]


class CountedCache:
    """The real cache backend (Redis in the suite), counting the calls made to it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str):
        method = getattr(get_cache(), name)

        def counted(*args, **kwargs):
            self.calls.append(name)
            return method(*args, **kwargs)

        return counted


def test_renew_many_renews_a_batch_in_two_round_trips(monkeypatch):
    jane_key = claim_laptop()
    presence.claim(1, "tutor_jane", LAPTOP_TAB2, jane_key)
    sam_key = presence.claim(1, "student_sam", PHONE)[1]
    gil = Holder("chan-gil", "desk-000001", "conn-7")
    gil_key = presence.claim(1, "grocer_gil", gil)[1]
    presence.release(1, "grocer_gil", signed_in(gil, gil_key), hold=False)  # it lapsed
    tab2 = signed_in(LAPTOP_TAB2, jane_key)
    presence.release(1, "tutor_jane", tab2, hold=False)  # left out by a race
    ada = Holder("chan-ada", "tablet-0001", "conn-8", key=presence.hash_key("a" * 43))
    presence.claim(1, "tutor_ada", PHONE)  # another device holds tutor_ada
    counted = CountedCache()
    monkeypatch.setattr(presence, "cache", counted)
    people = [
        (1, "tutor_jane", signed_in(LAPTOP, jane_key)),
        (1, "student_sam", signed_in(PHONE, sam_key)),
        (1, "grocer_gil", signed_in(gil, gil_key)),
        (1, "tutor_ada", ada),
        (1, "tutor_jane", tab2),
    ]
    assert presence.renew_many(people) == [True, True, True, False, True]
    # One read and one write for the batch; the lapsed entry is put back on its own.
    assert counted.calls == ["get_many", "set_many", "get", "add"]
    assert presence.lookup(1, "tutor_jane").channels == ["chan-laptop", "chan-laptop-2"]
    assert presence.lookup(1, "student_sam").channels == ["chan-phone"]
    assert presence.lookup(1, "grocer_gil").channels == ["chan-gil"]
    assert presence.lookup(1, "tutor_ada").device == "phone-00001"  # untouched


def test_renew_many_in_batches_says_what_became_of_each(monkeypatch):
    monkeypatch.setattr(presence, "RENEW_BATCH", 2)
    people = []
    for i in range(5):
        holder = Holder(f"chan-{i}", f"device-{i:04d}", f"conn-{i}")
        people.append(
            (1, f"user_{i:04d}", signed_in(holder, presence.claim(1, f"user_{i:04d}", holder)[1]))
        )
    people.insert(3, (1, "user_0000", Holder("chan-x", "device-xxxx", "conn-x", key="x")))
    counted = CountedCache()
    monkeypatch.setattr(presence, "cache", counted)
    assert presence.renew_many(people) == [True, True, True, False, True, True]
    assert counted.calls == ["get_many", "set_many"] * 3


def test_renew_many_reports_a_failed_write_for_the_renewed_only(monkeypatch):
    key = claim_laptop()
    counted = CountedCache()

    def failing_set_many(*args, **kwargs):
        raise ConnectionError("Redis went away")

    monkeypatch.setattr(presence, "cache", counted)
    monkeypatch.setattr(counted, "set_many", failing_set_many, raising=False)
    outcomes = presence.renew_many(
        [(1, "tutor_jane", signed_in(LAPTOP, key)), (1, "tutor_jane", PHONE)]
    )
    assert isinstance(outcomes[0], ConnectionError) and outcomes[1] is False


def test_lookups_of_many_people_at_once(settings):
    settings.DIRECTCALL = {"DEVICE_HOLD": 30}
    claim_laptop()
    phone_key = presence.claim(2, "student_sam", PHONE)[1]
    presence.claim(2, "grocer_gil", LAPTOP)
    presence.release(2, "grocer_gil", LAPTOP)  # a reservation: not online
    found = presence.lookup_many(1, ["tutor_jane", "student_sam"])
    assert list(found) == ["tutor_jane"] and found["tutor_jane"].device == "laptop-0001"
    online = presence.online([(1, "tutor_jane"), (2, "student_sam"), (2, "grocer_gil")])
    assert {person: p.channels for person, p in online.items()} == {
        (1, "tutor_jane"): ["chan-laptop"],
        (2, "student_sam"): ["chan-phone"],
    }
    assert online[2, "student_sam"].admits("phone-00001", phone_key)
    assert presence.online([]) == {}


def test_gone_marks():
    since = presence.mark_gone("call-1", 7)
    assert presence.mark_gone("call-1", 7) == since  # the first mark wins
    assert presence.gone_since("call-1", 7) == since
    assert presence.gone_since_many([("call-1", 7), ("call-1", 8)]) == {("call-1", 7): since}
    mark = presence.gone("call-1", 7)
    assert not mark.left and mark.until == since + 20  # RECONNECT_GRACE by default
    # Seen leaving afterwards: the mark becomes final, with the grace given then.
    presence.mark_gone("call-1", 7, grace=8, left=True)
    assert presence.gone("call-1", 7) == presence.Gone(since, since + 8, True)
    presence.mark_back("call-1", 7)
    assert presence.gone_since("call-1", 7) is None


def test_a_call_handed_back_to_another_connection():
    assert not presence.bound_elsewhere("call-1", 7, "conn-1")  # never handed back
    presence.mark_back("call-1", 7, "conn-2")
    assert presence.bound_elsewhere("call-1", 7, "conn-1")
    assert not presence.bound_elsewhere("call-1", 7, "conn-2")


def test_a_presence_ttl_under_a_second_still_holds(settings):
    settings.DIRECTCALL = {"PRESENCE_TTL": 0.5}
    claim_laptop()
    assert presence.lookup(1, "tutor_jane").channels == ["chan-laptop"]


async def test_the_async_twins_match():
    outcome, key = await presence.aclaim(1, "tutor_jane", LAPTOP)
    assert outcome is Claim.CLAIMED
    assert await presence.aclaim(1, "tutor_jane", LAPTOP_TAB2, key) == (Claim.JOINED, None)
    assert (await presence.alookup(1, "tutor_jane")).device == "laptop-0001"
    assert list(await presence.alookup_many(1, ["tutor_jane"])) == ["tutor_jane"]
    assert await presence.arenew(1, "tutor_jane", signed_in(LAPTOP, key))
    since = await presence.amark_gone("call-1", 7)
    assert presence.gone_since("call-1", 7) == since
    await presence.amark_back("call-1", 7)
    await presence.arelease(1, "tutor_jane", signed_in(LAPTOP, key))
    await presence.arelease(1, "tutor_jane", signed_in(LAPTOP_TAB2, key), hold=False)
    assert await presence.alookup(1, "tutor_jane") is None
    assert await presence.aheld(1, "tutor_jane") is None


async def test_akeep_renews_until_another_device_holds_the_entry(settings):
    settings.DIRECTCALL = {"PRESENCE_TTL": 0.6}  # renewed every 0.2 s
    _, key = await presence.aclaim(1, "tutor_jane", LAPTOP)
    laptop = signed_in(LAPTOP, key)
    keeping = asyncio.ensure_future(presence.akeep(1, "tutor_jane", laptop))
    await presence.arelease(1, "tutor_jane", laptop, hold=False)

    async def re_added() -> None:
        while await presence.alookup(1, "tutor_jane") is None:
            assert not keeping.done()
            await asyncio.sleep(0.05)

    await asyncio.wait_for(re_added(), 5)  # the renewal put the lapsed entry back

    async def phone_gets_in() -> None:  # between two renewals, another device signs in
        while True:
            await presence.arelease(1, "tutor_jane", laptop, hold=False)
            if (await presence.aclaim(1, "tutor_jane", PHONE))[0] is Claim.CLAIMED:
                return

    await asyncio.wait_for(phone_gets_in(), 5)
    await asyncio.wait_for(keeping, 5)  # returns: the connection must close
    assert (await presence.alookup(1, "tutor_jane")).device == "phone-00001"


def test_lookups_read_the_entry_as_the_writers_do():
    """A lookup makes its Presence straight from the cached value: the same one the
    writers' reading of that value makes, and None for junk or an entry without
    connections."""
    good = {"device": "d1", "key": "k1", "conns": {"c1": "chan1"}, "seen": {"c1": 1.0}}
    values = [
        good,
        {**good, "others": {"d2": "k2"}},
        {**good, "others": "junk"},
        {**good, "seen": "junk"},
        {**good, "conns": {}},
        {**good, "conns": ["c1"]},
        {**good, "device": None},
        {"device": "d1", "key": "k1"},
        "junk",
        None,
    ]
    for value in values:
        entry = presence._Entry.read(value)
        expected = entry.presence() if entry is not None and entry.conns else None
        assert presence._online(value) == expected, value
    assert presence._online(good) is not None
    assert presence._online({**good, "others": {"d2": "k2"}}).others == {"d2": "k2"}


def test_renew_many_keeps_several_devices_of_one_cuid_in_one_write(settings, monkeypatch):
    settings.DIRECTCALL = {"MULTIPLE_DEVICES": True}
    laptop_key = claim_laptop()
    outcome, phone_key = presence.claim(1, "tutor_jane", PHONE)
    assert outcome is Claim.CLAIMED and phone_key
    laptop, phone = signed_in(LAPTOP, laptop_key), signed_in(PHONE, phone_key)
    # Racing writes left both connections out of the entry, and the phone's device too.
    entry = get_cache().get(presence._key(1, "tutor_jane"))
    entry["others"], entry["conns"], entry["seen"] = {}, {}, {}
    get_cache().set(presence._key(1, "tutor_jane"), entry)
    stranger = Holder("chan-x", "laptop-0001", "conn-x", key=presence.hash_key("x" * 43))
    counted = CountedCache()
    monkeypatch.setattr(presence, "cache", counted)
    outcomes = presence.renew_many([(1, "tutor_jane", laptop), (1, "tutor_jane", phone)])
    assert outcomes == [True, True]
    # Both came back, the phone with its own key, in the batch's one write.
    assert counted.calls == ["get_many", "set_many"]
    found = presence.lookup(1, "tutor_jane")
    assert found.channels == ["chan-laptop", "chan-phone"]
    assert found.others == {"phone-00001": presence.hash_key(phone_key)}
    # The laptop's device with another key is refused, and the entry stays as it was.
    assert presence.renew_many([(1, "tutor_jane", stranger), (1, "tutor_jane", phone)]) == [
        False,
        True,
    ]
    assert presence.lookup(1, "tutor_jane").channels == ["chan-laptop", "chan-phone"]
