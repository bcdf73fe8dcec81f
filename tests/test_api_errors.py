"""API errors: one status table for directcall's codes, one table for DRF's exceptions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rest_framework import exceptions

from directcall import errors
from directcall.api.exceptions import DRF_ERRORS, exception_handler, from_drf
from directcall.errors import HTTP_STATUS, DirectCallError

API_DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
URL = "/directcall/v1/init"


def documented_errors() -> list[tuple[int, str]]:
    """The (status, code) rows of the error table in docs/api.md."""
    rows = re.findall(r"^\| (\d{3}) \| `(ERR_[A-Z_]+)` \|", API_DOC.read_text(), re.MULTILINE)
    assert len(rows) >= 10
    return [(int(status), code) for status, code in rows]


@pytest.mark.parametrize("status,code", documented_errors())
def test_every_documented_error_comes_from_one_of_the_two_tables(status, code):
    from_drf_table = {(cls.status_code, drf_code) for cls, (drf_code, _) in DRF_ERRORS.items()}
    assert HTTP_STATUS.get(code) == status or (status, code) in from_drf_table


def test_status_follows_the_code():
    assert DirectCallError(errors.INVALID_CREDENTIALS).status_code == 401
    assert DirectCallError(errors.ORIGIN_NOT_ALLOWED).status_code == 403
    assert DirectCallError(errors.RATE_LIMITED).status_code == 429
    # Codes the HTTP API never sends are a plain 400 there.
    assert DirectCallError(errors.BAD_FRAME).status_code == 400
    assert DirectCallError(errors.RECEIVER_OFFLINE).status_code == 400
    assert DirectCallError(errors.INVALID_INITPARAMETERS, status_code=415).status_code == 415


@pytest.mark.parametrize(
    "exc,status,code",
    [
        (exceptions.MethodNotAllowed("GET"), 405, errors.METHOD_NOT_ALLOWED),
        (exceptions.Throttled(3.2), 429, errors.RATE_LIMITED),
        (exceptions.ParseError(), 400, errors.INVALID_INITPARAMETERS),
        (exceptions.UnsupportedMediaType("text/plain"), 415, errors.INVALID_INITPARAMETERS),
        (exceptions.NotAcceptable(), 406, errors.INVALID_INITPARAMETERS),
        (exceptions.PermissionDenied("CSRF Failed: x"), 403, errors.NOT_SIGNED_IN),
        (exceptions.ValidationError({"a": ["b"]}), 400, errors.INVALID_INITPARAMETERS),
    ],
)
def test_drf_exceptions_keep_their_status_and_get_a_code(exc, status, code):
    response = exception_handler(exc, {})
    assert response.status_code == status
    assert response.data["code"] == code
    assert isinstance(response.data["message"], str) and response.data["message"]


def test_messages():
    # DRF's wording is not the SDK's, except where it says which check failed.
    assert from_drf(exceptions.MethodNotAllowed("GET")).message == "Method not allowed."
    assert from_drf(exceptions.PermissionDenied("CSRF Failed: x")).message == "CSRF Failed: x"
    assert (
        from_drf(exceptions.ValidationError({"a": ["b"]})).message
        == (errors.MESSAGES[errors.INVALID_INITPARAMETERS])
    )


def test_retry_after_is_the_wait_rounded_up_plus_one():
    assert exception_handler(exceptions.Throttled(3.2), {})["Retry-After"] == "5"
    assert "Retry-After" not in exception_handler(exceptions.Throttled(None), {})


def test_a_directcall_error_answers_with_its_own_status():
    response = exception_handler(DirectCallError(errors.INVALID_CREDENTIALS), {})
    assert (response.status_code, response.data) == (
        401,
        {"code": "ERR_INVALID_CREDENTIALS", "message": errors.MESSAGES[errors.INVALID_CREDENTIALS]},
    )


def test_other_errors_are_not_answered_here():
    # A DRF exception outside the table gets DRF's own answer; anything else is a 500.
    assert exception_handler(exceptions.NotFound(), {}).status_code == 404
    assert exception_handler(ValueError("boom"), {}) is None


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_wrong_method_is_405_with_allow_set_by_drf(api_client, method):
    response = getattr(api_client, method)(URL)
    assert response.status_code == 405
    assert response.json() == {"code": "ERR_METHOD_NOT_ALLOWED", "message": "Method not allowed."}
    assert response["Allow"] == "POST, OPTIONS"


@pytest.mark.django_db
def test_a_body_over_the_upload_limit_is_413_json_not_djangos_html_page(api_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"cuid": "' + "x" * 2000 + '"}'
    response = api_client.post(URL, data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.json() == {
        "code": "ERR_INVALID_INITPARAMETERS",
        "message": "The request body is larger than 1000 bytes.",
    }
