"""Settings: converted once into typed values, bad values replaced by defaults, one rate grammar."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from django.test import override_settings
from rest_framework.throttling import SimpleRateThrottle

from directcall import presence
from directcall.conf import (
    DEFAULTS,
    THROTTLE_SCOPES,
    Rate,
    SettingError,
    Settings,
    convert,
    get_settings,
    parse_rate,
)

from .conftest import _clear_cache


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; return whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# -- the settings object ----------------------------------------------------------------------


def test_every_default_is_a_typed_attribute():
    assert {field.name for field in dataclasses.fields(Settings)} == set(DEFAULTS)


def test_defaults_converted():
    with override_settings(DIRECTCALL={}):
        conf = get_settings()
        assert conf.RING_TIMEOUT == 30 and type(conf.RING_TIMEOUT) is int
        assert conf.PRESENCE_TTL == 30.0 and type(conf.PRESENCE_TTL) is float
        assert type(conf.RECONNECT_GRACE) is float
        assert type(conf.FLOOD_RATE) is float
        assert conf.FLOOD_BURST == 200 and type(conf.FLOOD_BURST) is int
        assert conf.MAX_CALL_DURATION is None
        call_rate = conf.CALL_RATE
        assert call_rate == Rate(20, 60)
        assert conf.ICE_SERVERS == ()
        assert dict(conf.THROTTLE_RATES) == DEFAULTS["THROTTLE_RATES"]


def test_item_access_returns_the_typed_value():
    with override_settings(DIRECTCALL={"PRESENCE_TTL": 2, "CALL_RATE": "3/h"}):
        conf = get_settings()
        assert conf["PRESENCE_TTL"] == conf.PRESENCE_TTL == 2.0
        assert type(conf["PRESENCE_TTL"]) is float
        assert conf["CALL_RATE"] == Rate(3, 3600)
        with pytest.raises(KeyError):
            conf["NO_SUCH_KEY"]
        with pytest.raises(KeyError):
            conf["__class__"]


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_settings().RING_TIMEOUT = 5
    with pytest.raises(TypeError):
        get_settings().THROTTLE_RATES["directcall_init_ip"] = "1/s"


def test_cache_follows_override_settings():
    with override_settings(DIRECTCALL={"RING_TIMEOUT": 7}):
        assert get_settings().RING_TIMEOUT == 7
        with override_settings(DIRECTCALL={"RING_TIMEOUT": 9}):
            assert get_settings().RING_TIMEOUT == 9
        assert get_settings().RING_TIMEOUT == 7


def test_throttle_rates_merge_one_scope_over_the_defaults():
    with override_settings(DIRECTCALL={"THROTTLE_RATES": {"directcall_init_ip": None}}):
        rates = get_settings().THROTTLE_RATES
    assert rates == {**DEFAULTS["THROTTLE_RATES"], "directcall_init_ip": None}
    assert rates["directcall_init_account"] == "600/min"


def test_ice_servers_are_a_copy():
    servers = [{"urls": ["stun:127.0.0.1:3478"]}]
    with override_settings(DIRECTCALL={"ICE_SERVERS": servers}):
        conf = get_settings()
        conf.ICE_SERVERS[0]["urls"].append("stun:elsewhere")
    assert servers == [{"urls": ["stun:127.0.0.1:3478"]}]


@pytest.mark.parametrize(
    "key,bad",
    [
        ("PRESENCE_TTL", 0),
        ("PRESENCE_TTL", "5"),
        ("RING_TIMEOUT", 1.5),
        ("MAX_FRAME_BYTES", True),
        ("CALL_RATE", "5/10m"),
        ("THROTTLE_RATES", {"directcall_init_ip": "5/fortnight"}),
        ("ICE_SERVERS", [{"url": "stun:x"}]),
        ("TURN_SECRET", 5),
    ],
)
def test_a_bad_value_falls_back_to_its_default_and_is_logged(key, bad, caplog):
    with override_settings(DIRECTCALL={key: bad}), caplog.at_level(logging.ERROR):
        value = get_settings()[key]
    assert value == convert(key, DEFAULTS[key])
    assert any(key in record.getMessage() for record in caplog.records)


def test_the_turn_secret_is_never_logged(caplog):
    with override_settings(DIRECTCALL={"TURN_SECRET": b"hunter2"}), caplog.at_level(logging.ERROR):
        assert get_settings().TURN_SECRET is None
    assert "hunter2" not in caplog.text


def test_convert_names_every_bad_throttle_scope():
    with pytest.raises(SettingError) as raised:
        convert("THROTTLE_RATES", {"directcall_init_ips": "1/s", "directcall_init_ip": "x"})
    assert len(raised.value.messages) == 2


# -- one rate grammar ------------------------------------------------------------------------


GOOD_RATES = [
    "1/s",
    "10/sec",
    "5/second",
    "60/m",
    "60/min",
    "60/minute",
    "100/h",
    "100/hour",
    "1000/d",
    "1000/day",
    "20/min",
]


@pytest.mark.parametrize("rate", GOOD_RATES)
def test_parse_rate_means_what_drf_means(rate):
    drf = SimpleRateThrottle.parse_rate(None, rate)  # parse_rate does not use self
    assert parse_rate(rate) == drf
    count, seconds = parse_rate(rate)  # unpacks like DRF's tuple
    assert (count, seconds) == drf


@pytest.mark.parametrize(
    "rate",
    [
        "5/10m",
        "abc",
        "60",
        "60/",
        "/min",
        "0/min",
        "-1/min",
        "1.5/s",
        "60/week",
        "20/mni",
        "",
        " 1/s",
        "1/s ",
        "1/S",
        "٣/s",
        60,
        None,
    ],
)
def test_parse_rate_refuses_what_is_not_a_rate(rate):
    with pytest.raises(ValueError):
        parse_rate(rate)


def test_the_init_throttles_parse_with_the_shared_grammar():
    from directcall.api.throttling import InitIPThrottle

    with override_settings(DIRECTCALL={"THROTTLE_RATES": {"directcall_init_ip": "7/hour"}}):
        assert InitIPThrottle().get_rate() == (7, 3600)


def test_known_throttle_scopes_are_the_defaults():
    assert set(THROTTLE_SCOPES) == set(DEFAULTS["THROTTLE_RATES"])


# -- fractional PRESENCE_TTL (the bug: int(0.5) made every presence expire at once) ----------


def _caches(name: str) -> dict:
    if name == "redis":
        url = os.environ.get("REDIS_URL")
        if not url:
            pytest.skip("REDIS_URL is not set (scripts/test.sh always sets it)")
        from django.conf import settings

        return {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url,
                "KEY_PREFIX": settings.RUN_PREFIX,
            }
        }
    return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.mark.parametrize("backend", ["locmem", "redis"])
@pytest.mark.parametrize("ttl", [0.5, 1.5])
def test_fractional_presence_ttl_keeps_users_online_until_it_expires(backend, ttl):
    holder = presence.Holder(channel="chan.1", device="device01", conn="conn1")
    with override_settings(CACHES=_caches(backend), DIRECTCALL={"PRESENCE_TTL": ttl}):
        _clear_cache()
        try:
            outcome, device_key = presence.claim(1, "tutor_jane", holder)
            assert outcome is presence.Claim.CLAIMED
            assert presence.lookup(1, "tutor_jane").conns == {"conn1": "chan.1"}
            holder = replace(holder, key=presence.hash_key(device_key))  # as the consumer does
            assert presence.renew(1, "tutor_jane", holder)
            assert presence.lookup(1, "tutor_jane").conns == {"conn1": "chan.1"}
            # Gone once the TTL (rounded up to whole seconds for the cache) has passed.
            assert wait_until(lambda: presence.lookup(1, "tutor_jane") is None, timeout=ttl + 5)
        finally:
            _clear_cache()
