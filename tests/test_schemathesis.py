"""Hostile HTTP: schemathesis over the committed OpenAPI schema, in-process through WSGI.

Every operation of ``docs/openapi.yaml`` is fuzzed with schema-valid (positive) and
schema-breaking (negative) requests, sent to the demo site's Django WSGI handler (the real
middleware, URLconf, views, throttles and database). Properties: no 5xx
(``not_a_server_error``), every response is one the schema documents (status code,
content type, body, headers), and negative data is refused with a 4xx. Positive cases
are sometimes given real credentials (init) or a real login (session), so the success
paths and their response bodies are checked too.

A second, plain-hypothesis part throws what a schema cannot describe: any method, any
Content-Type and Accept, raw bytes that are not JSON or not UTF-8, hostile Origin headers.
Those must never get a 5xx either, and every answer is a ``{code, message}`` JSON body.

The throttles are raised out of the way (they would turn most requests into 429s);
tests/test_api_init.py covers them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client as DjangoClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.test import Client as WSGIClient

from directcall.models import Account, Registration, hash_api_key_secret

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
schema = schemathesis.openapi.from_path(SCHEMA_PATH)
INIT = schema["/directcall/v1/init"]["POST"]
SESSION = schema["/directcall/v1/session"]["POST"]
INIT_URL = "/directcall/v1/init"
SESSION_URL = "/directcall/v1/session"

CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
NEGATIVE = [*CONFORMANCE, negative_data_rejection]

# A known account and key, so that generated requests can carry real credentials. It
# takes page identities, so that the key alone reaches init's success path; the session
# account (which may not take them) is another.
ACCOUNT_ID = "fuzz_account"
SESSION_ACCOUNT_ID = "fuzz_sessions"
KEY_PREFIX = "f0f0f0f0f0f0"
KEY_SECRET = "fuzzing-secret-0123456789abcdefghijklmnopqrstu"
API_KEY = f"{KEY_PREFIX}.{KEY_SECRET}"

# DIRECTCALL_FUZZ_SCALE=10 runs ten times as many examples (a deeper, slower search).
EXAMPLES = int(60 * float(os.environ.get("DIRECTCALL_FUZZ_SCALE", "1")))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture
def app(transactional_db, settings) -> WSGIHandler:
    """The site's WSGI handler with the throttles out of the way and a known account."""
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]  # the WSGI client's host
    settings.DIRECTCALL = {
        **settings.DIRECTCALL,
        "SESSION_ACCOUNT": SESSION_ACCOUNT_ID,
        "THROTTLE_RATES": {
            "directcall_init_ip": "1000000/min",
            "directcall_init_ip_new": "1000000/min",
            "directcall_init_account": "1000000/min",
        },
    }
    account = Account(account_id=ACCOUNT_ID, name="Fuzz", require_clevertap=False, identity="page")
    account.set_new_api_key()
    account.key_prefix, account.key_hash = KEY_PREFIX, hash_api_key_secret(KEY_SECRET)
    account.save()
    Account(account_id=SESSION_ACCOUNT_ID, name="Fuzz sessions", require_clevertap=False).save()
    return WSGIHandler()


@st.composite
def _init_plans(draw) -> tuple[str, dict[str, Any], str | None]:
    """How to use a generated init body: as is, replaced by a valid one, or one field of it
    on an otherwise valid request (so each field's rule is met with the real credentials)."""
    valid = {
        "accountId": ACCOUNT_ID,
        "apikey": API_KEY,
        "cuid": draw(st.sampled_from(["tutor_jane", "student_sam", "Fuzz_User_1"])),
        "name": draw(st.sampled_from(["Jane", "<b>Sam</b>", "Élodie François"])),
        "ringtone": draw(st.sampled_from(["https://cdn.example.org/ring.mp3", ""])),
        "deviceId": draw(st.sampled_from(["device-0001", "k9X2mQ7pL4vR8sT1"])),
    }
    plan = draw(st.sampled_from(["generated", "valid", "one_field"]))
    field = draw(st.sampled_from([*valid, "ctAccountId", "ctId"]))
    return plan, valid, field


def _is_json_error(response) -> bool:
    content = response.content if hasattr(response, "content") else response.get_data()
    try:
        body = json.loads(content)
    except ValueError:
        return False
    return isinstance(body, dict) and {"code", "message"} <= body.keys()


# -- schema-driven ---------------------------------------------------------------------------


