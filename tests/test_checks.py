"""System checks: every id fires when it should and stays quiet with the test settings."""

from __future__ import annotations

import importlib.util
from io import StringIO

import pytest
from django.conf import settings
from django.core.checks import Error, Warning
from django.core.checks.registry import registry
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from directcall import checks

REDIS_LAYER = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}
MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
REDIS_CACHE = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/0",
    }
}
LOCMEM_CACHE = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "OPTIONS": {"MAX_ENTRIES": 100_000},
    }
}
DUMMY_CACHE = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
FILE_CACHE = {
    "default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": "/tmp/directcall-test-cache-unused",  # noqa: S108 (never written)
    }
}
STUN = {"urls": ["stun:stun.example.org:3478"]}
TURN = {"urls": ["turn:turn.example.org:3478"]}

ALL_CHECKS = (checks.check_channels, checks.check_shared_state, checks.check_directcall_settings)


def ids(messages) -> list[str]:
    return [m.id for m in messages]


def run_all() -> list:
    return [m for check in ALL_CHECKS for m in check()]


# -- with the test settings ----------------------------------------------------------------


def test_quiet_with_test_settings():
    assert run_all() == []


def test_checks_are_registered():
    registered = registry.get_checks()
    for check in ALL_CHECKS:
        assert check in registered


def test_manage_py_check_passes():
    out = StringIO()
    call_command("check", "--fail-level", "WARNING", stdout=out, stderr=StringIO())
    assert "no issues" in out.getvalue()


@pytest.mark.parametrize(
    ("directcall", "check_id"),
    [
        ({"RING_TIME": 30}, "E005"),
        ({"THROTTLE_RATES": {"directcall_init_ip": "5/10m"}}, "E006"),
        ({"ICE_SERVERS": "stun:stun.example.org"}, "E007"),
    ],
)
def test_manage_py_check_reports_directcall_errors(directcall, check_id):
    with (
        override_settings(DIRECTCALL=directcall),
        pytest.raises(SystemCheckError, match=rf"directcall\.{check_id}"),
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())


def test_e002_hint_points_to_an_existing_file():
    with override_settings(ASGI_APPLICATION=None):
        (problem,) = checks.check_channels()
    assert "README.md" in problem.hint
    assert "integration.md" not in problem.hint


# -- check_channels: E001, E002, W001 ------------------------------------------------------


