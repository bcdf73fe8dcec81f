"""The committed OpenAPI schema (docs/openapi.yaml) is valid and matches the code."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"


def test_committed_schema_is_current_and_valid(tmp_path):
    generated = tmp_path / "openapi.yaml"
    # --fail-on-warn makes any schema warning an error; --validate checks against OpenAPI 3.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(generated))
    assert generated.read_text() == SCHEMA.read_text(), (
        "docs/openapi.yaml is stale: run `.venv/bin/python manage.py spectacular "
        "--validate --fail-on-warn --file docs/openapi.yaml`"
    )


def test_schema_documents_every_init_error():
    text = SCHEMA.read_text()
    for code in (
        "ERR_MISSING_INITPARAMETERS",
        "ERR_INVALID_INITPARAMETERS",
        "ERR_MISSING_CT_ACCOUNTID",
        "ERR_MISSING_CT_ID",
        "ERR_INVALID_CREDENTIALS",
        "ERR_ORIGIN_NOT_ALLOWED",
        "ERR_RATE_LIMITED",
        "ERR_SERVICE_UNAVAILABLE",
    ):
        assert code in text


# -- the request serializers are the rules of directcall.validation --------------------------

ODD_VALUES = [None, "", "   ", 12345, 1.5, True, [], {}, ["tutor_jane"], {"a": "b"}]
# validation_cases.json names rules; these are the request fields each rule covers.
CASE_FIELDS = {
    "accountId": ["accountId"],
    "apikey": ["apikey"],
    "cuid": ["cuid"],
    "name": ["name"],
    "url": ["ringtone"],
    "deviceId": ["deviceId"],
    "userToken": ["userToken"],
}
INIT_BASE = {"accountId": "acct_1", "apikey": "abcd.efgh", "cuid": "tutor_jane"}


def _rules_accept(clean, body) -> bool:
    from directcall.errors import DirectCallError

    try:
        clean(body)
    except DirectCallError:
        return False
    return True


@pytest.mark.parametrize(
    "serializer_name,table_name",
    [("InitRequestSerializer", "INIT_FIELDS"), ("SessionRequestSerializer", "SESSION_FIELDS")],
)
def test_request_serializers_are_built_from_the_rule_tables(serializer_name, table_name):
    from directcall import validation
    from directcall.api import serializers

    fields = getattr(serializers, serializer_name)().fields
    table = getattr(validation, table_name)
    assert list(fields) == list(table)
    for name, rule in table.items():
        assert fields[name].required is rule.required
        assert fields[name].allow_null is not rule.required
        assert [v.rule for v in fields[name].validators] == [rule]


def _bodies(validation_cases, base: dict, fields: set[str]) -> list:
    bodies = [base, [], "text", 5, None]
    for rule, names in CASE_FIELDS.items():
        values = [*validation_cases[rule]["valid"], *validation_cases[rule]["invalid"], *ODD_VALUES]
        for name in names:
            if name in fields:
                bodies += [{**base, name: value} for value in values]
    for name in fields:
        bodies += [{**base, name: value} for value in ODD_VALUES]
        bodies.append({key: value for key, value in base.items() if key != name})
    bodies += [
        {**base, "ctId": "has space"},
        {**base, "ctId": "__g5c8f3a1b2"},
        {**base, "ctAccountId": "TEST-R78-ZZK-955Z"},
        {**base, "ctAccountId": "a/b"},
        {**base, "unknown": "ignored"},
    ]
    return bodies


@pytest.mark.parametrize("which", ["init", "session"])
def test_request_serializers_accept_exactly_what_the_rules_accept(which, validation_cases):
    from directcall import validation
    from directcall.api.serializers import InitRequestSerializer, SessionRequestSerializer

    if which == "init":
        serializer, clean, base = InitRequestSerializer, validation.clean_init_params, INIT_BASE
        fields = set(validation.INIT_FIELDS)
    else:
        serializer, clean, base = SessionRequestSerializer, validation.clean_session_params, {}
        fields = set(validation.SESSION_FIELDS)
    bodies = _bodies(validation_cases, base, fields)
    assert len(bodies) > 50
    disagreements = [
        body for body in bodies if serializer(data=body).is_valid() != _rules_accept(clean, body)
    ]
    assert disagreements == []