def test_init_positive(app):
    """Schema-valid init requests, some with real credentials: no 5xx, documented answers."""
    seen: set[int] = set()

    @FUZZ
    @given(case=INIT.as_strategy(GenerationMode.POSITIVE), plan=_init_plans())
    def check(case, plan):
        kind, valid, field = plan
        if kind == "valid":
            case.body = valid
        elif kind == "one_field" and isinstance(case.body, dict) and field in case.body:
            case.body = {**valid, field: case.body[field]}
        response = case.call(app=app)
        case.validate_response(response, checks=CONFORMANCE)
        seen.add(response.status_code)

    check()
    assert 400 in seen and 200 in seen, seen  # both the refusals and the success were reached


def test_init_negative(app):
    """Requests that break the schema (wrong types, missing fields, not an object): a 4xx."""

    @FUZZ
    @given(case=INIT.as_strategy(GenerationMode.NEGATIVE))
    def check(case):
        response = case.call(app=app)
        case.validate_response(response, checks=NEGATIVE)
        assert _is_json_error(response), response.content[:200]

    check()
    assert not Registration.objects.exists()  # no negative request signed anyone in


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_session_anonymous(app, mode):
    """Without a login every request is refused (ERR_NOT_SIGNED_IN), whatever the body."""

    @FUZZ
    @given(case=SESSION.as_strategy(mode))
    def check(case):
        response = case.call(app=app)
        checks = CONFORMANCE if mode is GenerationMode.POSITIVE else NEGATIVE
        case.validate_response(response, checks=checks)
        assert response.status_code in (400, 403), response.content[:200]
        assert _is_json_error(response)

    check()
    assert not Registration.objects.exists()


def _logged_in() -> tuple[dict[str, str], dict[str, str]]:
    """Cookies and headers of a logged-in user with a CSRF token."""
    user = get_user_model().objects.create_user("fuzzer", password="pw-for-tests")
    client = DjangoClient()
    client.force_login(user)
    client.get("/admin/login/")  # sets the csrftoken cookie
    csrf = client.cookies["csrftoken"].value
    cookies = {"sessionid": client.cookies["sessionid"].value, "csrftoken": csrf}
    return cookies, {"X-CSRFToken": csrf}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_session_logged_in(app, mode):
    """A logged-in user with CSRF: documented answers, a session when the body is valid."""
    cookies, headers = _logged_in()
    seen: set[int] = set()

    @FUZZ
    @given(case=SESSION.as_strategy(mode), device=st.sampled_from([None, "device-0001"]))
    def check(case, device):
        if mode is GenerationMode.POSITIVE and isinstance(case.body, dict) and device:
            case.body = {key: value for key, value in case.body.items() if key == "deviceId"}
            case.body["deviceId"] = device
        if isinstance(case.body, dict) and case.body.get("ringtone") == "":
            # A blank optional field means "not given" (docs/api.md), so an empty ringtone
            # is accepted although "" is no URI: break the format the way it is meant.
            case.body = {**case.body, "ringtone": "not a uri"}
        response = case.call(app=app, cookies=cookies, headers=headers)
        # The real login replaces the generated cookie: a case whose only schema violation
        # was in the cookie is a valid request now, so only a broken body must be refused.
        body_broken = case.meta is not None and case.meta.is_negative_at(ParameterLocation.BODY)
        checks = NEGATIVE if body_broken else CONFORMANCE
        case.validate_response(response, checks=checks, headers=headers)
        seen.add(response.status_code)
        if response.status_code == 200:
            body = response.json()
            assert body["cuid"].startswith("user_") and body["accountId"] == SESSION_ACCOUNT_ID

    check()
    if mode is GenerationMode.POSITIVE:
        assert 200 in seen, seen