def test_e001_channels_missing(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "channels":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(checks.importlib.util, "find_spec", find_spec)
    problems = checks.check_channels()
    assert ids(problems) == ["directcall.E001"]
    assert isinstance(problems[0], Error)


def test_e001_quiet_when_channels_installed():
    assert "directcall.E001" not in ids(checks.check_channels())


@pytest.mark.parametrize("value", [None, ""])
def test_e002_no_asgi_application(value):
    with override_settings(ASGI_APPLICATION=value):
        problems = checks.check_channels()
    assert ids(problems) == ["directcall.E002"]
    assert isinstance(problems[0], Error)


@pytest.mark.parametrize("module", ["tests.asgi_http_only", "tests.asgi_http_router"])
def test_w011_an_asgi_application_without_websockets(module):
    """startproject's asgi.py left as it is (step 4 skipped), or a router with HTTP alone:
    every socket would get a server error and the page only ``ERR_INTERNET_LOST``. Judged
    from the source: the module is not imported (its django.setup() would configure
    logging anew in every command)."""
    import sys

    with override_settings(ASGI_APPLICATION=f"{module}.application"):
        problems = checks.check_channels()
    assert ids(problems) == ["directcall.W011"]
    assert "websocket_urlpatterns" in problems[0].hint
    assert module not in sys.modules


@pytest.mark.parametrize(
    "path",
    ["example_project.asgi.application", "no_such_module.application", "bench.asgi.application"],
)
def test_w011_quiet_for_a_routed_or_unknown_application(path):
    """The demo's and the benchmark's (they route "websocket"), and one that cannot be
    found: that is the server's to report, not a guess of ours."""
    with override_settings(ASGI_APPLICATION=path):
        assert checks.check_channels() == []


def test_e006_an_adapter_that_cannot_be_imported_says_why():
    """The import's own error is in the message: a typo in the path, or a module of the
    adapter's that fails to import (an example copied with a model the site lacks)."""
    problems = settings_problems({"ICE_SERVERS": [STUN], "ADAPTER": "no_such_app.calling.A"})
    assert ids(problems) == ["directcall.E006"]
    assert "No module named 'no_such_app'" in problems[0].msg


def test_w001_daphne_not_installed():
    apps = [app for app in settings.INSTALLED_APPS if app != "daphne"]
    assert len(apps) == len(settings.INSTALLED_APPS) - 1
    with override_settings(INSTALLED_APPS=apps):
        problems = checks.check_channels()
    assert ids(problems) == ["directcall.W001"]
    assert isinstance(problems[0], Warning)


# -- check_shared_state: E003, E004, W002, W003 --------------------------------------------


@pytest.mark.parametrize("layers", [{}, None, {"other": MEMORY_LAYER["default"]}])
def test_e003_no_channel_layer(layers):
    with override_settings(CHANNEL_LAYERS=layers, CACHES=LOCMEM_CACHE):
        problems = checks.check_shared_state()
    assert ids(problems) == ["directcall.E003"]
    assert isinstance(problems[0], Error)


@pytest.mark.parametrize("layers", [MEMORY_LAYER, REDIS_LAYER])
def test_e004_dummy_cache(layers):
    with override_settings(CHANNEL_LAYERS=layers, CACHES=DUMMY_CACHE):
        problems = checks.check_shared_state()
    assert ids(problems) == ["directcall.E004"]
    assert isinstance(problems[0], Error)


PUBSUB_LAYER = {"default": {"BACKEND": "directcall.redislayer.RedisPubSubLayer"}}


@pytest.mark.parametrize("layers", [REDIS_LAYER, PUBSUB_LAYER])
@pytest.mark.parametrize("caches", [LOCMEM_CACHE, FILE_CACHE])
def test_w002_redis_layer_with_process_local_cache(caches, layers):
    with override_settings(CHANNEL_LAYERS=layers, CACHES=caches):
        problems = checks.check_shared_state()
    assert ids(problems) == ["directcall.W002"]
    assert isinstance(problems[0], Warning)


def test_w003_memory_layer_with_shared_cache():
    with override_settings(CHANNEL_LAYERS=MEMORY_LAYER, CACHES=REDIS_CACHE):
        problems = checks.check_shared_state()
    assert ids(problems) == ["directcall.W003"]
    assert isinstance(problems[0], Warning)


@pytest.mark.parametrize(
    ("layers", "caches"), [(REDIS_LAYER, REDIS_CACHE), (MEMORY_LAYER, LOCMEM_CACHE)]
)
def test_shared_state_quiet_when_consistent(layers, caches):
    with override_settings(CHANNEL_LAYERS=layers, CACHES=caches):
        assert checks.check_shared_state() == []


# -- check_directcall_settings: E005, E006, E007, W004, W005, W006 -------------------------


def settings_problems(directcall: dict, **other) -> list:
    with override_settings(DIRECTCALL=directcall, **other):
        return checks.check_directcall_settings()


def test_e005_unknown_key():
    problems = settings_problems({"ICE_SERVERS": [STUN], "RING_TIME": 30, "ZZZ": 1})
    assert ids(problems) == ["directcall.E005"]
    assert isinstance(problems[0], Error)
    assert "RING_TIME" in problems[0].msg
    assert "ZZZ" in problems[0].msg


@pytest.mark.parametrize("key", ["RING_TIMEOUT", "TURN_TTL", "TOKEN_TTL", "MAX_CALL_DURATION"])
@pytest.mark.parametrize("value", [0, -5, "30", 1.5, True])
def test_e006_bad_number_of_seconds(key, value):
    problems = settings_problems({"ICE_SERVERS": [STUN], key: value})
    assert ids(problems) == ["directcall.E006"]
    assert isinstance(problems[0], Error)
    assert key in problems[0].msg


@pytest.mark.parametrize("key", ["RING_TIMEOUT", "TURN_TTL", "TOKEN_TTL"])
def test_e006_none_refused_where_a_value_is_required(key):
    problems = settings_problems({"ICE_SERVERS": [STUN], key: None})
    assert ids(problems) == ["directcall.E006"]


POSITIVE_NUMBERS = [
    "PRESENCE_TTL",
    "RECONNECT_GRACE",
    "SWEEP_INTERVAL",
    "AUTH_TIMEOUT",
    "IDLE_TIMEOUT",
    "FLOOD_RATE",
]


@pytest.mark.parametrize("key", POSITIVE_NUMBERS)
@pytest.mark.parametrize("value", [0, -1, 0.0, "5", None, True, float("nan"), float("inf")])
def test_e006_bad_positive_number(key, value):
    problems = settings_problems({"ICE_SERVERS": [STUN], key: value})
    assert ids(problems) == ["directcall.E006"]
    assert key in problems[0].msg


@pytest.mark.parametrize("key", POSITIVE_NUMBERS)
@pytest.mark.parametrize("value", [1, 0.25, 90])
def test_positive_numbers_may_be_floats(key, value):
    assert settings_problems({"ICE_SERVERS": [STUN], key: value}) == []


@pytest.mark.parametrize("key", ["MAX_FRAME_BYTES", "FLOOD_BURST"])
@pytest.mark.parametrize("value", [0, -1, 1.5, 100.0, "100", None, True])
def test_e006_bad_positive_int(key, value):
    problems = settings_problems({"ICE_SERVERS": [STUN], key: value})
    assert ids(problems) == ["directcall.E006"]
    assert key in problems[0].msg


@pytest.mark.parametrize(
    "value",
    ["", "calls.example.org", "https://calls.example.org/ws/", "ws://", 5, ["wss://x.example"]],
)
def test_e006_bad_websocket_url(value):
    problems = settings_problems({"ICE_SERVERS": [STUN], "WEBSOCKET_URL": value})
    assert ids(problems) == ["directcall.E006"]
    assert "WEBSOCKET_URL" in problems[0].msg


@pytest.mark.parametrize(
    "value", [None, "wss://calls.example.org/ws/directcall/v1/", "ws://127.0.0.1:8000/ws/"]
)
def test_good_websocket_url_passes(value):
    assert settings_problems({"ICE_SERVERS": [STUN], "WEBSOCKET_URL": value}) == []


@pytest.mark.parametrize("value", [None, 5, b"ws/", ["ws/"]])
def test_e006_bad_websocket_path(value):
    problems = settings_problems({"ICE_SERVERS": [STUN], "WEBSOCKET_PATH": value})
    assert ids(problems) == ["directcall.E006"]
    assert "WEBSOCKET_PATH" in problems[0].msg


@pytest.mark.parametrize("value", [5, b"secret", ["secret"]])
def test_e006_bad_turn_secret_is_not_echoed(value):
    problems = settings_problems({"ICE_SERVERS": [STUN, TURN], "TURN_SECRET": value})
    assert ids(problems) == ["directcall.E006"]
    assert "TURN_SECRET" in problems[0].msg
    assert repr(value) not in problems[0].msg


@pytest.mark.parametrize(
    "rate", ["5/10m", "abc", "60", "60/", "/min", "0/min", "-1/min", "1.5/s", "60/week", 60, ""]
)
@pytest.mark.parametrize(
    "scope", ["directcall_init_ip", "directcall_init_ip_new", "directcall_init_account"]
)
def test_e006_bad_throttle_rate(scope, rate):
    problems = settings_problems({"ICE_SERVERS": [STUN], "THROTTLE_RATES": {scope: rate}})
    assert ids(problems) == ["directcall.E006"]
    assert "THROTTLE_RATES" in problems[0].msg
    assert scope in problems[0].msg


@pytest.mark.parametrize(
    "rate",
    [
        None,
        "60/min",
        "1/s",
        "10/sec",
        "5/second",
        "60/m",
        "60/minute",
        "100/h",
        "100/hour",
        "1000/d",
        "1000/day",
    ],
)
def test_good_throttle_rates_pass(rate):
    scopes = ("directcall_init_ip", "directcall_init_ip_new", "directcall_init_account")
    rates = dict.fromkeys(scopes, rate)
    assert settings_problems({"ICE_SERVERS": [STUN], "THROTTLE_RATES": rates}) == []


def test_e006_throttle_rates_not_a_dict_or_unknown_scope():
    problems = settings_problems({"ICE_SERVERS": [STUN], "THROTTLE_RATES": ["60/min"]})
    assert ids(problems) == ["directcall.E006"]
    problems = settings_problems(
        {"ICE_SERVERS": [STUN], "THROTTLE_RATES": {"directcall_init_ips": "60/min"}}
    )
    assert ids(problems) == ["directcall.E006"]
    assert "directcall_init_ips" in problems[0].msg


def test_e006_each_bad_value_reported():
    problems = settings_problems(
        {"ICE_SERVERS": [STUN], "RING_TIMEOUT": 0, "FLOOD_BURST": 0, "WEBSOCKET_URL": "x"}
    )
    assert ids(problems) == ["directcall.E006"] * 3


def test_good_numbers_pass():
    good = {
        "ICE_SERVERS": [STUN],
        "RING_TIMEOUT": 45,
        "MAX_CALL_DURATION": 3600,
        "TURN_TTL": 600,
        "TOKEN_TTL": 300,
    }
    assert settings_problems(good) == []
    assert settings_problems({**good, "MAX_CALL_DURATION": None}) == []


@pytest.mark.parametrize(
    "servers",
    [
        "stun:stun.example.org:3478",
        {"urls": ["stun:stun.example.org:3478"]},
        ["stun:stun.example.org:3478"],
        [{"url": "stun:stun.example.org:3478"}],
        [{"urls": []}],
        [{"urls": ""}],
        [{"urls": 5}],
        [{"urls": [5]}],
        [{"urls": None}],
        [STUN, None],
        None,
    ],
)
def test_e007_bad_ice_servers(servers):
    problems = settings_problems({"ICE_SERVERS": servers})
    assert ids(problems) == ["directcall.E007"]
    assert "ICE_SERVERS" in problems[0].msg


@pytest.mark.parametrize(
    "servers",
    [
        [STUN],
        [{"urls": "stun:stun.example.org:3478"}],
        ({"urls": ("stun:a.example.org", "stun:b.example.org")},),
        [STUN, {**TURN, "username": "u", "credential": "c"}],
    ],
)
def test_good_ice_servers_pass(servers):
    assert settings_problems({"ICE_SERVERS": servers}) == []


def test_w004_turn_secret_without_turn_server():
    problems = settings_problems({"ICE_SERVERS": [STUN], "TURN_SECRET": "s3cret"})
    assert ids(problems) == ["directcall.W004"]
    assert isinstance(problems[0], Warning)


@pytest.mark.parametrize(
    "turn",
    [TURN, {"urls": "turns:turn.example.org:5349"}, {"urls": ["TURN:turn.example.org"]}],
)
def test_w004_quiet_with_a_turn_server(turn):
    assert settings_problems({"ICE_SERVERS": [STUN, turn], "TURN_SECRET": "s3cret"}) == []


def test_w005_turn_server_without_credentials():
    problems = settings_problems({"ICE_SERVERS": [STUN, TURN]})
    assert ids(problems) == ["directcall.W005"]
    assert isinstance(problems[0], Warning)


def test_w005_quiet_with_static_credentials_or_secret():
    static = {**TURN, "username": "u", "credential": "c"}
    assert settings_problems({"ICE_SERVERS": [static]}) == []
    assert settings_problems({"ICE_SERVERS": [TURN], "TURN_SECRET": "s3cret"}) == []


def test_w006_no_ice_servers_in_production():
    problems = settings_problems({}, DEBUG=False)
    assert ids(problems) == ["directcall.W006"]
    assert isinstance(problems[0], Warning)
    assert ids(settings_problems({"ICE_SERVERS": []}, DEBUG=False)) == ["directcall.W006"]


def test_w006_quiet_in_debug():
    assert settings_problems({}, DEBUG=True) == []


def test_warnings_still_evaluated_when_another_key_is_bad():
    problems = settings_problems(
        {"ICE_SERVERS": [STUN], "TURN_SECRET": "s3cret", "RING_TIMEOUT": 0, "BOGUS": 1}
    )
    assert ids(problems) == ["directcall.E005", "directcall.E006", "directcall.W004"]
    problems = settings_problems({"ICE_SERVERS": [TURN], "FLOOD_RATE": -1})
    assert ids(problems) == ["directcall.E006", "directcall.W005"]
    problems = settings_problems({"THROTTLE_RATES": {"directcall_init_ip": "x"}}, DEBUG=False)
    assert ids(problems) == ["directcall.E006", "directcall.W006"]


def test_warnings_skipped_when_ice_servers_are_malformed():
    problems = settings_problems({"ICE_SERVERS": [TURN, None], "TURN_SECRET": None}, DEBUG=False)
    assert ids(problems) == ["directcall.E007"]


def test_several_problems_reported_together():
    with override_settings(
        ASGI_APPLICATION=None,
        CHANNEL_LAYERS={},
        CACHES=DUMMY_CACHE,
        DIRECTCALL={"RING_TIMEOUT": 0, "BOGUS": 1, "ICE_SERVERS": None},
    ):
        found = set(ids(run_all()))
    assert {
        "directcall.E002",
        "directcall.E003",
        "directcall.E004",
        "directcall.E005",
        "directcall.E006",
        "directcall.E007",
    } <= found


def _redis_layer(hosts):
    return {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": hosts}}
    }


def test_w007_redis_socket_timeout():
    import redis

    from directcall.checks import check_redis_socket_timeout

    fires = int(redis.__version__.split(".")[0]) >= 8
    with override_settings(CHANNEL_LAYERS=_redis_layer(["redis://127.0.0.1:6379/0"])):
        assert [p.id for p in check_redis_socket_timeout()] == (
            ["directcall.W007"] if fires else []
        )
    safe = [{"address": "redis://127.0.0.1:6379/0", "socket_timeout": None}]
    with override_settings(CHANNEL_LAYERS=_redis_layer(safe)):
        assert check_redis_socket_timeout() == []
    with override_settings(
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    ):
        assert check_redis_socket_timeout() == []


@pytest.mark.parametrize(
    "value,ok",
    [("20/min", True), (None, True), ("5/10m", False), ("abc", False), (20, False)],
)
def test_e006_call_rate(value, ok):
    from directcall.checks import check_directcall_settings

    with override_settings(DIRECTCALL={"CALL_RATE": value}):
        ids = [p.id for p in check_directcall_settings()]
    assert ("directcall.E006" not in ids) == ok


def test_w008_relay_policy_without_turn():
    from directcall.checks import check_directcall_settings

    with override_settings(DIRECTCALL={"ICE_TRANSPORT_POLICY": "relay", "ICE_SERVERS": []}):
        assert "directcall.W008" in [p.id for p in check_directcall_settings()]
    turn = [{"urls": ["turn:127.0.0.1:3478"]}]
    with override_settings(
        DIRECTCALL={"ICE_TRANSPORT_POLICY": "relay", "ICE_SERVERS": turn, "TURN_SECRET": "s"}
    ):
        assert "directcall.W008" not in [p.id for p in check_directcall_settings()]
    with override_settings(DIRECTCALL={"ICE_TRANSPORT_POLICY": "nope"}):
        assert "directcall.E006" in [p.id for p in check_directcall_settings()]


# -- identities (database checks) ----------------------------------------------------------


@pytest.mark.django_db
def test_e008_the_session_account_takes_page_identities(make_account, settings):
    account, _key = make_account(identity="page")
    settings.DIRECTCALL = {**settings.DIRECTCALL, "SESSION_ACCOUNT": account.account_id}
    messages = checks.check_identities(databases=["default"])
    assert "directcall.E008" in ids(messages)
    assert account.account_id in next(m for m in messages if m.id == "directcall.E008").msg
    account.identity = "verified"
    account.save()
    assert ids(checks.check_identities(databases=["default"])) == []
    # Not a database check run: nothing read, nothing said.
    account.identity = "page"
    account.save()
    assert checks.check_identities() == []


@pytest.mark.django_db
def test_w009_active_page_accounts_are_named(make_account):
    page, _ = make_account(identity="page")
    make_account(identity="verified")
    make_account(identity="page", is_active=False)
    (message,) = checks.check_identities(databases=["default"])
    assert message.id == "directcall.W009" and isinstance(message, Warning)
    assert page.account_id in message.msg


@pytest.mark.django_db
def test_the_identity_check_runs_with_check_database(make_account, settings):
    account, _key = make_account(identity="page")
    settings.DIRECTCALL = {**settings.DIRECTCALL, "SESSION_ACCOUNT": account.account_id}
    assert checks.check_identities in registry.get_checks(include_deployment_checks=False)
    with pytest.raises(SystemCheckError, match=r"directcall\.E008"):
        call_command("check", "--database", "default", stdout=StringIO(), stderr=StringIO())


# -- W010: the task backend of webhook deliveries -------------------------------------------------


@pytest.fixture
def active_endpoint(make_account):
    from directcall.webhooks.models import WebhookEndpoint

    account, _key = make_account()
    return WebhookEndpoint.objects.create(account=account, url="https://hooks.example.com/")


def test_w010_quiet_with_the_database_backend(active_endpoint):
    assert checks.check_webhook_tasks(databases=["default"]) == []


@pytest.mark.parametrize(
    "backend",
    [
        "django_tasks.backends.immediate.ImmediateBackend",
        "django_tasks.backends.dummy.DummyBackend",
        "no.such.Backend",
    ],
)
def test_w010_a_backend_that_cannot_deliver_in_the_background(active_endpoint, backend):
    with override_settings(TASKS={"default": {"BACKEND": backend}}):
        assert ids(checks.check_webhook_tasks(databases=["default"])) == ["directcall.W010"]
        assert checks.check_webhook_tasks() == []  # a database check
        active_endpoint.is_active = False
        active_endpoint.save()
        assert checks.check_webhook_tasks(databases=["default"]) == []  # no webhooks: quiet


@pytest.mark.parametrize(
    ("options", "warned"),
    [(None, True), ({}, True), ({"MAX_ENTRIES": 999}, True), ({"MAX_ENTRIES": 1000}, False)],
)
def test_w012_a_small_local_memory_cache_would_cull_presence(options, warned):
    """Django's default cache (LocMemCache, 300 entries) culls a third of its entries when
    full: past a few hundred signed-in users people would show offline."""
    cache = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    if options is not None:
        cache["OPTIONS"] = options
    with override_settings(CHANNEL_LAYERS=MEMORY_LAYER, CACHES={"default": cache}):
        problems = checks.check_shared_state()
    assert ids(problems) == (["directcall.W012"] if warned else [])
    if warned:
        assert "MAX_ENTRIES" in problems[0].hint
