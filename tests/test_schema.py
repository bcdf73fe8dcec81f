"""The committed OpenAPI schema (docs/openapi.yaml) is valid and matches the code."""

from __future__ import annotations

from pathlib import Path

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
    ):
        assert code in text