# -- beyond the schema: any method, media type, encoding ----------------------------------------

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "PROPFIND"]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/json; charset=nonsense",
    "application/problem+json",
    "text/plain",
    "text/html",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "multipart/form-data",
    "application/xml",
    "*/*",
    "",
    "application/json, text/html",
    ";;;",
]
ACCEPTS = [
    "application/json",
    "text/html",
    "*/*",
    "application/xml",
    "application/json;q=0",
    "text/html, application/json;q=0.1",
    "",
    "nonsense",
    ";q=x",
]
ORIGINS = [
    None,
    "https://evil.example",
    "null",
    "http://localhost",
    "https://evil.example\\@localhost",
    "javascript:alert(1)",
    "https://" + "a" * 3000 + ".example",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(alphabet=st.characters(exclude_categories=()), max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
init_like = st.fixed_dictionaries(
    {},
    optional={
        key: json_values | st.just(value)
        for key, value in {
            "accountId": ACCOUNT_ID,
            "apikey": API_KEY,
            "cuid": "tutor_jane",
            "name": "Jane",
            "ringtone": "https://cdn.example.org/ring.mp3",
            "ctAccountId": "CT-1",
            "ctId": "guid_1",
            "deviceId": "device-0001",
        }.items()
    },
)


@st.composite
def raw_bodies(draw) -> bytes:
    """JSON of the right shape with hostile values, other JSON, or bytes that are no JSON."""
    kind = draw(st.sampled_from(["object", "json", "bytes", "latin1", "surrogates", "nested"]))
    if kind == "object":
        # ensure_ascii=True writes lone surrogates as \udXXX escapes: valid JSON text.
        return json.dumps(draw(init_like)).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "latin1":
        return '{"accountId": "caf\xe9", "apikey": "\xff", "cuid": "tutor_jane"}'.encode("latin-1")
    if kind == "surrogates":
        field = draw(st.sampled_from(["name", "ringtone", "ctId", "cuid", "accountId"]))
        value = draw(st.sampled_from(["Ja\\ud800ne", "https://x.example/\\udfff", "\\udc80abc"]))
        body = {"accountId": ACCOUNT_ID, "apikey": API_KEY, "cuid": "tutor_jane"}
        text = json.dumps(body)[:-1] + f', "{field}": "{value}"}}'
        return text.encode()
    if kind == "nested":
        depth = draw(st.integers(1, 50_000))
        return ("[" * depth + "]" * depth).encode()
    return draw(st.binary(max_size=300))


@pytest.mark.parametrize("path", [INIT_URL, SESSION_URL])
def test_anything_over_http_gets_a_json_refusal_never_a_5xx(app, path):
    cookies, csrf_headers = _logged_in()
    operation = INIT if path == INIT_URL else SESSION

    @FUZZ
    @given(
        # Mostly what reaches the view (POST, JSON), but any method and media type too.
        method=st.sampled_from(["POST"] * len(METHODS) + METHODS),
        content_type=st.sampled_from(["application/json"] * len(CONTENT_TYPES) + CONTENT_TYPES),
        accept=st.sampled_from(["application/json"] * len(ACCEPTS) + ACCEPTS),
        origin=st.sampled_from(ORIGINS),
        body=raw_bodies(),
        logged_in=st.booleans(),
    )
    def check(method, content_type, accept, origin, body, logged_in):
        client = WSGIClient(app)
        headers = {"Content-Type": content_type, "Accept": accept}
        if origin is not None:
            headers["Origin"] = origin
        if logged_in:
            for name, value in cookies.items():
                client.set_cookie(name, value, domain="localhost")
            headers.update(csrf_headers)
        response = client.open(path, method=method, data=body, headers=headers)
        assert response.status_code < 500, (response.status_code, response.get_data()[:300])
        if method == "OPTIONS" and path == INIT_URL and response.status_code == 204:
            return  # the CORS preflight
        if method != "HEAD":
            assert _is_json_error(response) or response.status_code == 200, response.get_data()
        if method == "POST":
            documented = {int(code) for code in operation.definition.raw["responses"]}
            assert response.status_code in documented, (response.status_code, documented)

    check()


@pytest.mark.parametrize(
    "field,value",
    [
        ("name", "Ja\ud800ne"),
        ("name", "\udfff\udfff\udfff"),
        ("ringtone", "https://x.example/\udfff"),
        ("ringtone", "https://x.\ud800example/"),
        ("ringtone", "https://x.example/\x00"),
        ("ringtone", "https://x.example/a\x1bb"),
    ],
)
def test_lone_surrogates_and_control_characters_are_refused_at_init(app, field, value):
    """Found by the fuzzing above: these were accepted and then failed with a 500.

    A lone surrogate (sent as a ``\\udXXX`` escape, which JSON allows) cannot be encoded
    as UTF-8: storing it (SQLite, PostgreSQL) or rendering the response raised. NUL is
    refused by PostgreSQL. directcall.validation now refuses both as invalid parameters.
    """
    body = {"accountId": ACCOUNT_ID, "apikey": API_KEY, "cuid": "tutor_jane", field: value}
    response = WSGIClient(app).post(
        INIT_URL, data=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.get_data()[:300]
    assert response.json["code"] == "ERR_INVALID_INITPARAMETERS"
    assert field in response.json["message"]
    assert not Registration.objects.exists()


# -- the calls API (issue 16) ----------------------------------------------------------------------
# GET operations: what breaks their schema is in a query string or a path, where every value
# is text, so negative cases are held to the same properties as positive ones (no 5xx, a
# documented answer, a {code, message} refusal) rather than to negative_data_rejection.

CALL_LIST = schema["/directcall/v1/calls"]["GET"]
CALL_ONE = schema["/directcall/v1/calls/{call_id}"]["GET"]
REGISTRATION = schema["/directcall/v1/registrations/{cuid}"]["GET"]
MY_CALL_LIST = schema["/directcall/v1/me/calls"]["GET"]
SERVER_KEY_PREFIX = "0a0b0c0d0e0f"
SERVER_KEY_SECRET = "fuzzing-server-secret-0123456789abcdefghijklm"
SERVER_KEY = f"dcsk_{SERVER_KEY_PREFIX}.{SERVER_KEY_SECRET}"


@pytest.fixture
def calls_app(app, settings) -> tuple[WSGIHandler, dict[str, Any]]:
    """The site with a server key on the fuzz account, a few calls, the API throttles off."""
    from directcall.models import Call

    settings.DIRECTCALL = {
        **settings.DIRECTCALL,
        "THROTTLE_RATES": {
            **settings.DIRECTCALL["THROTTLE_RATES"],
            "directcall_api_ip": "1000000/min",
            "directcall_api_key": "1000000/min",
            "directcall_api_user": "1000000/min",
        },
    }
    account = Account.objects.get(account_id=ACCOUNT_ID)
    account.server_key_prefix = SERVER_KEY_PREFIX
    account.server_key_hash = hash_api_key_secret(SERVER_KEY_SECRET)
    account.save()
    jane = Registration.objects.create(account=account, cuid="tutor_jane", name="Jane")
    sam = Registration.objects.create(account=account, cuid="student_sam")
    calls = [
        Call.objects.create(account=account, caller=jane, callee=sam, context="<b>hi</b>"),
        Call.objects.create(account=account, caller=sam, callee=jane, context="x", status="missed"),
    ]
    return app, {"call_ids": [str(call.pk) for call in calls], "cuids": ["tutor_jane", "sam_x"]}


@pytest.mark.parametrize("operation", [CALL_LIST, CALL_ONE, REGISTRATION], ids=lambda o: o.path)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_calls_api_with_and_without_the_server_key(calls_app, operation, mode):
    app, known = calls_app
    seen: set[int] = set()

    @FUZZ
    @given(
        case=operation.as_strategy(mode),
        keyed=st.booleans(),
        known_id=st.sampled_from(known["call_ids"]),
        known_cuid=st.sampled_from(known["cuids"]),
        real=st.booleans(),
    )
    def check(case, keyed, known_id, known_cuid, real):
        headers = {"Authorization": f"Bearer {SERVER_KEY}"} if keyed else {}
        if real and case.path_parameters:
            if "call_id" in case.path_parameters:
                case.path_parameters["call_id"] = known_id
            if "cuid" in case.path_parameters:
                case.path_parameters["cuid"] = known_cuid
        response = case.call(app=app, headers=headers)
        case.validate_response(response, checks=CONFORMANCE, headers=headers)
        seen.add(response.status_code)
        if response.status_code != 200:
            assert _is_json_error(response), response.content[:200]

    check()
    assert 401 in seen, seen
    if mode is GenerationMode.POSITIVE:
        assert 200 in seen, seen


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_my_calls_logged_in_or_not(calls_app, mode):
    app, _known = calls_app
    cookies, _headers = _logged_in()
    seen: set[int] = set()

    @FUZZ
    @given(case=MY_CALL_LIST.as_strategy(mode), logged_in=st.booleans())
    def check(case, logged_in):
        response = case.call(app=app, cookies=cookies if logged_in else {})
        case.validate_response(response, checks=CONFORMANCE)
        seen.add(response.status_code)
        if response.status_code != 200:
            assert _is_json_error(response), response.content[:200]

    check()
    assert 403 in seen, seen
    if mode is GenerationMode.POSITIVE:
        assert 200 in seen, seen
